"""Load an ONNX model, normalise it, and list the layers qevo can quantize.

Normalising handles the traps real models set: weights stored as Constant nodes
(folded into initializers), opsets below 13 (converted up, since per-channel
DequantizeLinear needs `axis`), layers inside If / Loop / Scan bodies (found and
marked), several or integer inputs and dynamic dimensions (fixed for counting).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import QevoError, first_line
from .graphs import FLOAT_TYPES, all_initializers, drop_unused, tensor_bytes, walk_graphs
from .layers import SHAPED_OPS, Layer, WeightHolder, list_layers, weight_holders

MIN_OPSET = 13
TARGET_OPSET = 17
SUBGRAPH_OPS = ("If", "Loop", "Scan")


@dataclass(frozen=True)
class InputSpec:
    """A model input as the data must provide it."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]   # ints are fixed, strings name a dynamic dim, None is unnamed

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} [{dims}]"


@dataclass
class LoadedModel:
    """A normalised model and what qevo knows about it."""

    path: Path
    proto: onnx.ModelProto
    layers: list[Layer]
    inputs: list[InputSpec]
    output_names: list[str]
    digest: str                          # content hash of the normalised model
    file_bytes: int                      # size of the normalised model as serialised
    other_bytes: int                     # the file's bytes outside quantizable weights: graph, biases, norms, ...
    float_type: int                      # TensorProto.FLOAT, or FLOAT16 for a half-precision model
    mixed_float: bool                    # weights or inputs in both float types: each tensor's own type counts
    dims: dict[str, int]                 # dynamic dims fixed for counting (user's or assumed 1)
    notes: list[str] = field(default_factory=list)  # what normalising changed, for the user
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)  # static shapes at the fixed dims
    _float_tensors: dict[str, int] | None = field(default=None, repr=False, compare=False)  # scope.float_tensors
    _placements: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # scope.placement

    @property
    def name(self) -> str:
        return self.path.stem

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise QevoError(f"no quantizable layer named {name!r} in {self.path}")

    @property
    def weight_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def quantizable_share(self) -> float:
        """Share of the file's bytes that quantizable weights hold."""
        return 1.0 - self.other_bytes / max(self.file_bytes, 1)

    def holders(self) -> list[WeightHolder]:
        """Every node that holds a constant weight, quantizable or not."""
        return weight_holders(self.proto, self.layers)


def load_model(path: str | Path, dims: dict[str, int] | None = None) -> LoadedModel:
    """Read, check and normalise an ONNX file and list its quantizable layers."""
    path = Path(path)
    proto = _read(path)
    notes: list[str] = []
    folded = fold_constants(proto)
    if folded:
        notes.append(f"folded {folded} Constant node(s) into initializers")
    _name_nodes(proto.graph)
    unknown = _name_unknown_dims(proto.graph)
    if unknown:
        notes.append(f"{unknown} dim(s) stored as -1 or 0 read as dynamic")
    opset = default_opset(proto)
    if opset < MIN_OPSET:
        proto = _upgrade_opset(proto, path)
        notes.append(f"converted opset {opset} to {default_opset(proto)}")
    # after the upgrade: the folding evaluates nodes by the current operator rules
    reshaped = fold_weight_expressions(proto)
    if reshaped:
        notes.append(f"folded {reshaped} node(s) that slice, concatenate or reshape constant weights into initializers")
    inputs = _input_specs(proto)
    fixed = _fix_dims(inputs, dims or {}, path)
    assumed = sorted(name for name in fixed if name not in (dims or {}))
    if assumed:
        notes.append("dynamic dims fixed to 1 for counting: " + ", ".join(assumed) + " (set with --dim NAME=VALUE)")
    shapes = _tensor_shapes(proto, inputs, fixed)
    layers = list_layers(proto, shapes)
    inside = [layer.name for layer in layers if layer.subgraph]
    if inside:
        notes.append(f"{len(inside)} layer(s) inside If/Loop/Scan bodies: weights are quantized, "
                     "their input activations stay float")
    serialized = proto.SerializeToString(deterministic=True)
    digest = hashlib.sha256(serialized).hexdigest()
    float_type, mixed = _float_types(proto)
    return LoadedModel(path=path, proto=proto, layers=layers, inputs=inputs,
                       output_names=[o.name for o in proto.graph.output], digest=digest,
                       file_bytes=len(serialized), other_bytes=_other_bytes(proto, layers, len(serialized)),
                       float_type=float_type, mixed_float=mixed, dims=fixed, notes=notes, shapes=shapes)


