"""Structured channel pruning: which output channels of which Convs can be removed together, and the surgery
that removes them and keeps the model valid.

A Conv's output channels form a channel space. Ops that work channel by channel carry the space unchanged:
activations, BatchNormalization, pooling, a depthwise Conv (its channels are its groups), a Mul / Add /
Sub / Div by a scalar or per-channel constant. Ops that sum over channels read it and end it: a Conv's input,
and a Gemm or MatMul after a Flatten of a one-pixel map (global pooling). An elementwise op of two spaces (a
residual Add) ties them: their producers prune the same channels or none. Anything else that reads a space
(a Concat, a Split, a Reshape, a graph output) leaves it unprunable, as does a tie between spaces of other
widths. Only the top graph is pruned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .graphs import attribute, drop_unused

UNARY = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Identity", "Elu", "Selu",
         "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Abs", "Neg", "Floor", "Ceil", "Round", "Dropout", "Cast",
         "PRelu"}
POOLS = {"GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool"}
BINARY = {"Add", "Mul", "Sub", "Div"}


@dataclass
class ChannelGroup:
    """Convs whose output channels prune together, and every place those channels are read or carried."""

    channels: int
    producers: list[str] = field(default_factory=list)      # Convs writing the channels (weight axis 0, bias)
    carriers: list[tuple[str, str]] = field(default_factory=list)   # (node, kind): "norm", "depthwise", "const"
    readers: list[tuple[str, str]] = field(default_factory=list)    # (node, kind): "conv", "gemm" (after Flatten)
    tensors: set[str] = field(default_factory=set)          # every tensor holding the channels
    prunable: bool = True
    why: str = ""


def channel_groups(model: onnx.ModelProto) -> list[ChannelGroup]:
    """The channel groups of the model's top graph, in the order of their first producer."""
    graph = model.graph
    constants = folded_constants(graph)
    spaces = _Spaces()
    space_of: dict[str, int] = {}
    outputs = {value.name for value in graph.output}
    producers = {name: node for node in graph.node for name in node.output}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        carried = [space_of[name] for name in inputs if name in space_of]
        op = node.op_type
        if op == "Conv" and len(inputs) >= 2 and inputs[1] in constants:
            weight = constants[inputs[1]]
            groups = attribute(node, "group", 1)
            if carried:
                if groups > 1 and groups == weight.shape[0] and weight.shape[1] == 1:   # depthwise: channel-wise
                    space_of[node.output[0]] = spaces.carry(carried[0], node.name, "depthwise", weight.shape[0])
                    continue
                spaces.read(carried[0], node.name, "conv", weight.shape[1] * groups)
                if groups > 1:
                    spaces.block(carried[0], f"{node.name} is a grouped Conv")
            if groups == 1:
                space_of[node.output[0]] = spaces.produce(node.name, weight.shape[0])
            continue
        if not carried:
            continue
        if op in UNARY or op in POOLS or (op == "BatchNormalization" and inputs[0] in space_of):
            if op == "BatchNormalization":
                spaces.carry(carried[0], node.name, "norm")
            elif op == "PRelu":
                spaces.block(carried[0], f"{node.name} has a slope per channel")
            space_of[node.output[0]] = spaces.root(carried[0])
        elif op in BINARY and len(inputs) == 2:
            other = [name for name in inputs if name not in space_of]
            if len(carried) == 2:   # a residual: both spaces prune together
                space_of[node.output[0]] = spaces.tie(carried[0], carried[1], node.name)
            elif other and other[0] in constants and _per_channel(constants[other[0]], spaces.width(carried[0])):
                if constants[other[0]].size > 1:
                    spaces.carry(carried[0], node.name, "const")
                space_of[node.output[0]] = spaces.root(carried[0])
            else:
                spaces.block(carried[0], f"{node.name} ({op}) combines it with a tensor of no channel space")
        elif op == "Flatten" and producers[inputs[0]].op_type in ("GlobalAveragePool", "GlobalMaxPool"):
            # a one-pixel map: its flattened features are its channels
            space_of[node.output[0]] = spaces.root(carried[0])
            spaces.flattened(carried[0], node.output[0])
        elif op in ("Gemm", "MatMul") and len(inputs) >= 2 and inputs[1] in constants and inputs[0] in space_of \
                and spaces.is_flat(carried[0], inputs[0]) and not attribute(node, "transA", 0):
            spaces.read(carried[0], node.name, "gemm", spaces.width(carried[0]))
        else:
            for space in carried:
                spaces.block(space, f"{node.name} ({op}) reads it")
    for name, space in space_of.items():
        spaces.hold(space, name)
        if name in outputs:
            spaces.block(space, f"{name} is a graph output")
    return spaces.groups()


