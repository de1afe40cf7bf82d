"""One editor builds a policy's model, both the variant the search measures and the file it exports.

For each layer the policy quantizes, the editor finds the layer's node (in any graph), puts its
activation inputs through the activation format's nodes (Q/DQ pairs, DynamicQuantizeLinear, an fp16
round trip) and writes its weight in one of two ways:

- simulated: a float initializer holding the weight's rounded values (fast to build and to run);
- stored: the integer codes as the runtime keeps them (stored.py), behind a DequantizeLinear
  (per-tensor, per-channel, or blocked for per-group), or a `MatMulNBits` for 4-bit per-group
  MatMul weights, or an fp16 initializer behind a Cast. 2-bit codes are packed four to a byte
  (onnxruntime's QDQ fusions reject an int2 DequantizeLinear in front of a quantized Conv).

Both give the layer the same values, so what the search measured is what the export computes.
Integer formats without an ONNX type (3, 5, 6, 7 bits) can only be simulated. A half-precision
model keeps its type: Q/DQ work in float32 between two Casts, dequantized weights are cast back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .calibration import ActivationCalibrator
from .errors import QevoError, first_line
from .graphs import all_initializers, drop_unused, walk_graphs
from .layers import Layer
from .model import LoadedModel, convert_opset, default_opset
from .policy import LayerChoice, Policy, activation_bits, group_size
from .quantize import activation_qparams
from .recovery import weight_matrix
from .smoothing import divide_node, scaled_grams, scaled_weight, smoothed_range, smoothing_scales, smooths
from .stored import BLOCKED_OPSET, DEQUANTIZE_OPSET, MS_DOMAIN, fits_matmul_nbits, storable
from .fullgraph import RULES, fixed_qparams, remove_folded_activations, tensor_qparams
from .scope import float_tensors, placement, readers_of
from . import sparsity
from .weight_edit import WeightWriter

_END = "\x00end"               # key of the nodes that go after every other node (no node name holds a NUL)
FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@dataclass(frozen=True)
class ActivationNodes:
    """Nodes (and their constants) that quantize one input tensor of one layer; `output` replaces it."""

    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    output: str


class GraphEditor(WeightWriter):
    """Builds quantized models of one loaded model; caches the weights and activation nodes it computes."""

    def __init__(self, model: LoadedModel, calibrator: ActivationCalibrator, weights_of: "GraphEditor | None" = None):
        """`weights_of` is the editor of the model `model` was pruned from: a layer's weight is a function of
        its shape there (structure.py), so the two share the weights they compute, keyed by layer and shape."""
        self.model = model
        self.calibrator = calibrator
        self._initializers = {t.name: t for t in all_initializers(model.proto.graph)}
        self._simulated: dict[tuple, onnx.TensorProto] = weights_of._simulated if weights_of else {}
        # N:M pruned weights, per layer, shape and pattern
        self._pruned: dict[tuple, np.ndarray] = weights_of._pruned if weights_of else {}
        self._activations: dict[tuple, ActivationNodes] = {}
        self._converted: dict[int, onnx.ModelProto] = {}
        # Short names for what the editor adds (on a small model, long names cost more bytes than weights),
        # behind a prefix no name of the model uses: a model qevo exported before holds the same short names.
        self._prefix = _free_prefix(model.proto)
        self._tags = {layer.name: f"{self._prefix}q{i}" for i, layer in enumerate(model.layers)}
        self._tensor_tags: dict[str, str] | None = None
        self._producers = {name: node for node in model.proto.graph.node for name in node.output}
        self._constants: dict[str, tuple] = {}
        self._finite_constants: dict[str, bool] = {}
        self._corrected: dict[str, np.ndarray] = {}   # biases bias correction rewrote in the model being built
        self._scales: dict[tuple, np.ndarray] = weights_of._scales if weights_of else {}

    # -- the model -------------------------------------------------------------------------------
    def build(self, policy: Policy, store: bool = False, base: onnx.ModelProto | None = None) -> onnx.ModelProto:
        """The model with `policy` applied: weights simulated in float, or stored (`store`).
        `base` is the loaded model or a copy of it at a newer opset."""
        model = onnx.ModelProto()
        model.CopyFrom(base if base is not None else self.model.proto)
        graphs = [g for g, _ in walk_graphs(model.graph)]
        nodes = {node.name: (i, node) for i, graph in enumerate(graphs) for node in graph.node}
        before: dict[int, dict[str, list[onnx.NodeProto]]] = {}
        self._corrected = {}
        for layer in self.model.layers:
            choice = policy.layers.get(layer.name)
            if choice is None or (choice.weight == "fp32" and choice.activation == "fp32" and choice.sparsity == "dense"):
                continue
            if layer.node_name not in nodes:
                raise QevoError(f"layer {layer.name!r}: node {layer.node_name!r} is missing from the model")
            graph_i, node = nodes[layer.node_name]
            if (layer.weight or layer.input) not in node.input:
                raise QevoError(f"layer {layer.name!r}: node {node.name!r} no longer reads "
                                f"{layer.weight or layer.input!r}; the model changed under the layer list")
            added = before.setdefault(graph_i, {}).setdefault(node.name, [])
            if not layer.weight_only and choice.activation != "fp32":
                self._quantize_activations(graphs[graph_i], node, layer, choice, added, policy.tensors)
            if layer.weight is not None and (choice.weight != "fp32" or choice.sparsity != "dense"):
                if store:
                    self._store_weight(graphs[graph_i], node, layer, choice, added)
                else:
                    self._replace_weight(node, layer, self.simulated_weight(layer, choice), graphs[graph_i])
                if choice.bias_correction and choice.weight_is_int:
                    self._correct_bias(graphs[graph_i], node, layer, choice)
        if any(fmt != "fp32" for fmt in policy.tensors.values()):
            top = before.setdefault(0, {})
            constants = self._quantize_constants(graphs[0], policy, store)   # while nodes read the tensors' names
            remove_folded_activations(graphs[0], policy.tensors, placement(self.model, policy.scope).removed)
            self._quantize_tensors(graphs[0], dict(policy.tensors), top, policy.scope)
            if constants and graphs[0].node:
                first = graphs[0].node[0].name
                top[first] = constants + top.get(first, [])
        # Subgraphs first: rewriting a graph's node list copies the bodies of its If / Loop nodes, so a
        # body edited after its parent would be edited in a copy no longer in the model.
        for graph_i, entries in sorted(before.items(), reverse=True):
            _insert_before(graphs[graph_i], entries)
        drop_unused(model)
        used = {node.domain for graph in graphs for node in graph.node}
        if MS_DOMAIN in used and not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        return model

    def at_opset(self, opset: int) -> onnx.ModelProto:
        """The loaded model at a default opset of at least `opset` (converted once per opset)."""
        proto = self.model.proto
        if opset <= default_opset(proto):
            return proto
        if opset not in self._converted:
            try:
                self._converted[opset] = convert_opset(proto, opset)
            except Exception as err:  # the converter raises bare RuntimeErrors from C++
                raise QevoError(f"storing these weights needs opset {opset}, and the model could not be converted "
                                f"from opset {default_opset(proto)} ({first_line(err)}); choose int8 formats or pass "
                                "--allow-simulated", path=self.model.path) from None
        return self._converted[opset]

    def required_opset(self, policy: Policy) -> int:
        """The lowest default opset whose DequantizeLinear stores every weight of `policy`."""
        needed = 0
        for layer in self.model.layers:
            choice = policy.choice(layer.name)
            if layer.weight is None or not choice.weight_is_int or not storable(choice):
                continue
            if fits_matmul_nbits(layer, choice, self._initializers[layer.weight].data_type):
                continue
            needed = max(needed, DEQUANTIZE_OPSET[choice.weight_bits])
            if group_size(choice.granularity) and len(layer.weight_shape) >= 2:
                needed = max(needed, BLOCKED_OPSET)
        return needed

    # -- activations -----------------------------------------------------------------------------
    def _quantize_activations(self, graph, node, layer: Layer, choice: LayerChoice, added: list,
                              tensors: dict[str, str]) -> None:
        if choice.smoothed:
            self._smooth_input(graph, node, layer, choice, added)
            return
        done: set[str] = set()   # x @ x: the same tensor on both inputs is quantized once
        for position, tensor in enumerate(node.input[:2]):
            if tensor not in layer.activation_inputs or tensors.get(tensor, "fp32") != "fp32":
                continue   # a tensor quantized where it is produced is read as it is
            built = self.activation_nodes(layer, tensor, choice)
            node.input[position] = built.output
            if tensor not in done:
                added.extend(built.nodes)
                graph.initializer.extend(built.initializers)
                done.add(tensor)

    def _smooth_input(self, graph, node, layer: Layer, choice: LayerChoice, added: list) -> None:
        """The layer's input divided by its smoothing scales, then through the layer's own Q/DQ: it reads the
        float tensor even where the tensor is quantized for its other readers."""
        key = (layer.name, "smoothed", choice.activation, choice.smoothing)
        built = self._activations.get(key)
        if built is None:
            scales = self.smoothing_scales(layer, choice.smoothing)
            transposed = layer.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
            prefix = f"{self._tags[layer.name]}.m"
            mul, constant = divide_node(layer.input, scales, transposed, prefix, self._float_type(layer.input))
            bits = activation_bits(choice.activation)
            lows, highs = self.calibrator.input_range(layer)
            quantized = self._quantize_nodes(f"{self._tags[layer.name]}.n", mul.output[0], choice.activation, "minmax",
                                             activation_qparams(*smoothed_range(lows[0], highs[0], scales), bits))
            built = ActivationNodes([mul, *quantized.nodes], [constant, *quantized.initializers], quantized.output)
            self._activations[key] = built
        node.input[list(node.input).index(layer.input)] = built.output
        added.extend(built.nodes)
        graph.initializer.extend(built.initializers)

    def smoothing_scales(self, layer: Layer, alpha: float) -> np.ndarray:
        """The layer's smoothing scales at strength `alpha`, one per input channel (cached)."""
        if not smooths(layer):
            raise QevoError(f"layer {layer.name!r}: smoothing applies to MatMul layers reading x @ W and to Gemm "
                            "layers of the top graph", field="smoothing")
        key = (layer.name, layer.weight_shape, alpha)
        if key not in self._scales:
            lows, highs = self.calibrator.input_range(layer)
            matrix = weight_matrix(self.weight_values(layer), layer.channel_axis)
            self._scales[key] = smoothing_scales(lows[0], highs[0], matrix, alpha)
        return self._scales[key]

    def layer_weight(self, layer: Layer, choice: LayerChoice) -> np.ndarray:
        """The float weight the choice quantizes: the layer's own, or times its smoothing scales; with N:M
        sparsity, pruned (and, with gptq rounding, compensated: sparsity.py)."""
        weight = self.weight_values(layer)
        if choice.smoothed:
            weight = scaled_weight(weight, layer.channel_axis, self.smoothing_scales(layer, choice.smoothing))
        if choice.sparsity == "dense":
            return weight
        compensated = choice.rounding == "gptq"   # float weights too: the reconstruction needs no grid
        key = (layer.name, layer.weight_shape, choice.sparsity, compensated, choice.smoothed and choice.smoothing)
        if key not in self._pruned:
            if not sparsity.applies(layer, choice.sparsity):
                raise QevoError(f"layer {layer.name!r} cannot hold {choice.sparsity} sparsity (a Conv, Gemm or MatMul "
                                "whose input dimension splits into its blocks)", field=f"layers.{layer.name}.sparsity")
            gram = self.input_statistics(layer, choice)[0] if compensated else None
            self._pruned[key] = sparsity.pruned(weight, layer, choice.sparsity, gram)
        return self._pruned[key]

    def input_statistics(self, layer: Layer, choice: LayerChoice) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Gram matrices and means of the input the choice's weight reads (divided by the smoothing scales)."""
        grams, means = self.calibrator.gram(layer), self.calibrator.input_mean(layer)
        if not choice.smoothed:
            return grams, means
        scales = self.smoothing_scales(layer, choice.smoothing)
        return scaled_grams(grams, scales), [mean / scales for mean in means]

    def activation_nodes(self, layer: Layer, tensor: str, choice: LayerChoice) -> ActivationNodes:
        """The nodes that put `tensor` through the choice's activation format for `layer` (cached)."""
        key = (layer.name, tensor, choice.activation, choice.calibration)
        built = self._activations.get(key)
        if built is None:
            built = self._build_activation_nodes(layer, tensor, choice)
            self._activations[key] = built
        return built

    def _build_activation_nodes(self, layer: Layer, tensor: str, choice: LayerChoice) -> ActivationNodes:
        prefix = f"{self._tags[layer.name]}.a{layer.activation_inputs.index(tensor)}"
        return self._quantize_nodes(prefix, tensor, choice.activation, choice.calibration)

    def tensor_nodes(self, tensor: str, fmt: str, tensors: dict[str, str] | None = None,
                     scope: str = "all-tensors") -> ActivationNodes:
        """The nodes that put an activation tensor through `fmt` where it is produced (cached); `tensors` is
        the policy's, whose formats decide which encodings are shared, and `scope` its runtime's rules."""
        qparams = self.tensor_qparams(tensor, fmt, tensors or {tensor: fmt}, scope) \
            if fmt in ("int8", "int16") else None
        key = ("tensor", tensor, fmt, qparams)
        built = self._activations.get(key)
        if built is None:
            if self._tensor_tags is None:
                self._tensor_tags = {name: f"{self._prefix}t{i}"
                                     for i, name in enumerate(sorted(float_tensors(self.model)))}
            built = self._quantize_nodes(self._tensor_tags[tensor], tensor, fmt, "minmax", qparams)
            self._activations[key] = built
        return built

    def tensor_qparams(self, tensor: str, fmt: str, tensors: dict[str, str],
                       scope: str = "all-tensors") -> tuple[np.float32, int]:
        """Scale and zero point of a tensor quantized where it is produced, as the runtime of `scope` sets
        them (fullgraph.py): fixed for some ops, shared through ops that only move values, else from the
        tensor's own range."""
        bits, rules = activation_bits(fmt), RULES[scope]
        producer = self._producers.get(tensor)
        if producer is not None:
            fixed = fixed_qparams(producer.op_type, bits, rules)
            if fixed is not None:
                return fixed
            source = placement(self.model, scope).shares.get(tensor)
            if source in self._initializers:   # a Gather's table
                values = self._float_values(source)
                return tensor_qparams(float(values.min()), float(values.max()), bits, rules.min_real_range)
            if source is not None and tensors.get(source) == fmt:
                return self.tensor_qparams(source, fmt, tensors, scope)
        return tensor_qparams(*self.calibrator.tensor_range(tensor), bits, rules.min_real_range)

    def _quantize_nodes(self, prefix: str, tensor: str, activation: str, calibration: str,
                        qparams: tuple[np.float32, int] | None = None) -> ActivationNodes:
        half = self._float_type(tensor) == FLOAT16
        if activation == "fp16":
            if half:
                return ActivationNodes([], [], tensor)
            return ActivationNodes([helper.make_node("Cast", [tensor], [f"{prefix}.h"], to=FLOAT16),
                                    helper.make_node("Cast", [f"{prefix}.h"], [f"{prefix}.dq"], to=FLOAT)],
                                   [], f"{prefix}.dq")
        nodes: list[onnx.NodeProto] = []
        source = tensor
        if half:   # Q/DQ in float32 between two Casts: valid at every opset
            source = f"{prefix}.f"
            nodes.append(helper.make_node("Cast", [tensor], [source], to=FLOAT))
        out = f"{prefix}.dq"
        initializers = []
        if activation == "dynamic-int8":
            q, s, z = f"{prefix}.q", f"{prefix}.s", f"{prefix}.z"
            nodes += [helper.make_node("DynamicQuantizeLinear", [source], [q, s, z]),
                      helper.make_node("DequantizeLinear", [q, s, z], [out])]
        else:
            bits = activation_bits(activation)
            if qparams is None:
                qparams = activation_qparams(*self.calibrator.range(tensor, calibration, bits), bits)
            scale, zero_point = qparams
            zp_type = onnx.TensorProto.UINT8 if bits == 8 else onnx.TensorProto.UINT16
            domain = "" if bits == 8 else MS_DOMAIN
            params = [f"{prefix}.s", f"{prefix}.z"]
            # initializers, not Constant nodes: nothing for the session to fold
            initializers = [helper.make_tensor(params[0], FLOAT, [], [float(scale)]),
                            helper.make_tensor(params[1], zp_type, [], [zero_point])]
            nodes += [helper.make_node("QuantizeLinear", [source, *params], [f"{prefix}.q"], domain=domain),
                      helper.make_node("DequantizeLinear", [f"{prefix}.q", *params], [out], domain=domain)]
        if half:
            nodes.append(helper.make_node("Cast", [out], [f"{prefix}.h"], to=FLOAT16))
            out = f"{prefix}.h"
        return ActivationNodes(nodes, initializers, out)

    def _float_type(self, tensor: str) -> int:
        """The tensor's own float type: a half-precision model may keep float32 islands, and the reverse."""
        if not self.model.mixed_float:
            return self.model.float_type
        return float_tensors(self.model).get(tensor, self.model.float_type)

    def _quantize_tensors(self, graph: onnx.GraphProto, tensors: dict[str, str], before: dict, scope: str) -> None:
        """One Q/DQ pair per named tensor of the top graph, read by every node that read the tensor
        (a node already rewired to a layer's own Q/DQ keeps it). A graph output keeps its name: its
        producer writes under another name, and the last node of the pair writes the output."""
        readers = readers_of(graph)
        outputs = {value.name for value in graph.output}
        producers = {name: node for node in graph.node for name in node.output}
        for tensor, fmt in sorted(tensors.items()):
            if fmt == "fp32" or not (readers.get(tensor) or tensor in outputs):
                continue
            built = self.tensor_nodes(tensor, fmt, tensors, scope)
            graph.initializer.extend(built.initializers)
            if tensor in outputs and tensor in producers:
                nodes = _renamed(built, tensor, f"{built.output}.in", tensor)
                producer = producers[tensor]
                producer.output[list(producer.output).index(tensor)] = f"{built.output}.in"
                # its readers keep reading the output's name, now the quantized value
                where = readers[tensor][0].name if readers.get(tensor) else _END
                before[where] = nodes + before.get(where, [])
                continue
            for node in readers[tensor]:
                for position, name in enumerate(node.input):
                    if name == tensor:
                        node.input[position] = built.output
            first = readers[tensor][0].name   # readers come in graph order
            before[first] = built.nodes + before.get(first, [])