def derived_model(proto: onnx.ModelProto, original: LoadedModel) -> LoadedModel:
    """A model qevo made from `original` (a pruned one), read as `load_model` reads a file: same inputs and
    fixed dims, its own shapes, layers and digest."""
    shapes = _tensor_shapes(proto, original.inputs, original.dims)
    layers = list_layers(proto, shapes)
    serialized = proto.SerializeToString(deterministic=True)
    return LoadedModel(path=original.path, proto=proto, layers=layers, inputs=original.inputs,
                       output_names=[o.name for o in proto.graph.output],
                       digest=hashlib.sha256(serialized).hexdigest(), file_bytes=len(serialized),
                       other_bytes=_other_bytes(proto, layers, len(serialized)), float_type=original.float_type,
                       mixed_float=original.mixed_float, dims=original.dims, shapes=shapes)


def _other_bytes(proto: onnx.ModelProto, layers: list[Layer], file_bytes: int) -> int:
    """What the file holds besides the quantizable weights (each counted once, however many layers read it)."""
    sizes = {t.name: tensor_bytes(t) for t in all_initializers(proto.graph)}
    return file_bytes - sum(sizes.get(name, 0) for name in {layer.weight for layer in layers if layer.weight})


def _float_types(proto: onnx.ModelProto) -> tuple[int, bool]:
    """The float type most of the model's float weights are stored in, and whether the weights and graph
    inputs use both float types."""
    totals = {kind: 0 for kind in FLOAT_TYPES}
    for tensor in all_initializers(proto.graph):
        if tensor.data_type in totals:
            totals[tensor.data_type] += tensor_bytes(tensor)
    present = {kind for kind, total in totals.items() if total} | \
        {value.type.tensor_type.elem_type for value in proto.graph.input} & set(FLOAT_TYPES)
    return max(totals, key=lambda kind: (totals[kind], kind == onnx.TensorProto.FLOAT)), len(present) > 1


def _read(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise QevoError("model file not found", path=path)
    if path.is_dir():
        raise QevoError("expected an ONNX model file, got a directory", path=path)
    data = path.read_bytes()
    if not data:
        raise QevoError("model file is empty", path=path)
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises several types on bad bytes
        raise QevoError(f"not an ONNX model, or truncated ({type(err).__name__})", path=path) from None
    if not proto.graph.node or not proto.opset_import:
        raise QevoError("not an ONNX model, or truncated (no graph nodes or opset)", path=path)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as err:  # OSError, ValueError or onnx's ValidationError for a missing file
            raise QevoError(f"cannot read external weight data ({first_line(err, type(err).__name__)})",
                            path=path) from None
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise QevoError(f"not a valid ONNX model ({first_line(err, 'invalid model')})", path=path) from None
    return proto


def default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def convert_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model at a newer default opset, with the IR version that opset needs."""
    originals = {node.name: tuple(node.output) for graph, _ in walk_graphs(proto.graph) for node in graph.node}
    converted = onnx.version_converter.convert_version(proto, opset)
    # The converter adds inferred shapes of every tensor, subgraphs included: bytes the model did not have.
    known = {value.name for graph, _ in walk_graphs(proto.graph) for value in graph.value_info}
    for graph, _ in walk_graphs(converted.graph):
        kept = [value for value in graph.value_info if value.name in known]
        if len(kept) != len(graph.value_info):
            del graph.value_info[:]
            graph.value_info.extend(kept)
    needed = helper.find_min_ir_version_for(list(converted.opset_import))
    converted.ir_version = max(converted.ir_version, needed)
    _name_nodes(converted.graph, originals)   # nodes the converter adds may be unnamed or take a name in use
    return converted


def _upgrade_opset(proto: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return convert_opset(proto, TARGET_OPSET)
    except Exception as err:  # the converter raises bare RuntimeErrors from C++
        raise QevoError(f"opset {default_opset(proto)} is below {MIN_OPSET} and could not be converted "
                        f"({first_line(err)})", path=path) from None


def fold_constants(proto: onnx.ModelProto) -> int:
    """Move tensors held by Constant nodes into initializers, in every graph. Returns how many."""
    folded = 0
    for graph, _ in walk_graphs(proto.graph):
        keep = []
        for node in graph.node:
            value = next((a for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR),
                         None) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
            if value is None:
                keep.append(node)
                continue
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            folded += 1
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
    return folded


# Ops that only move constant data about: how exporters reorder an LSTM's gates or transpose a weight.
REARRANGING_OPS = ("Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Identity", "Flatten", "Split")


def fold_weight_expressions(proto: onnx.ModelProto) -> int:
    """Replace nodes that only rearrange constant float weights by the initializer they compute, as
    onnxruntime does when it loads the model; an LSTM whose W is sliced and concatenated from a
    framework's tensor then reads a constant weight that can be quantized. Returns how many."""
    from onnx.reference import ReferenceEvaluator

    folded = 0
    visible: dict[str, onnx.TensorProto] = {}
    for graph, _ in walk_graphs(proto.graph):
        visible.update({t.name: t for t in graph.initializer})
        outputs = {value.name for value in graph.output}
        keep = []
        for node in graph.node:
            inputs = [name for name in node.input if name]
            if not (node.op_type in REARRANGING_OPS and node.domain in ("", "ai.onnx") and inputs
                    and all(name in visible for name in inputs) and not outputs.intersection(node.output)
                    and any(visible[name].data_type in FLOAT_TYPES and len(visible[name].dims) >= 2
                            for name in inputs)):
                keep.append(node)
                continue
            try:
                values = ReferenceEvaluator(node).run(None, {name: numpy_helper.to_array(visible[name])
                                                             for name in inputs})
            except Exception:  # a node the reference evaluator cannot run stays for onnxruntime to compute
                keep.append(node)
                continue
            for name, value in zip(node.output, values):
                visible[name] = numpy_helper.from_array(np.asarray(value), name)
                graph.initializer.append(visible[name])
            folded += 1
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
    if folded:
        drop_unused(proto)
    return folded


def _name_nodes(graph: onnx.GraphProto, originals: dict[str, tuple[str, ...]] | None = None) -> None:
    """Give every node a unique name: layers are addressed by node name. With `originals` (name -> outputs
    of the nodes before a conversion), those nodes keep their names and added nodes take new ones."""
    originals = originals or {}

    def original(node: onnx.NodeProto) -> bool:
        return originals.get(node.name) == tuple(node.output)

    seen = {node.name for sub, _ in walk_graphs(graph) for node in sub.node if original(node)}
    for sub, _ in walk_graphs(graph):
        for i, node in enumerate(sub.node):
            if original(node):
                continue
            name = node.name or f"{node.op_type}_{i}"
            while name in seen:
                name = f"{name}_{i}"
            node.name = name
            seen.add(name)


def _numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy type of an ONNX element type (float32 for one that has none, such as undefined)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return np.dtype(np.float32)


def _name_unknown_dims(graph: onnx.GraphProto) -> int:
    """Some exporters write a dynamic dim as dim_value -1 (or 0); name it so it reads as dynamic, not as a size.
    The batch axis of every graph input and output shares one name, as a batch does."""
    renamed = 0
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value <= 0:
                dim.dim_param = "batch" if axis == 0 else f"{value.name}_{axis}"
                renamed += 1
    return renamed


def _input_specs(proto: onnx.ModelProto) -> list[InputSpec]:
    initializer_names = {t.name for t in proto.graph.initializer}
    specs = []
    for value in proto.graph.input:
        if value.name in initializer_names:
            continue  # old exporters list initializers as inputs too
        tensor_type = value.type.tensor_type
        dtype = _numpy_dtype(tensor_type.elem_type)
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                      for d in tensor_type.shape.dim)
        specs.append(InputSpec(value.name, dtype, shape))
    return specs


