"""The quantizable layer, and finding every one a model holds.

A layer is one constant weight read by one node, plus the activations that node reads:
Conv / ConvTranspose / Gemm / MatMul / Einsum (weights and input activations), a MatMul of
two activations (activations only), Gather embedding tables and the input and recurrence
weights of LSTM / GRU / RNN (weights only: their activations are indices or state).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import onnx

from .graphs import FLOAT_TYPES, attribute, numel, tensor_bytes, walk_graphs

# Op kinds the cost model distinguishes (profiles give each an efficiency).
KIND_CONV = "conv"            # Conv and ConvTranspose with group < channels
KIND_DEPTHWISE = "depthwise"  # Conv with group == input channels
KIND_GEMM = "gemm"            # Gemm, MatMul or Einsum with a constant weight
KIND_ACT_MATMUL = "act_matmul"  # MatMul of two activations: no weight, activations only
KINDS = (KIND_CONV, KIND_DEPTHWISE, KIND_GEMM, KIND_ACT_MATMUL)
# Weight-only kinds, costed as the op kind their arithmetic resembles.
KIND_EMBEDDING = "embedding"  # Gather from a constant table: memory only, no MACs
KIND_RECURRENT = "recurrent"  # LSTM / GRU / RNN input (W) or recurrence (R) weights
COST_KIND = {KIND_EMBEDDING: KIND_GEMM, KIND_RECURRENT: KIND_GEMM}
ENTRY_KINDS = KINDS + (KIND_EMBEDDING, KIND_RECURRENT)   # what a profile's compute entry may be limited to

STANDARD = ("", "ai.onnx")


@dataclass(frozen=True)
class Layer:
    """One quantizable layer of a model.

    Counts are for one inference with every dynamic dimension fixed (batch 1 unless
    the user says otherwise with --dim).
    """

    name: str                        # unique in the model: the node name (node name + "/W" or "/R" for RNNs)
    op_type: str                     # Conv, ConvTranspose, Gemm, MatMul, Einsum, Gather, LSTM, GRU, RNN
    kind: str                        # one of KINDS, KIND_EMBEDDING or KIND_RECURRENT
    input: str                       # activation tensor the layer reads
    output: str                      # tensor the layer writes
    weight: str | None               # initializer holding the weight (None for act_matmul)
    weight_shape: tuple[int, ...]    # () when there is no weight
    params: int                      # weight elements (bias excluded)
    macs: int                        # multiply-accumulates per inference
    input_elems: int                 # activation elements read per inference
    output_elems: int                # activation elements written per inference
    channel_axis: int | None = None  # weight axis of output channels (per-channel scales)
    reduce_axis: int | None = None   # weight axis summed over (per-group scales run along it)
    subgraph: str | None = None      # path of the If/Loop body holding the layer, None at top level
    node: str | None = None          # graph node, when not the layer's own name
    second_input: str | None = None  # the other activation of a MatMul of two activations
    bias: str | None = None          # float constant added to the output: a Conv's or Gemm's bias input, or the
                                     # constant of the one Add that reads a MatMul's output

    @property
    def has_weight(self) -> bool:
        return self.weight is not None

    @property
    def node_name(self) -> str:
        return self.node or self.name

    @property
    def cost_kind(self) -> str:
        return COST_KIND.get(self.kind, self.kind)

    @property
    def weight_only(self) -> bool:
        """No activation format to choose: inside a subgraph (qevo calibrates the top graph only),
        or an op whose inputs are indices or recurrent state."""
        return self.subgraph is not None or self.kind in COST_KIND

    @property
    def activation_inputs(self) -> tuple[str, ...]:
        """The float tensors the layer's activation format applies to."""
        if self.weight_only:
            return ()
        if self.weight is None and self.second_input and self.second_input != self.input:
            return (self.input, self.second_input)
        return (self.input,)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weight_shape"] = list(self.weight_shape)
        return data


# ---------------------------------------------------------------- finding layers

