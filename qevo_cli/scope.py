"""Which activation tensors a target's runtime quantizes, as groups that share one format.

- layer-inputs: the inputs of weight layers, and both inputs of a MatMul of two activations, each
  quantized where its layer reads it; float elsewhere.
- qdq-ops (onnxruntime's CPU execution provider): the inputs and outputs of the ops onnxruntime's
  static quantizer covers by default; float elsewhere.
- all-tensors (an NPU running a fully quantized graph, such as QNN's HTP): every float tensor of the
  top graph, as onnxruntime's QNN configuration quantizes it.
On the last two, onnxruntime's quantizer itself says which tensors (ort_placement.py): a Relu or Clip
after a quantized op is folded into the range of its output, and the output of an op that only moves
values (Reshape, Transpose, pooling...) keeps its input's encoding, so it shares its input's format.
A tensor is one group: one Q/DQ pair where it is produced, shared by all its consumers, as such a
runtime keeps one encoding per tensor (AIMET's quantizer groups, onnxruntime's QDQ models).
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from .errors import QevoError
from .graphs import FLOAT_TYPES, numel
from .model import LoadedModel
from .ort_placement import Placement, ort_placement
from .profile_schema import ACTIVATION_SCOPES

SCOPES = ACTIVATION_SCOPES
RUNTIMES = {"qdq-ops": "cpu", "all-tensors": "qnn"}   # whose quantizer places Q/DQ for a scope
# Ops that read only a tensor's shape: quantizing for them changes nothing.
SHAPE_ONLY = ("Shape", "Size")
# Ops onnxruntime's CPU provider runs on integer tensors without converting them: its QDQ fusions into
# QLinear kernels (onnxruntime/core/optimizer/qdq_transformer/selectors_actions) and the ops that only move
# values. Any other op reading or writing an integer tensor computes in float between a DequantizeLinear
# and a QuantizeLinear (LayerNormalization, Div, Erf, HardSigmoid, an unfolded BatchNormalization...).
INTEGER_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Concat", "AveragePool",
                         "GlobalAveragePool", "MaxPool", "Sigmoid", "Softmax", "LeakyRelu", "Relu", "Clip", "ArgMax",
                         "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Split", "Slice", "Pad", "Resize",
                         "Gather", "Where", "Identity", "Expand", "Tile", "DepthToSpace", "SpaceToDepth"})


@dataclass(frozen=True)
class TensorGroup:
    """An activation tensor the runtime quantizes once, and the nodes that read it."""

    tensor: str
    producer: str | None          # node that writes it, None for a graph input
    consumers: tuple[str, ...]
    elements: int = 0             # per inference at the fixed dims (0 when no static shape is known)
    glue_accesses: int = 0        # writes and reads by nodes that are not quantizable layers (whose traffic
                                  # the layers' own cost leaves out)
    shares: str | None = None     # the tensor whose encoding this one keeps (an op that only moves values)
    float_accesses: int = 0       # of those glue nodes, the ones that compute in float on onnxruntime's CPU
                                  # provider (INTEGER_OPS): each converts the tensor when it is held as integers

    def to_dict(self) -> dict:
        return {"tensor": self.tensor, "producer": self.producer, "consumers": list(self.consumers),
                "elements": self.elements, "shares": self.shares}


def activation_groups(model: LoadedModel, scope: str) -> list[TensorGroup]:
    """The activation tensors a runtime with `scope` quantizes, in graph order."""
    if scope not in SCOPES:
        raise QevoError(f"got {scope!r}, expected one of {', '.join(SCOPES)}", field="activation_scope")
    graph = model.proto.graph
    producers = {name: node.name for node in graph.node for name in node.output}
    nodes = {node.name: node for node in graph.node}
    consumers = readers_of(graph)
    if scope == "layer-inputs":
        wanted, shared_with = [name for layer in model.layers for name in layer.activation_inputs], {}
    else:
        placed = placement(model, scope)
        wanted, shared_with = list(placed.tensors), placed.shares
    outputs = {value.name for value in graph.output} if scope != "layer-inputs" else set()
    layer_nodes = {layer.node_name for layer in model.layers if not layer.subgraph}
    groups: list[TensorGroup] = []
    named: set[str] = set()
    for name in dict.fromkeys(wanted):
        readers = consumers.get(name, [])
        if not readers and name not in outputs:
            continue
        producer = producers.get(name)
        touching = [node for node in readers if node.name not in layer_nodes]   # the other ops: glue
        if producer is not None and producer not in layer_nodes:
            touching.append(nodes[producer])
        glue = len(touching)
        in_float = sum(node.op_type not in INTEGER_OPS for node in touching)
        shares = shared_with.get(name)   # a tensor, or a Gather's table (a constant, no gene of its own)
        groups.append(TensorGroup(name, producer, tuple(node.name for node in readers),
                                  numel(model.shapes.get(name)), glue, shares if shares in named else None, in_float))
        named.add(name)
    return groups


def output_tensors(model: LoadedModel, scope: str, groups: list[TensorGroup]) -> dict[str, str]:
    """Layer name -> the tensor of `groups` its output is quantized as: its own output, or that of the one
    Relu / Clip after it that onnxruntime's quantizer folds into the layer (Placement.removed). Layers whose
    output is none are left out."""
    names = {group.tensor for group in groups}
    folded = placement(model, scope).removed
    readers = readers_of(model.proto.graph)
    found = {}
    for layer in model.layers:
        if layer.subgraph:
            continue
        tensor, after = layer.output, readers.get(layer.output, [])
        if tensor not in names and len(after) == 1 and after[0].name in folded:
            tensor = after[0].output[0]
        if tensor in names:
            found[layer.name] = tensor
    return found


def placement(model: LoadedModel, scope: str) -> Placement:
    """Where onnxruntime's quantizer puts Q/DQ on the model for a target with `scope` (once per model)."""
    if scope not in model._placements:
        model._placements[scope] = ort_placement(model.proto, float_tensors(model), RUNTIMES[scope])
    return model._placements[scope]


def readers_of(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor's values (not only its shape), in graph order."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type not in SHAPE_ONLY:
            for name in dict.fromkeys(node.input):
                readers.setdefault(name, []).append(node)
    return readers


def float_tensors(model: LoadedModel) -> dict[str, int]:
    """The top graph's float activation tensors (initializers excluded) and their types, from shape inference."""
    cached = model._float_tensors
    if cached is None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model.proto)
        except Exception:  # inference is best effort; the layers' own inputs are float in any case
            inferred = model.proto
        graph = inferred.graph
        initializers = {t.name for t in graph.initializer}
        cached = {name: model.float_type for layer in model.layers for name in layer.activation_inputs}
        cached.update({value.name: value.type.tensor_type.elem_type
                       for value in [*graph.input, *graph.value_info, *graph.output]
                       if value.type.tensor_type.elem_type in FLOAT_TYPES and value.name not in initializers})
        model._float_tensors = cached
    return cached
