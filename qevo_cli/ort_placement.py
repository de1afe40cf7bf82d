"""Where onnxruntime's static quantizer puts Q/DQ on a model, for the runtime a target names.

- "cpu" (`activation_scope: qdq-ops`): what `quantize_static` writes with its default op types (its
  QLinear and QDQ registries), the model onnxruntime's CPU execution provider runs: the inputs and
  outputs of those ops are quantized, the rest of the graph stays float.
- "qnn" (`activation_scope: all-tensors`): what it writes with `get_qnn_qdq_config`, the model QNN's
  HTP runs: every op of the graph is quantized.

Which tensors that is depends on per-op rules (a Reshape's output is quantized only when its input
is, a Relu after a quantized Conv is folded away, a Gather shares its table's encoding...), so rather
than restate them qevo asks onnxruntime's own quantizer once per model, with stand-in ranges, and
reads the placement off the model it writes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx

from .errors import QevoError, first_line

FLOAT_INITIALIZERS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
QUANT_INPUT_SUFFIX = "_QuantizeLinear_Input"   # a graph output's producer writes this name (quant_utils.py)


@dataclass(frozen=True)
class Placement:
    """What onnxruntime's static quantizer quantizes in one model."""

    tensors: tuple[str, ...] = ()                    # activation tensors, in graph order
    # tensor -> the tensor (or, for a Gather's output, the table) whose encoding it keeps
    shares: dict[str, str] = field(default_factory=dict)
    # (node, input) -> "weight" (int8 symmetric), "constant" (uint8 over its range: an elementwise op's) or "bias"
    constants: dict[tuple[str, int], str] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()            # Relu / Clip nodes folded into their input's producer


def default_op_types() -> list[str]:
    """The op types `quantize_static` quantizes when it is given none."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def ort_placement(proto: onnx.ModelProto, float_tensors, runtime: str) -> Placement:
    """The placement of onnxruntime's quantizer for `runtime`: "cpu", `quantize_static` with its defaults
    (QDQ format, uint8 activations, int8 weights); "qnn", with `get_qnn_qdq_config` (uint8 activations and
    weights). `float_tensors` are the model's float activation tensors, each given a stand-in range."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType, save_and_reload_model_with_shape_infer

    if runtime == "qnn":
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config
        config = get_qnn_qdq_config(proto, None, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8)
        op_types, options, weights = config.op_types_to_quantize, config.extra_options, QuantType.QUInt8
    else:
        op_types, options, weights = default_op_types(), {}, QuantType.QInt8
    ranges = TensorsData(CalibrationMethod.MinMax,
                         {name: (np.float32(-1.0), np.float32(1.0)) for name in float_tensors})
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)   # its advice to pre-process the model is not for qevo's users
    try:
        inferred = save_and_reload_model_with_shape_infer(proto)
        quantizer = QDQQuantizer(inferred, False, False, weights, QuantType.QUInt8, ranges, [], [], op_types,
                                 options)
        quantized = quantizer.quantize_model()
    except Exception as err:   # its errors are bare ValueErrors and KeyErrors
        raise QevoError(f"onnxruntime's static quantizer cannot place Q/DQ on this model ({first_line(err)}); "
                        "choose a target whose activation_scope is layer-inputs", field="activation_scope") from None
    finally:
        logging.getLogger().setLevel(quiet)
    return _read_placement(proto, quantized)


def _read_placement(original: onnx.ModelProto, quantized: onnx.ModelProto) -> Placement:
    graph, qgraph = original.graph, quantized.graph
    initializers = {t.name: t for t in graph.initializer}
    qinitializers = {t.name: t for t in qgraph.initializer}
    qproducers = {name: node for node in qgraph.node for name in node.output}
    outputs = {value.name for value in graph.output}
    scales: dict[str, str] = {}
    for node in qgraph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in qinitializers:
            tensor = node.input[0]
            if tensor.endswith(QUANT_INPUT_SUFFIX) and tensor[:-len(QUANT_INPUT_SUFFIX)] in outputs:
                tensor = tensor[:-len(QUANT_INPUT_SUFFIX)]
            scales.setdefault(tensor, node.input[1])
    order = [value.name for value in graph.input] + [name for node in graph.node for name in node.output]
    tensors = tuple(name for name in dict.fromkeys(order) if name in scales)
    qnodes = {node.name: node for node in qgraph.node}
    owner: dict[str, str] = {}   # scale -> the constant or the first tensor quantized with it
    constants = {}
    for node in graph.node:
        qnode = qnodes.get(node.name)
        if qnode is None:
            continue
        for position, name in enumerate(node.input):
            if name not in initializers or initializers[name].data_type not in FLOAT_INITIALIZERS \
                    or position >= len(qnode.input):
                continue
            dequantize = qproducers.get(qnode.input[position])   # a bias's keeps the bias's name
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            codes = qinitializers.get(dequantize.input[0])
            kind = codes.data_type if codes is not None else None
            constants[(node.name, position)] = {onnx.TensorProto.INT32: "bias", onnx.TensorProto.INT8: "weight"}.get(
                kind, "constant")
            owner.setdefault(dequantize.input[1], name)
    shares = {}
    for name in tensors:
        root = owner.setdefault(scales[name], name)
        if root != name:
            shares[name] = root
    removed = frozenset(node.name for node in graph.node
                        if node.name not in qnodes and node.op_type in ("Relu", "Clip"))
    return Placement(tensors, shares, constants, removed)