def folded_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers, and what Reshape, Unsqueeze, Squeeze, Cast and Identity make of them alone (exporters
    write a Conv's bias as an Add of a reshaped constant). Constant nodes are initializers already in a model
    as `load_model` normalises it."""
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type in ("Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity") and inputs \
                and all(name in constants for name in inputs):
            data = constants[inputs[0]]
            if node.op_type == "Reshape":
                shape = [d if d != 0 else data.shape[i] for i, d in enumerate(constants[inputs[1]].tolist())]
                constants[node.output[0]] = data.reshape(shape)
            elif node.op_type in ("Unsqueeze", "Squeeze"):
                axes = constants[inputs[1]].tolist() if len(inputs) > 1 else attribute(node, "axes", None)
                if node.op_type == "Squeeze":
                    constants[node.output[0]] = np.squeeze(data, axis=tuple(axes) if axes is not None else None)
                else:
                    constants[node.output[0]] = np.expand_dims(data, tuple(a % (data.ndim + len(axes))
                                                                           for a in axes))
            elif node.op_type == "Cast":
                constants[node.output[0]] = data.astype(onnx.helper.tensor_dtype_to_np_dtype(attribute(node, "to", 1)))
            else:
                constants[node.output[0]] = data
    return constants


def _per_channel(constant: np.ndarray, channels: int) -> bool:
    """A scalar, or one value per channel on the channel axis of an NCHW tensor ([C,1,1] or [1,C,1,1])."""
    if constant.size == 1:
        return True
    shape = constant.shape
    return len(shape) >= 3 and shape[-3] == channels and constant.size == channels


class _Spaces:
    """Union-find over channel spaces, each root holding its ChannelGroup."""

    def __init__(self):
        self.parent: list[int] = []
        self.group: list[ChannelGroup] = []
        self.flat: dict[int, set[str]] = {}

    def produce(self, node: str, channels: int) -> int:
        self.parent.append(len(self.parent))
        self.group.append(ChannelGroup(channels, producers=[node]))
        return len(self.parent) - 1

    def root(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def width(self, space: int) -> int:
        return self.group[self.root(space)].channels

    def carry(self, space: int, node: str, kind: str, channels: int | None = None) -> int:
        root = self.root(space)
        if channels is not None and channels != self.group[root].channels:
            self.block(root, f"{node} has {channels} channels, not {self.group[root].channels}")
        self.group[root].carriers.append((node, kind))
        return root

    def read(self, space: int, node: str, kind: str, channels: int) -> None:
        root = self.root(space)
        if channels != self.group[root].channels:
            self.block(root, f"{node} reads {channels} channels, not {self.group[root].channels}")
        self.group[root].readers.append((node, kind))

    def tie(self, first: int, second: int, node: str) -> int:
        a, b = self.root(first), self.root(second)
        if a == b:
            return a
        if self.group[a].channels != self.group[b].channels:
            self.block(a, f"{node} adds {self.group[b].channels} channels to {self.group[a].channels}")
            self.block(b, f"{node} adds {self.group[a].channels} channels to {self.group[b].channels}")
            return a
        kept, gone = self.group[a], self.group[b]
        for name in ("producers", "carriers", "readers"):
            getattr(kept, name).extend(getattr(gone, name))
        if not gone.prunable:
            self.block(a, gone.why)
        self.flat.setdefault(a, set()).update(self.flat.pop(b, set()))
        self.parent[b] = a
        return a

    def block(self, space: int, why: str) -> None:
        group = self.group[self.root(space)]
        if group.prunable:
            group.prunable, group.why = False, why

    def hold(self, space: int, tensor: str) -> None:
        self.group[self.root(space)].tensors.add(tensor)

    def flattened(self, space: int, tensor: str) -> None:
        self.flat.setdefault(self.root(space), set()).add(tensor)

    def is_flat(self, space: int, tensor: str) -> bool:
        return tensor in self.flat.get(self.root(space), set())

    def groups(self) -> list[ChannelGroup]:
        return [self.group[i] for i in range(len(self.parent)) if self.root(i) == i]


def importance(model: onnx.ModelProto, group: ChannelGroup) -> np.ndarray:
    """Each channel's L1 norm of the producers' weights, each producer's share scaled to sum 1 (cheap, and
    blind to the data: the refit of the readers is what recovers the output)."""
    weights = folded_constants(model.graph)   # where channel_groups found the producers' weights
    nodes = {node.name: node for node in model.graph.node}
    score = np.zeros(group.channels)
    for name in group.producers:
        values = np.abs(weights[nodes[name].input[1]].astype(np.float64))
        per_channel = values.reshape(values.shape[0], -1).sum(axis=1)
        score += per_channel / max(per_channel.sum(), 1e-30)
    return score


def prune(model: onnx.ModelProto, group: ChannelGroup, keep, grams=None) -> onnx.ModelProto:
    """A copy of `model` with only the channels `keep` (indices) of a prunable group: the producers' weights and
    biases, the carriers' per-channel parameters and the readers' input weights sliced. Sliced values are new
    initializers (a shared one stays whole for its other users). With `grams` (reader node -> the Gram matrix
    of its input in `recovery.weight_matrix`'s column order, on calibration data), each reader's kept weights
    are refitted by least squares to give its unpruned output from the kept channels alone."""
    if not group.prunable:
        raise ValueError(f"the group of {', '.join(group.producers)} cannot be pruned: {group.why}")
    keep = np.asarray(sorted(set(int(k) for k in keep)), dtype=np.int64)
    if not len(keep) or keep[0] < 0 or keep[-1] >= group.channels:
        raise ValueError(f"expected channels to keep among 0..{group.channels - 1}")
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    graph = pruned.graph
    nodes = {node.name: node for node in graph.node}
    values = folded_constants(graph)

    def sliced(node: onnx.NodeProto, position: int, axis: int) -> None:
        name = node.input[position]
        array = np.take(values[name], keep, axis=axis % values[name].ndim)
        new = numpy_helper.from_array(array, f"{name}.{node.name}.pruned")
        graph.initializer.append(new)
        values[new.name] = array
        node.input[position] = new.name

    for name in group.producers:
        node = nodes[name]
        sliced(node, 1, 0)
        if len(node.input) > 2 and node.input[2]:
            sliced(node, 2, 0)
    for name, kind in group.carriers:
        node = nodes[name]
        if kind == "norm":
            for position in range(1, 5):
                sliced(node, position, 0)
        elif kind == "depthwise":
            sliced(node, 1, 0)
            if len(node.input) > 2 and node.input[2]:
                sliced(node, 2, 0)
            for attr in node.attribute:
                if attr.name == "group":
                    attr.i = len(keep)
        else:   # a per-channel constant of a Mul / Add / Sub / Div
            position = next(i for i, name in enumerate(node.input) if name in values)
            sliced(node, position, -3)
    for name, kind in group.readers:
        node = nodes[name]
        axis = 1 if kind == "conv" or (node.op_type == "Gemm" and attribute(node, "transB", 0)) else 0
        gram = (grams or {}).get(name)
        if gram is None:
            sliced(node, 1, axis)
            continue
        weight = values[node.input[1]]
        refitted = refit(weight, gram, keep, axis)
        new = numpy_helper.from_array(refitted, f"{node.input[1]}.{node.name}.refit")
        graph.initializer.append(new)
        values[new.name] = refitted
        node.input[1] = new.name
    # shapes recorded for the pruned tensors no longer hold
    stale = [v for v in graph.value_info if v.name in group.tensors]
    for value in stale:
        graph.value_info.remove(value)
    drop_unused(pruned)
    return pruned


REFIT_DAMPING = 0.01   # of the kept inputs' mean Gram diagonal, added before solving


def refit(weight: np.ndarray, gram: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """The reader's weight for the kept input channels (along `axis`) that best reproduces, in least squares
    over the inputs whose Gram matrix is `gram`, the output the full weight gave: W_k = W H[:, k] H[k, k]^-1."""
    moved = np.moveaxis(np.asarray(weight, np.float64), axis, 1)   # [outputs, channels, kernel...]
    per_channel = int(np.prod(moved.shape[2:], dtype=np.int64))
    matrix = moved.reshape(moved.shape[0], -1)
    columns = (np.asarray(keep)[:, None] * per_channel + np.arange(per_channel)).reshape(-1)
    kept = gram[np.ix_(columns, columns)]
    damping = REFIT_DAMPING * float(np.mean(np.diag(kept))) or 1e-12
    solved = np.linalg.solve(kept + damping * np.eye(len(columns)), (matrix @ gram[:, columns]).T).T
    shaped = solved.reshape(moved.shape[0], len(keep), *moved.shape[2:])
    return np.moveaxis(shaped, 1, axis).astype(weight.dtype)


def refit_error(weight: np.ndarray, gram: np.ndarray, keep: np.ndarray, axis: int) -> tuple[float, float]:
    """(squared output error of the refitted reader, squared output of the full one) over the inputs whose Gram
    matrix is `gram`: how much of the reader's output the removed channels take with them after the refit."""
    full = np.moveaxis(np.asarray(weight, np.float64), axis, 1)
    matrix = full.reshape(full.shape[0], -1)
    refitted = np.zeros_like(full)
    np.put_along_axis(refitted, np.asarray(keep).reshape((1, -1) + (1,) * (full.ndim - 2)),
                      np.moveaxis(refit(weight, gram, keep, axis).astype(np.float64), axis, 1), axis=1)
    difference = matrix - refitted.reshape(matrix.shape)
    return float(np.einsum("ij,jk,ik->", difference, gram, difference)), \
        float(np.einsum("ij,jk,ik->", matrix, gram, matrix))