ADDED_NAME = re.compile(r"^(?:q\d+|t\d+|k\d+|2bit)\.")


def _free_prefix(proto: onnx.ModelProto) -> str:
    """'' unless the model already holds names like those the editor adds (q12.w, t3.q, k4.v, 2bit.two)."""
    names = {name for graph, _ in walk_graphs(proto.graph)
             for name in [*(t.name for t in graph.initializer), *(o for n in graph.node for o in n.output),
                          *(v.name for v in graph.input)]}
    prefix, n = "", 0
    while any(name.startswith(prefix) and ADDED_NAME.match(name[len(prefix):]) for name in names):
        n += 1
        prefix = f"x{n}_"
    return prefix


def _insert_before(graph: onnx.GraphProto, before: dict[str, list[onnx.NodeProto]]) -> None:
    """Put each list of new nodes right before the named node (or at the end), keeping topological order."""
    nodes = []
    for node in graph.node:
        nodes.extend(before.get(node.name, ()))
        nodes.append(node)
    nodes.extend(before.get(_END, ()))
    del graph.node[:]
    graph.node.extend(nodes)


def _renamed(built: ActivationNodes, source: str, new_source: str, output: str) -> list[onnx.NodeProto]:
    """Copies of `built`'s nodes reading `new_source` for `source` and writing `output` for their output."""
    nodes = []
    for original in built.nodes:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        node.input[:] = [new_source if name == source else name for name in node.input]
        node.output[:] = [output if name == built.output else name for name in node.output]
        nodes.append(node)
    return nodes
