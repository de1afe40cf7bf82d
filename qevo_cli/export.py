"""A chosen policy as a quantized ONNX model that onnxruntime loads, measured again.

Layers whose choice onnxruntime's quantizer expresses (int8 or int4 weights per-tensor or
per-channel, with static int8 or int16 activations) go through `quantize_static` (or the
QNN configuration helper for Hexagon) with per-tensor overrides: weight type, symmetry,
channel axis, and the activation ranges qevo calibrated. The rest is written directly:
weight-only integer layers as integer weights behind a DequantizeLinear, dynamic-int8
inputs as DynamicQuantizeLinear, fp16 weights as fp16 initializers behind a Cast. Formats
no runtime stores (2, 3, 5, 6, 7 bits, per-group scales) are refused unless
`allow_simulated`, which writes those weights rounded to their levels in float.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from .errors import QevoError
from .evaluate import Evaluator, _insert_before, run_session
from .files import publish
from .layers import Layer
from .model import _graphs
from .policy import LayerChoice, Policy
from .quantize import quantize_weight, weight_codes

WEIGHT_TYPES = {"int8": QuantType.QInt8, "int4": QuantType.QInt4}
ACTIVATION_TYPES = {"int8": QuantType.QUInt8, "int16": QuantType.QUInt16}
ONNX_INT = {"int8": onnx.TensorProto.INT8, "int4": onnx.TensorProto.INT4}


@dataclass
class ExportReport:
    path: Path
    measured: float
    expected: float | None
    simulated_layers: list[str]
    quantizer_layers: list[str]
    direct_layers: list[str]
    quantizer_refused: str | None = None   # why onnxruntime's quantizer was not used, when it failed

    @property
    def difference(self) -> float | None:
        return None if self.expected is None else self.measured - self.expected


def _by_quantizer(layer: Layer, choice: LayerChoice) -> bool:
    """Whether onnxruntime's quantizer reproduces the searched grid exactly: per-tensor always (qevo
    passes its own scale), per-channel only for int8 symmetric min-max (its per-channel overrides take
    no scales, and its symmetric int4 grid is [-8, 7] where qevo's is [-7, 7])."""
    if layer.weight is None or layer.subgraph is not None or choice.weight not in WEIGHT_TYPES:
        return False
    if choice.activation not in ACTIVATION_TYPES:
        return False
    if choice.granularity == "per-tensor":
        return True
    return (choice.granularity == "per-channel" and choice.weight == "int8" and choice.symmetric
            and choice.weight_range == "minmax")


def _simulated(choice: LayerChoice) -> bool:
    return choice.weight_is_int and (choice.weight not in WEIGHT_TYPES or choice.granularity.startswith("per-group"))


class _Reader(CalibrationDataReader):
    def __init__(self, evaluator: Evaluator):
        self._batches = iter(evaluator.calibrator.calib.batches())

    def get_next(self):
        return next(self._batches, None)


def export_onnx(evaluator: Evaluator, policy: Policy, output: str | Path, qnn: bool = False,
                allow_simulated: bool = False, expected: float | None = None) -> ExportReport:
    """Write `policy` as a QDQ ONNX model at `output`, load it in onnxruntime and measure it."""
    output = Path(output)
    evaluator.check(policy)
    layers = {layer.name: layer for layer in evaluator.model.layers}
    simulated = [name for name, choice in policy.layers.items() if _simulated(choice)]
    if simulated and not allow_simulated:
        choice = policy.layers[simulated[0]]
        raise QevoError(f"layer {simulated[0]!r} uses {choice.weight} {choice.granularity} weights, which onnxruntime "
                        f"cannot store ({len(simulated)} layer(s) in all); pass --allow-simulated to write them "
                        "rounded to their levels in float", path=output)
    by_quantizer = [n for n, c in policy.layers.items() if _by_quantizer(layers[n], c)]
    direct = [n for n, c in policy.layers.items() if n not in by_quantizer and c.weight + c.activation != "fp32fp32"]
    model = _direct_layers(evaluator, policy, [layers[n] for n in direct])
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    refused = None
    try:
        if by_quantizer:
            try:
                _run_quantizer(evaluator, policy, [layers[n] for n in by_quantizer], model, Path(tmp), qnn)
            except Exception as err:  # the quantizer rejects some mixes; every layer is then written directly
                refused = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                direct, by_quantizer = direct + by_quantizer, []
                model = _direct_layers(evaluator, policy, [layers[n] for n in direct])
                onnx.save(model, tmp)
        else:
            onnx.save(model, tmp)
        quantized = onnx.load(tmp)
        onnx.checker.check_model(quantized)
        session = ort.InferenceSession(tmp, evaluator.options, providers=["CPUExecutionProvider"])
        measured = evaluator.metric(run_session(session, evaluator.data), evaluator.data.labels, evaluator.reference)
        publish(tmp, output)
    except QevoError:
        raise
    except Exception as err:  # the quantizer and onnxruntime raise many types; report them in one line
        raise QevoError(f"export failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                        path=output) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ExportReport(output, measured, expected, simulated, by_quantizer, direct, refused)


def _direct_layers(evaluator: Evaluator, policy: Policy, layers: list[Layer]) -> onnx.ModelProto:
    """The model with every layer outside the quantizer's reach already written as it will run."""
    model = onnx.ModelProto()
    model.CopyFrom(evaluator.model.proto)
    graphs = [g for g, _ in _graphs(model.graph)]
    locations = evaluator._locate_layers()
    inserted: dict[int, dict[str, list]] = {}
    needs_ms = False
    for layer in layers:
        choice = policy.choice(layer.name)
        graph_i, node_i = locations[layer.name]
        graph, node = graphs[graph_i], graphs[graph_i].node[node_i]
        new_nodes: list[onnx.NodeProto] = []
        if layer.weight is not None and choice.weight != "fp32":
            new_nodes += _weight_nodes(evaluator, graph, node, layer, choice)
            needs_ms |= choice.weight == "int4" and not _simulated(choice)
        if layer.subgraph is None and choice.activation != "fp32":
            for position, tensor in enumerate(node.input[:2]):
                if tensor == layer.input or (layer.weight is None and position < 2):
                    built = evaluator.activation_nodes(layer, tensor, choice)
                    node.input[position] = built.output
                    new_nodes += built.nodes
                    graph.initializer.extend(built.initializers)
                    needs_ms |= choice.activation == "int16"
        inserted.setdefault(graph_i, {})[node.name] = new_nodes
    for graph_i, before in inserted.items():
        _insert_before(graphs[graph_i], before)
    _drop_unused_initializers(graphs)
    if needs_ms and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _drop_unused_initializers(graphs: list[onnx.GraphProto]) -> None:
    """Remove the float weights that quantized copies replaced."""
    used = {name for graph in graphs for node in graph.node for name in node.input}
    used |= {value.name for graph in graphs for value in graph.output}
    for graph in graphs:
        keep = [tensor for tensor in graph.initializer if tensor.name in used]
        if len(keep) != len(graph.initializer):
            del graph.initializer[:]
            graph.initializer.extend(keep)


def _weight_nodes(evaluator: Evaluator, graph, node, layer: Layer, choice: LayerChoice) -> list[onnx.NodeProto]:
    original = evaluator._find_initializer(layer.weight)
    values = numpy_helper.to_array(original).astype(np.float32)
    name = f"{layer.weight}__{layer.name}"
    for position, used in enumerate(node.input):
        if used == layer.weight:
            node.input[position] = f"{name}__float"
    if choice.weight == "fp16":
        graph.initializer.append(numpy_helper.from_array(values.astype(np.float16), name))
        return [helper.make_node("Cast", [name], [f"{name}__float"], to=onnx.TensorProto.FLOAT)]
    if _simulated(choice):   # allowed by the caller: levels kept, stored in float
        graph.initializer.append(numpy_helper.from_array(quantize_weight(values, choice, layer.channel_axis),
                                                         f"{name}__float"))
        return []
    codes, scale, zero_point = weight_codes(values, choice, layer.channel_axis)
    per_channel = choice.granularity == "per-channel"
    dims = [len(scale)] if per_channel else []
    graph.initializer.extend([
        helper.make_tensor(f"{name}__q", ONNX_INT[choice.weight], list(codes.shape), codes.reshape(-1).tolist()),
        helper.make_tensor(f"{name}__scale", onnx.TensorProto.FLOAT, dims, scale.tolist() if per_channel
                           else [float(scale[0])]),
        helper.make_tensor(f"{name}__zp", ONNX_INT[choice.weight], dims, zero_point.tolist() if per_channel
                           else [int(zero_point[0])])])
    attributes = {"axis": layer.channel_axis} if per_channel else {}
    domain = "com.microsoft" if choice.weight == "int4" else ""
    return [helper.make_node("DequantizeLinear", [f"{name}__q", f"{name}__scale", f"{name}__zp"],
                             [f"{name}__float"], domain=domain, **attributes)]


def _run_quantizer(evaluator: Evaluator, policy: Policy, layers: list[Layer], model: onnx.ModelProto,
                   output: Path, qnn: bool) -> None:
    overrides: dict[str, list[dict]] = {}
    for layer in layers:
        choice = policy.choice(layer.name)
        weight = {"quant_type": WEIGHT_TYPES[choice.weight]}
        if choice.granularity == "per-channel":
            weight.update(axis=layer.channel_axis, symmetric=True)   # without axis, int4 silently goes per-tensor
        else:   # qevo's own scale and zero point: the grid the search measured
            values = numpy_helper.to_array(evaluator._find_initializer(layer.weight)).astype(np.float32)
            _, scale, zero_point = weight_codes(values, choice, layer.channel_axis)
            weight.update(scale=np.float32(scale[0]), zero_point=np.int8(zero_point[0]))
        overrides[layer.weight] = [weight]
        low, high = evaluator.calibrator.range(layer.input, choice.calibration, choice.activation_bits)
        overrides[layer.input] = [{"quant_type": ACTIVATION_TYPES[choice.activation],
                                   "rmin": np.array(low, np.float32), "rmax": np.array(high, np.float32)}]
    source = output.with_suffix(".source.onnx")
    onnx.save(model, source)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # the quantizer logs advice (pre-processing, opset) on the root logger
    try:
        if qnn:
            from onnxruntime.quantization import quantize
            from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

            config = get_qnn_qdq_config(str(source), _Reader(evaluator), activation_type=QuantType.QUInt8,
                                        weight_type=QuantType.QUInt8, init_overrides=overrides,
                                        nodes_to_exclude=[n.name for n in model.graph.node
                                                          if n.name not in {l.name for l in layers}
                                                          and n.op_type in ("Conv", "Gemm", "MatMul")])
            quantize(str(source), str(output), config)
        else:
            quantize_static(str(source), str(output), _Reader(evaluator), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=sorted({layer.op_type for layer in layers}),
                            nodes_to_quantize=[layer.name for layer in layers], per_channel=False,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"TensorQuantOverrides": overrides,
                                           # the next layer's input Q/DQ quantizes what a fused runtime
                                           # stores; a second rounding before ReLU would be the host's own
                                           "OpTypesToExcludeOutputQuantization": sorted(
                                               {layer.op_type for layer in layers})})
    finally:
        root.setLevel(level)
        source.unlink(missing_ok=True)
