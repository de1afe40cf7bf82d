"""How a runtime that quantizes more than layer inputs encodes what the layers leave open.

Beyond which tensors it quantizes (ort_placement.py), such a runtime fixes several things, which qevo
follows as onnxruntime's quantizer writes them for the target's runtime, so that what the search
measures is what that model measures:

- ranges from the float model run with graph optimizations off, as onnxruntime's calibrators run it;
- scale and zero point by onnxruntime's own `compute_scale_zp`; QNN's configuration widens each range
  to at least 1e-4, `quantize_static`'s defaults do not;
- fixed output encodings: Softmax covers [0, 1]; on QNN, 16-bit Sigmoid and Tanh take its required ones
  (`base_quantizer.adjust_tensor_ranges`, `qnn/quant_config.py`);
- the output of an op that only moves or selects values keeps its input's encoding, a Gather its table's;
- float constants the quantizer places Q/DQ on: those of elementwise ops (a MatMul's bias `Add`, GELU's
  constants) uint8 over their own range; those it takes for weights (a norm's scale) the same on QNN,
  int8 symmetric with `quantize_static`'s defaults; the biases of Conv / Gemm and of normalizations int32
  at the input's scale times the weight's (or the norm scale's) scale, zero point 0
  (`operators/norm.py`, `quantize_bias_static`);
- a Relu or Clip after a quantized op is removed; graph outputs are quantized too.

One departure: a constant holding inf or NaN (an attention mask's -inf) stays float. onnxruntime gives it an
infinite scale, so its model computes NaN wherever that constant is read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.quant_utils import compute_scale_zp, quantize_nparray

MIN_REAL_RANGE = 1e-4
NORMS = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization"})
UINT8, INT8, INT32 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.INT32
FLOAT16 = onnx.TensorProto.FLOAT16


@dataclass(frozen=True)
class Rules:
    """What a runtime that quantizes more than layer inputs fixes beyond which tensors it quantizes."""

    min_real_range: float | None   # each range widened to at least this
    fixed_16bit: bool              # QNN's required encodings of 16-bit Sigmoid and Tanh outputs


RULES = {"all-tensors": Rules(MIN_REAL_RANGE, True), "qdq-ops": Rules(None, False)}


def tensor_qparams(rmin: float, rmax: float, bits: int, min_real_range: float | None = MIN_REAL_RANGE
                   ) -> tuple[np.float32, int]:
    """Scale and zero point of an unsigned activation grid over [rmin, rmax] (0 included, at least
    `min_real_range` wide)."""
    dtype = np.uint8 if bits == 8 else np.uint16
    zero_point, scale = compute_scale_zp(np.array(rmin, np.float32), np.array(rmax, np.float32),
                                         np.array(0, dtype), np.array(2 ** bits - 1, dtype), False, min_real_range)
    return np.float32(scale), int(zero_point)


def fixed_qparams(op_type: str, bits: int, rules: Rules = RULES["all-tensors"]) -> tuple[np.float32, int] | None:
    """The encoding the runtime fixes for the output of `op_type`, or None when it is calibrated."""
    if op_type == "Softmax":
        return tensor_qparams(0.0, 1.0, bits, rules.min_real_range)
    if not rules.fixed_16bit:
        return None
    if bits == 16 and op_type == "Sigmoid":
        return np.float32(1.0 / 65536.0), 0
    if bits == 16 and op_type == "Tanh":
        return np.float32(1.0 / 32768.0), 32768
    return None


def constant_codes(values: np.ndarray, signed: bool = False, min_real_range: float | None = MIN_REAL_RANGE
                   ) -> tuple[np.ndarray, np.float32, int]:
    """Codes, scale and zero point of a float constant as onnxruntime quantizes a constant outside its layer
    rules: uint8 over its own range (at least `min_real_range` wide) or, `signed`, int8 symmetric."""
    flat = np.asarray(values, np.float32).reshape(-1)
    lo = flat.min() if flat.size else np.float32(0)
    hi = flat.max() if flat.size else np.float32(0)
    kind, low, high = (INT8, np.int8(-127), np.int8(127)) if signed else (UINT8, np.uint8(0), np.uint8(255))
    with np.errstate(all="ignore"):   # an infinite constant gives an infinite scale, as it does there
        zero_point, scale = compute_scale_zp(np.array(lo, np.float32), np.array(hi, np.float32), np.array(low),
                                             np.array(high), signed, None if signed else min_real_range)
        codes = quantize_nparray(kind, np.asarray(values, np.float32), np.float32(scale), zero_point)
    return codes, np.float32(scale), int(zero_point)


def dequantized(codes: np.ndarray, scale, zero_point) -> np.ndarray:
    """What DequantizeLinear computes: (codes - zero point) * scale in float32."""
    with np.errstate(all="ignore"):
        return ((codes.astype(np.int64) - np.asarray(zero_point, np.int64)).astype(np.float32)
                * np.asarray(scale, np.float32)).astype(np.float32)


def bias_codes(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int32 codes of a bias at `scale` (one per channel or one for all), rounded in float64."""
    scale = np.asarray(scale, np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        codes = np.round(np.asarray(values, np.float64) / scale)
    info = np.iinfo(np.int32)
    return np.clip(np.nan_to_num(codes, nan=0.0), info.min, info.max).astype(np.int32)


def remove_folded_activations(graph: onnx.GraphProto, tensors, removable: frozenset[str]) -> None:
    """A Relu or Clip of `removable` (those onnxruntime's quantizer removes, `QDQRemovableActivation`) whose
    output is quantized to integers and whose input only it reads is removed, its input's producer writing
    the output instead: the output's grid clamps as the activation did."""
    readers: dict[str, int] = {}   # every reader counts, a Shape too, as onnxruntime counts them (not scope.readers_of)
    for node in graph.node:
        for name in set(node.input):
            readers[name] = readers.get(name, 0) + 1
    producers = {name: node for node in graph.node for name in node.output}
    boundary = {value.name for value in [*graph.input, *graph.output]}
    removed = set()
    for node in graph.node:
        source, output = node.input[0] if node.input else "", node.output[0]
        if node.name in removable and tensors.get(output) in ("int8", "int16") and \
                source in producers and source not in boundary and readers.get(source, 0) == 1:
            producer = producers[source]
            producer.output[list(producer.output).index(source)] = output
            removed.add(node.name)
    if removed:
        kept = [node for node in graph.node if node.name not in removed]
        del graph.node[:]
        graph.node.extend(kept)


class QuantizedConstants:
    """Quantized constants added to one graph: dequantized values (simulated) or codes behind a
    DequantizeLinear (stored); a constant read by several nodes is added once."""

    def __init__(self, graph: onnx.GraphProto, prefix: str, store: bool):
        self.graph, self.prefix, self.store = graph, prefix, store
        self.nodes: list[onnx.NodeProto] = []
        self.added: dict[str, str] = {}
        self.count = 0

    def add(self, source: str | None, codes, scale, zero_point, dtype: int, half: bool) -> str:
        if source is not None and source in self.added:
            return self.added[source]
        self.count += 1
        base = f"{self.prefix}k{self.count}"
        name = f"{base}.v"
        if not self.store:
            values = dequantized(codes, scale, zero_point)
            self.graph.initializer.append(numpy_helper.from_array(values.astype(np.float16) if half else values, name))
        else:
            kind = {UINT8: np.uint8, INT8: np.int8}.get(dtype, np.int32)
            scale = np.asarray(scale, np.float32)
            self.graph.initializer.extend([
                numpy_helper.from_array(np.asarray(codes).astype(kind), f"{base}.q"),
                numpy_helper.from_array(scale, f"{base}.s"),
                numpy_helper.from_array(np.full(scale.shape, zero_point, kind), f"{base}.z")])
            out = f"{base}.f" if half else name
            self.nodes.append(helper.make_node("DequantizeLinear", [f"{base}.q", f"{base}.s", f"{base}.z"], [out],
                                               **({"axis": 0} if scale.ndim else {})))
            if half:
                self.nodes.append(helper.make_node("Cast", [out], [name], to=FLOAT16))
        if source is not None:
            self.added[source] = name
        return name