def list_layers(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> list[Layer]:
    """Every quantizable layer, in graph order, subgraphs included."""
    layers = []
    visible: dict[str, onnx.TensorProto] = {}
    for graph, path in walk_graphs(proto.graph):
        # A subgraph may use initializers of the graphs around it.
        visible.update({t.name: t for t in graph.initializer})
        readers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in set(node.input):
                readers.setdefault(name, []).append(node)
        for node in graph.node:
            finder = _FINDERS.get(node.op_type) if node.domain in STANDARD else None
            if finder is not None:
                layers.extend(replace(layer, bias=_bias(node, layer, readers, visible))
                              for layer in finder(node, visible, shapes, path or None))
    return layers


def _bias(node, layer: Layer, readers, initializers) -> str | None:
    """The float constant of `layer.weight_shape[channel_axis]` values added to the layer's output, if any."""
    if layer.weight is None or layer.channel_axis is None:
        return None
    channels = layer.weight_shape[layer.channel_axis]
    candidates = []
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and \
            float(attribute(node, "beta", 1.0)) == 1.0:
        candidates.append(node.input[2])
    elif node.op_type == "MatMul" and len(readers.get(node.output[0], [])) == 1:
        add = readers[node.output[0]][0]
        if add.op_type == "Add" and len(add.input) == 2:
            candidates.append(add.input[1] if add.input[0] == node.output[0] else add.input[0])
    for name in candidates:
        tensor = _float_weight(name, initializers)
        if tensor is not None and numel(tensor.dims) == channels and (not tensor.dims or tensor.dims[-1] == channels):
            return name
    return None


def _float_weight(name: str, initializers) -> onnx.TensorProto | None:
    tensor = initializers.get(name) if name else None
    return tensor if tensor is not None and tensor.data_type in FLOAT_TYPES else None


def _matmul_like(node, initializers, shapes, subgraph) -> list[Layer]:
    op = node.op_type
    a, b = node.input[0], node.input[1]
    out = node.output[0]
    in_shape, out_shape = shapes.get(a), shapes.get(out)
    weight_name = b if b in initializers else None
    weight_on_left = op == "MatMul" and weight_name is None and a in initializers
    if weight_on_left:
        weight_name, a = a, b  # y = W @ x: W's rows are the output channels, its columns are summed over
        in_shape = shapes.get(a)
    if weight_name is None:
        if op != "MatMul":
            return []  # a Conv or Gemm with a computed weight has nothing constant to quantize
        k = in_shape[-1] if in_shape else 0
        return [Layer(name=node.name, op_type=op, kind=KIND_ACT_MATMUL, input=a, output=out, weight=None,
                      weight_shape=(), params=0, macs=numel(out_shape) * k,
                      input_elems=numel(in_shape) + numel(shapes.get(b)), output_elems=numel(out_shape),
                      subgraph=subgraph, second_input=b)]
    tensor = _float_weight(weight_name, initializers)
    if tensor is None:
        return []  # already quantized
    w_shape = tuple(int(d) for d in tensor.dims)
    params = numel(w_shape)
    if op in ("Conv", "ConvTranspose"):
        group = int(attribute(node, "group", 1))
        if op == "Conv":
            channel_axis, reduce_axis = 0, 1
            macs = numel(out_shape) * params // max(w_shape[0], 1)
            depthwise = group > 1 and w_shape[1] == 1
        else:
            channel_axis, reduce_axis = 1, 0
            macs = numel(in_shape) * params // max(w_shape[0], 1)
            depthwise = False
        kind = KIND_DEPTHWISE if depthwise else KIND_CONV
    elif op == "Gemm":
        trans_b = int(attribute(node, "transB", 0))
        channel_axis, reduce_axis = (0, 1) if trans_b else (1, 0)
        macs = numel(out_shape) * w_shape[reduce_axis]
        kind = KIND_GEMM
    else:
        last, before_last = len(w_shape) - 1, max(len(w_shape) - 2, 0)
        channel_axis, reduce_axis = (before_last, last) if weight_on_left else (last, before_last)
        macs = numel(out_shape) * w_shape[reduce_axis]
        kind = KIND_GEMM
    return [Layer(name=node.name, op_type=op, kind=kind, input=a, output=out, weight=weight_name,
                  weight_shape=w_shape, params=params, macs=int(macs), input_elems=numel(in_shape),
                  output_elems=numel(out_shape), channel_axis=channel_axis, reduce_axis=reduce_axis,
                  subgraph=subgraph)]


def _einsum(node, initializers, shapes, subgraph) -> list[Layer]:
    """An Einsum of an activation and a constant: output channels are the weight's letters that
    survive into the output, the reduced ones those that do not."""
    equation = attribute(node, "equation", b"")
    equation = (equation.decode() if isinstance(equation, bytes) else str(equation)).replace(" ", "")
    terms, _, output = equation.partition("->")
    terms = terms.split(",")
    if len(node.input) != 2 or len(terms) != 2 or "." in equation or not output:
        return []
    position = 1 if node.input[1] in initializers else 0 if node.input[0] in initializers else None
    tensor = _float_weight(node.input[position], initializers) if position is not None else None
    if tensor is None:
        return []
    w_letters, x_letters = terms[position], terms[1 - position]
    w_shape = tuple(int(d) for d in tensor.dims)
    x_shape = shapes.get(node.input[1 - position])
    sizes = dict(zip(w_letters, w_shape))
    if x_shape and len(x_shape) == len(x_letters):
        sizes.update(zip(x_letters, x_shape))
    channels = [i for i, c in enumerate(w_letters) if c in output]
    reduced = [i for i, c in enumerate(w_letters) if c not in output]
    macs = numel([sizes.get(c, 0) for c in set(w_letters + x_letters)]) if x_shape else 0
    return [Layer(name=node.name, op_type="Einsum", kind=KIND_GEMM, input=node.input[1 - position],
                  output=node.output[0], weight=tensor.name, weight_shape=w_shape, params=numel(w_shape), macs=macs,
                  input_elems=numel(x_shape), output_elems=numel(shapes.get(node.output[0])),
                  channel_axis=channels[-1] if channels else None, reduce_axis=reduced[0] if reduced else None,
                  subgraph=subgraph)]


def _gather(node, initializers, shapes, subgraph) -> list[Layer]:
    """An embedding table: rows are looked up, so scales go per row (or per group along a row)."""
    tensor = _float_weight(node.input[0], initializers)
    if tensor is None or len(tensor.dims) != 2 or int(attribute(node, "axis", 0)) != 0:
        return []
    w_shape = tuple(int(d) for d in tensor.dims)
    return [Layer(name=node.name, op_type="Gather", kind=KIND_EMBEDDING, input=node.input[1], output=node.output[0],
                  weight=tensor.name, weight_shape=w_shape, params=numel(w_shape), macs=0,
                  input_elems=numel(shapes.get(node.input[1])), output_elems=numel(shapes.get(node.output[0])),
                  channel_axis=0, reduce_axis=1, subgraph=subgraph)]


def _recurrent(node, initializers, shapes, subgraph) -> list[Layer]:
    """LSTM / GRU / RNN: W [directions, gates x hidden, input] and R [directions, gates x hidden, hidden],
    each multiplied once per time step and batch row."""
    x_shape = shapes.get(node.input[0])
    steps = 0
    if x_shape and len(x_shape) == 3:
        steps = x_shape[0] * x_shape[1]   # (seq, batch) or (batch, seq): the product is the same
    layers = []
    for position, tag in ((1, "W"), (2, "R")):
        tensor = _float_weight(node.input[position] if len(node.input) > position else "", initializers)
        if tensor is None or len(tensor.dims) != 3:
            continue
        w_shape = tuple(int(d) for d in tensor.dims)
        reads = numel(x_shape) if tag == "W" else steps * w_shape[0] * w_shape[2]
        layers.append(Layer(name=f"{node.name}/{tag}", node=node.name, op_type=node.op_type, kind=KIND_RECURRENT,
                            input=node.input[0], output=node.output[0] if node.output else "", weight=tensor.name,
                            weight_shape=w_shape, params=numel(w_shape), macs=steps * numel(w_shape),
                            input_elems=reads, output_elems=numel(shapes.get(node.output[0])) if tag == "W" else 0,
                            channel_axis=1, reduce_axis=2, subgraph=subgraph))
    return layers


_FINDERS = {"Conv": _matmul_like, "ConvTranspose": _matmul_like, "Gemm": _matmul_like, "MatMul": _matmul_like,
            "Einsum": _einsum, "Gather": _gather, "LSTM": _recurrent, "GRU": _recurrent, "RNN": _recurrent}
SHAPED_OPS = tuple(_FINDERS)   # ops whose tensor shapes layer finding needs


# ---------------------------------------------------------------- what stays out of reach

@dataclass(frozen=True)
class WeightHolder:
    """A constant float matrix (two dims or more above 1: vectors such as biases and norms are not weights)
    that nodes read, and whether qevo can quantize it."""

    tensor: str
    bytes: int
    nodes: tuple[str, ...]   # the nodes that read it
    op_types: tuple[str, ...]
    layer: str | None        # a layer that quantizes it, or None
    why: str | None          # why not, when layer is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"], data["op_types"] = list(self.nodes), list(self.op_types)
        return data


def weight_holders(proto: onnx.ModelProto, layers: list[Layer]) -> list[WeightHolder]:
    """Every constant weight of the model (each tensor once), quantizable or not."""
    covered = {layer.weight: layer.name for layer in layers if layer.weight}
    readers: dict[str, list[onnx.NodeProto]] = {}
    tensors: dict[str, onnx.TensorProto] = {}
    visible: dict[str, onnx.TensorProto] = {}
    for graph, _ in walk_graphs(proto.graph):
        visible.update({t.name: t for t in graph.initializer})
        for node in graph.node:
            for name in dict.fromkeys(node.input):
                tensor = _float_weight(name, visible)
                if tensor is not None and sum(d > 1 for d in tensor.dims) >= 2:
                    tensors[name] = tensor
                    readers.setdefault(name, []).append(node)
    holders = []
    for name, nodes in readers.items():
        layer = covered.get(name)
        op_types = tuple(dict.fromkeys(n.op_type if n.domain in STANDARD else f"{n.domain}.{n.op_type}" for n in nodes))
        holders.append(WeightHolder(name, tensor_bytes(tensors[name]), tuple(n.name for n in nodes), op_types, layer,
                                    None if layer else _why_not(nodes[0], name)))
    return holders


def _why_not(node: onnx.NodeProto, tensor: str) -> str:
    if node.domain not in STANDARD:
        return f"{node.domain} contrib op: qevo does not rewrite it"
    if node.op_type == "Gather":
        return "Gather along an axis other than 0 or from a table of rank above 2"
    if node.op_type in _FINDERS:
        return f"the constant is not the weight input of this {node.op_type}"
    return f"{node.op_type} is not a layer qevo quantizes"