def _fix_dims(inputs: list[InputSpec], dims: dict[str, int], path: Path) -> dict[str, int]:
    names = {d for spec in inputs for d in spec.shape if isinstance(d, str)}
    unknown = sorted(set(dims) - names)
    if unknown:
        raise QevoError(f"--dim {unknown[0]}: the model has no dynamic dim of that name "
                        f"(it has: {', '.join(sorted(names)) or 'none'})", path=path)
    return {name: int(dims.get(name, 1)) for name in sorted(names)}


def _concrete_inputs(inputs: list[InputSpec], dims: dict[str, int]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) else dims.get(d, 1) if isinstance(d, str) else 1 for d in spec.shape]
        feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def _tensor_shapes(proto: onnx.ModelProto, inputs: list[InputSpec], dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Static shapes at the fixed dims: every tensor the quantizable layers touch, and every other one
    shape inference reaches.

    ONNX shape inference first; where it leaves a shape unknown (data-dependent
    reshapes), one onnxruntime run on zeros fills it in.
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for value in fixed.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = dims.get(d.dim_param, 1)
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # inference is an optimisation; the run below covers what it misses
        inferred = fixed
    for graph, _ in walk_graphs(inferred.graph):
        for value in list(graph.value_info) + list(graph.input) + list(graph.output):
            dim_list = value.type.tensor_type.shape.dim
            if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dim_list):
                shapes[value.name] = tuple(d.dim_value for d in dim_list)
        for tensor in graph.initializer:
            shapes[tensor.name] = tuple(tensor.dims)
    needed = {name for node in proto.graph.node if node.op_type in SHAPED_OPS
              for name in list(node.input[:2]) + [node.output[0]] if name}
    missing = sorted(needed - set(shapes))
    if missing:
        shapes.update(_shapes_by_running(proto, inputs, dims, missing))
    return shapes


def _shapes_by_running(proto, inputs, dims, names) -> dict[str, tuple[int, ...]]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        values = session.run(names, _concrete_inputs(inputs, dims))
    except Exception:  # a model that cannot run on zeros keeps its unknown shapes (counted as 0)
        return {}
    return {name: tuple(np.shape(v)) for name, v in zip(names, values)}
