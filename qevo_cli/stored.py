"""How a quantized weight is written to the file as the runtime stores it: integer codes behind a
DequantizeLinear (per-tensor, per-channel, or blocked for per-group), onnxruntime's MatMulNBits for 4-bit
per-group MatMul weights, and 2-bit codes packed four to a byte, unpacked by standard ops that onnxruntime
folds into a constant when it loads the model. The codes are quantize.weight_codes', so the file holds
exactly the weights the search measured.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

from .layers import Layer
from .policy import LayerChoice, group_size

FLOAT = onnx.TensorProto.FLOAT
MS_DOMAIN = "com.microsoft"   # MatMulNBits lives in onnxruntime's contrib domain
# Integer weight widths a file stores, their numpy type, and the opset whose DequantizeLinear takes them.
STORED_TYPES = {8: np.int8, 4: ml_dtypes.int4, 2: np.int8}
DEQUANTIZE_OPSET = {8: 13, 4: 21, 2: 13}
BLOCKED_OPSET = 21            # DequantizeLinear's block_size
NBITS_WIDTHS = (4,)           # MatMulNBits: the form onnxruntime's generative runtime runs fast


def storable(choice: LayerChoice) -> bool:
    """Whether an ONNX file can hold this weight format as such (not rounded floats)."""
    return not choice.weight_is_int or choice.weight_bits in STORED_TYPES


def dequantize_nodes(shape: tuple[int, ...], codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                     choice: LayerChoice, axis: int | None, name: str, float_type: int, prefix: str):
    """Integer codes behind a DequantizeLinear whose output, `name`, equals the simulated weight of `shape`
    (quantize.weight_codes' codes, scales and zero points); its nodes and initializers."""
    group = group_size(choice.granularity)
    ndim = len(shape)
    attributes: dict = {}
    after: list[onnx.NodeProto] = []
    dq_out = name if float_type == FLOAT else f"{name}.f"
    if choice.granularity == "per-tensor" or axis is None or ndim < 2:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    elif group is None:
        attributes["axis"] = axis
    else:
        scale, zero_point = scale.reshape(shape[axis], -1), zero_point.reshape(shape[axis], -1)
        attributes["block_size"] = group
        if ndim == 2:   # groups run along the other axis of the weight as it is laid out
            attributes["axis"] = 1 - axis
            if axis == 1:
                scale, zero_point = scale.T, zero_point.T
        else:   # stored as (channels, the rest flattened), then shaped back
            order = [axis] + [i for i in range(ndim) if i != axis]
            codes = np.transpose(codes, order).reshape(shape[axis], -1)
            attributes["axis"] = 1
            moved = f"{name}.r"
            after.append(helper.make_node("Reshape", [moved, f"{name}.shape"], [f"{name}.m"]))
            after.append(helper.make_node("Transpose", [f"{name}.m"], [dq_out],
                                          perm=[int(i) for i in np.argsort(order)]))
            dq_out = moved
    stored = STORED_TYPES[choice.weight_bits]
    unpack: list[onnx.NodeProto] = []
    initializers = [numpy_helper.from_array(np.ascontiguousarray(scale, dtype=np.float32), f"{name}.s")]
    inputs = [f"{name}.q", f"{name}.s"]
    integers = {f"{name}.q": codes}
    if not choice.symmetric:
        integers[f"{name}.z"] = np.asarray(zero_point).reshape(np.shape(scale))
        inputs.append(f"{name}.z")
    for tensor, ints in integers.items():
        if choice.weight_bits == 2:
            nodes, constants = unpack_2bit(ints, tensor, prefix)
            unpack += nodes
            initializers += constants
        else:
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(ints).astype(stored), tensor))
    if after:
        moved_shape = [shape[i] for i in [axis] + [i for i in range(ndim) if i != axis]]
        initializers.append(numpy_helper.from_array(np.array(moved_shape, np.int64), f"{name}.shape"))
    nodes = [*unpack, helper.make_node("DequantizeLinear", inputs, [dq_out], **attributes), *after]
    if float_type != FLOAT:
        nodes.append(helper.make_node("Cast", [f"{name}.f"], [name], to=float_type))
    return nodes, initializers


def fits_matmul_nbits(layer: Layer, choice: LayerChoice, data_type: int) -> bool:
    """Whether the weight can be a MatMulNBits: a float32 [K, N] MatMul weight at 4 bits per group of 16+."""
    group = group_size(choice.granularity)
    return (layer.op_type == "MatMul" and layer.channel_axis == 1 and len(layer.weight_shape) == 2
            and choice.weight_bits in NBITS_WIDTHS and group is not None and group >= 16
            and data_type == FLOAT)


