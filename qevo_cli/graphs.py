"""Walking an ONNX graph and the If / Loop / Scan bodies below it."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx
from onnx import helper

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def walk_graphs(graph: onnx.GraphProto, path: str = "") -> Iterator[tuple[onnx.GraphProto, str]]:
    """Yield (graph, path) for the graph and every subgraph below it."""
    yield graph, path
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from walk_graphs(attr.g, f"{path}{node.name}/{attr.name}/")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(attr.graphs):
                    yield from walk_graphs(sub, f"{path}{node.name}/{attr.name}[{i}]/")


def all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    for sub, _ in walk_graphs(graph):
        yield from sub.initializer


def attribute(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def numel(shape) -> int:
    return int(np.prod(shape)) if shape else 0


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes a tensor's values take in the file (packed sub-byte types included)."""
    bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.INT2: 2,
            onnx.TensorProto.UINT2: 2}.get(tensor.data_type)
    if bits is None:
        bits = 8 * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return -(-numel(tuple(tensor.dims)) * bits // 8) if tensor.dims else -(-bits // 8)


def drop_unused(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads any more, in every graph, and the graph inputs that named them."""
    graphs = [g for g, _ in walk_graphs(model.graph)]
    used = {name for graph in graphs for node in graph.node for name in node.input}
    used |= {value.name for graph in graphs for value in graph.output}
    for graph in graphs:
        dropped = {tensor.name for tensor in graph.initializer if tensor.name not in used}
        if not dropped:
            continue
        keep = [tensor for tensor in graph.initializer if tensor.name not in dropped]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        inputs = [value for value in graph.input if value.name not in dropped]
        if len(inputs) != len(graph.input):   # old exporters list weights as graph inputs too
            del graph.input[:]
            graph.input.extend(inputs)