def matmul_nbits(node, layer: Layer, choice: LayerChoice, name: str, codes: np.ndarray, scale: np.ndarray,
             zero_point: np.ndarray) -> list[onnx.TensorProto]:
    """Turn `x @ W` into onnxruntime's MatMulNBits: unsigned codes packed two to a byte, per block along K."""
    bits, block = choice.weight_bits, group_size(choice.granularity)
    k, n = layer.weight_shape
    blocks = -(-k // block)
    offset = 1 << (bits - 1)   # MatMulNBits codes are unsigned; its default zero point is the middle
    unsigned = np.full((n, blocks * block), offset, dtype=np.uint8)
    unsigned[:, :k] = (codes.T + offset).astype(np.uint8)
    packed = (unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    initializers = [numpy_helper.from_array(packed, f"{name}.q"),
                    numpy_helper.from_array(scale.astype(np.float32).reshape(n, blocks), f"{name}.s")]
    inputs = [node.input[0], f"{name}.q", f"{name}.s"]
    if not choice.symmetric:
        zp = np.full((n, blocks + blocks % 2), offset, dtype=np.uint8)
        zp[:, :blocks] = (zero_point.reshape(n, blocks) + offset).astype(np.uint8)
        initializers.append(numpy_helper.from_array((zp[:, 0::2] | (zp[:, 1::2] << 4)).reshape(-1), f"{name}.z"))
        inputs.append(f"{name}.z")
    del node.input[:]
    node.input.extend(inputs)
    node.op_type, node.domain = "MatMulNBits", MS_DOMAIN
    node.attribute.extend([helper.make_attribute("K", k), helper.make_attribute("N", n),
                           helper.make_attribute("bits", bits), helper.make_attribute("block_size", block)])
    return initializers


UNPACK_CONSTANTS = {"shifts": np.array([[0, 2, 4, 6]], np.uint8), "axis": np.array([1], np.int64),
                    "four": np.array([4], np.uint8), "flat": np.array([-1], np.int64),
                    "start": np.array([0], np.int64), "two": np.array(2, np.int32)}


def unpack_2bit(values: np.ndarray, output: str, prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Signed 2-bit values packed four to a byte (as value + 2, the first in the low bits), and the nodes
    that give them back as an int8 tensor `output` shaped like `values`: shift each byte by 0, 2, 4 and 6
    bits, keep two bits, flatten, subtract 2. All constant, so onnxruntime computes it once, at load.
    The constants every unpacking shares (`2bit.*`) are added by `shared_unpack_constants`."""
    flat = (values.reshape(-1) + 2).astype(np.uint8)
    padded = np.zeros(-(-flat.size // 4) * 4, dtype=np.uint8)
    padded[:flat.size] = flat
    packed = padded[0::4] | (padded[1::4] << 2) | (padded[2::4] << 4) | (padded[3::4] << 6)
    p, c = f"{output}.", f"{prefix}2bit."
    initializers = [numpy_helper.from_array(packed, p + "packed"),
                    numpy_helper.from_array(np.array([flat.size], np.int64), p + "end"),
                    numpy_helper.from_array(np.array(values.shape, np.int64), p + "shape")]
    nodes = [helper.make_node("Unsqueeze", [p + "packed", c + "axis"], [p + "bytes"]),
             helper.make_node("BitShift", [p + "bytes", c + "shifts"], [p + "shifted"], direction="RIGHT"),
             helper.make_node("Mod", [p + "shifted", c + "four"], [p + "codes"]),
             helper.make_node("Reshape", [p + "codes", c + "flat"], [p + "all"]),
             helper.make_node("Slice", [p + "all", c + "start", p + "end"], [p + "used"]),
             helper.make_node("Reshape", [p + "used", p + "shape"], [p + "unsigned"]),
             helper.make_node("Cast", [p + "unsigned"], [p + "wide"], to=onnx.TensorProto.INT32),
             helper.make_node("Sub", [p + "wide", c + "two"], [p + "signed"]),
             helper.make_node("Cast", [p + "signed"], [output], to=onnx.TensorProto.INT8)]
    return nodes, initializers


def shared_unpack_constants(graph: onnx.GraphProto, prefix: str) -> None:
    if not any(t.name == f"{prefix}2bit.two" for t in graph.initializer):
        graph.initializer.extend(numpy_helper.from_array(v, f"{prefix}2bit.{k}") for k, v in UNPACK_CONSTANTS.items())
