"""Measure a policy: build the quantized variant and run it in onnxruntime on real data.

A variant is the float graph with each quantized layer's weight replaced by its
fake-quantized values and Q/DQ pairs in front of the layer's input activations.
The fp32 reference outputs are computed once; each layer's quantized weight is
computed once per choice and reused by every policy that asks for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from .calibration import ActivationCalibrator, _activation_inputs
from .data import Dataset
from .errors import QevoError
from .layers import Layer
from .metrics import Metric
from .model import LoadedModel, _graphs
from .policy import FP32, LayerChoice, Policy
from .quantize import activation_qparams, quantize_weight

MS_DOMAIN = "com.microsoft"  # 16-bit Q/DQ below opset 21 lives in onnxruntime's contrib domain


@dataclass(frozen=True)
class ActivationNodes:
    """Nodes (and their constants) that quantize one input tensor of one layer; `output` replaces it."""

    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    output: str


def session_options(threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Each variant runs in a fresh session: without the arena its first run costs no more than later ones.
    options.enable_cpu_mem_arena = False
    # Keep Q/DQ pairs as the fake quantization they stand for. Fused into integer kernels they pick
    # up the host CPU's own rounding and int16 saturation (u8s8 without VNNI), which no target shares:
    # on the default model that cost 0.9 accuracy points against the exact integer result.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


def run_session(session: ort.InferenceSession, data: Dataset) -> list[np.ndarray]:
    """All outputs over the whole data set, batches joined on axis 0."""
    chunks: list[list[np.ndarray]] = []
    for feed in data.batches():
        chunks.append(session.run(None, feed))
    joined = []
    for parts in zip(*chunks):
        if isinstance(parts[0], list):  # sequence outputs, such as ZipMap's list of dicts
            joined.append([item for part in parts for item in part])
        elif parts[0].ndim:
            joined.append(np.concatenate(parts, axis=0))
        else:
            joined.append(np.stack(parts))
    return joined


class Evaluator:
    """Scores policies of one model on one data set with one metric."""

    def __init__(self, model: LoadedModel, data: Dataset, metric: Metric, calib: Dataset | None = None,
                 threads: int = 1):
        if metric.needs_labels and data.labels is None:
            raise QevoError(f"metric {metric.name!r} needs labels; add a 'labels' array or use --metric agreement",
                            path=data.path, field="labels")
        self.model = model
        self.data = data
        self.metric = metric
        self.options = session_options(threads)
        self.calibrator = ActivationCalibrator(model, calib or data, self.options)
        self._graph_index = {id(g): i for i, (g, _) in enumerate(_graphs(model.proto.graph))}
        self._locations = self._locate_layers()
        self._weights: dict[tuple, onnx.TensorProto] = {}
        self._activation_cache: dict[tuple, ActivationNodes] = {}
        self._base_bytes = model.proto.SerializeToString()
        self.reference = self._run(self._base_bytes)
        self.fp32_score = self.metric(self.reference, data.labels, self.reference)

    # -- public --------------------------------------------------------------------------------
    def evaluate(self, policy: Policy) -> float:
        """The metric of the policy's variant on the evaluation data."""
        if all(choice == FP32 for choice in policy.layers.values()):
            return self.fp32_score   # the float model itself: measured when the evaluator opened
        return self.metric(self.outputs(policy), self.data.labels, self.reference)

    def evaluate_staged(self, policy: Policy, rows: np.ndarray, go_on) -> tuple[float | None, float]:
        """(metric on all the data or None, metric on `rows`): `rows` are run first, and the rest only if
        `go_on(metric on rows)` says so, in the same session, so a full measurement costs no more than usual."""
        session = self._session(self.variant(policy).SerializeToString())
        first = self._guard(lambda: run_session(session, self.data.rows(rows)))
        labels = self.data.labels
        partial = self.metric(first, labels[rows] if labels is not None else None, _take(self.reference, rows))
        if not go_on(partial):
            return None, partial
        rest_rows = np.setdiff1d(np.arange(self.data.size), rows)
        rest = self._guard(lambda: run_session(session, self.data.rows(rest_rows))) if len(rest_rows) else None
        outputs = _merge(first, rest, rows, rest_rows) if rest is not None else first
        return self.metric(outputs, labels, self.reference), partial

    def outputs(self, policy: Policy, data: Dataset | None = None) -> list[np.ndarray]:
        """Model outputs of the policy's variant over `data` (default: the evaluation data)."""
        if not policy.layers and data is None:
            return self.reference
        return self._run(self.variant(policy).SerializeToString(), data)

    def variant(self, policy: Policy) -> onnx.ModelProto:
        """The float model with the policy's quantization simulated in the graph."""
        self.check(policy)
        variant = onnx.ModelProto()
        variant.CopyFrom(self.model.proto)
        graphs = [g for g, _ in _graphs(variant.graph)]
        inserted: dict[int, list[tuple[str, list[onnx.NodeProto]]]] = {}
        needs_ms_domain = False
        for layer in self.model.layers:
            choice = policy.layers.get(layer.name)
            if choice is None:
                continue
            graph_i, node_i = self._locations[layer.name]
            graph = graphs[graph_i]
            if layer.weight is not None and choice.weight != "fp32":
                self._set_weight(graph, layer, choice)
            if layer.subgraph is None and choice.activation != "fp32":
                node = graph.node[node_i]
                new_nodes = []
                done: set[str] = set()   # x @ x: the same tensor on both inputs is quantized once
                for position, tensor in enumerate(node.input[:2]):
                    if tensor in _activation_inputs(layer, self.model):
                        built = self.activation_nodes(layer, tensor, choice)
                        node.input[position] = built.output
                        if tensor not in done:
                            new_nodes.extend(built.nodes)
                            graph.initializer.extend(built.initializers)
                            done.add(tensor)
                        needs_ms_domain |= choice.activation == "int16"
                inserted.setdefault(graph_i, []).append((node.name, new_nodes))
        for graph_i, entries in inserted.items():
            _insert_before(graphs[graph_i], dict(entries))
        if needs_ms_domain and not any(o.domain == MS_DOMAIN for o in variant.opset_import):
            variant.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        return variant

    def check(self, policy: Policy) -> None:
        known = {layer.name for layer in self.model.layers}
        for name in policy.layers:
            if name not in known:
                raise QevoError(f"policy names layer {name!r}, which {self.model.path.name} does not have "
                                f"(it has {len(known)} quantizable layers; see qevo inspect)")

    # -- building blocks ---------------------------------------------------------------------
    def _locate_layers(self) -> dict[str, tuple[int, int]]:
        names = {layer.name for layer in self.model.layers}
        where = {}
        for graph_i, (graph, _) in enumerate(_graphs(self.model.proto.graph)):
            for node_i, node in enumerate(graph.node):
                if node.name in names:
                    where[node.name] = (graph_i, node_i)
        return where

    def quantized_weight(self, layer: Layer, choice: LayerChoice) -> onnx.TensorProto:
        key = (layer.name, choice.weight, choice.granularity, choice.symmetric, choice.weight_range)
        if choice.weight in ("fp32", "fp16"):
            key = (layer.name, choice.weight)
        tensor = self._weights.get(key)
        if tensor is None:
            original = self._find_initializer(layer.weight)
            values = quantize_weight(numpy_helper.to_array(original), choice, layer.channel_axis)
            tensor = numpy_helper.from_array(values.astype(numpy_helper.to_array(original).dtype),
                                             name=f"{layer.weight}__{layer.name}")
            self._weights[key] = tensor
        return tensor

    def _find_initializer(self, name: str) -> onnx.TensorProto:
        for graph, _ in _graphs(self.model.proto.graph):
            for tensor in graph.initializer:
                if tensor.name == name:
                    return tensor
        raise QevoError(f"weight {name!r} not found in the model")

    def _set_weight(self, graph: onnx.GraphProto, layer: Layer, choice: LayerChoice) -> None:
        # A new initializer per layer: a weight shared by two layers can take two formats.
        tensor = self.quantized_weight(layer, choice)
        graph.initializer.append(tensor)
        node = graph.node[self._locations[layer.name][1]]
        for position, name in enumerate(node.input):
            if name == layer.weight:
                node.input[position] = tensor.name

    def activation_nodes(self, layer: Layer, tensor: str, choice: LayerChoice) -> ActivationNodes:
        """The nodes that put `tensor` through the choice's activation format for `layer` (cached)."""
        key = (layer.name, tensor, choice.activation, choice.calibration)
        built = self._activation_cache.get(key)
        if built is None:
            built = self._build_activation_nodes(layer, tensor, choice)
            self._activation_cache[key] = built
        return built

    def _build_activation_nodes(self, layer: Layer, tensor: str, choice: LayerChoice) -> ActivationNodes:
        prefix = f"{tensor}__qevo__{layer.name}"
        out = f"{prefix}__dq"
        if choice.activation == "fp16":
            return ActivationNodes([helper.make_node("Cast", [tensor], [f"{prefix}__h"], to=onnx.TensorProto.FLOAT16),
                                    helper.make_node("Cast", [f"{prefix}__h"], [out], to=onnx.TensorProto.FLOAT)],
                                   [], out)
        if choice.activation == "dynamic-int8":
            q, s, z = f"{prefix}__q", f"{prefix}__s", f"{prefix}__z"
            return ActivationNodes([helper.make_node("DynamicQuantizeLinear", [tensor], [q, s, z]),
                                    helper.make_node("DequantizeLinear", [q, s, z], [out])], [], out)
        bits = choice.activation_bits
        rmin, rmax = self.calibrator.range(tensor, choice.calibration, bits)
        scale, zero_point = activation_qparams(rmin, rmax, bits)
        zp_type = onnx.TensorProto.UINT8 if bits == 8 else onnx.TensorProto.UINT16
        domain = "" if bits == 8 else MS_DOMAIN
        params = [f"{prefix}__scale", f"{prefix}__zp"]
        # initializers, not Constant nodes: nothing for the session to fold
        initializers = [helper.make_tensor(params[0], onnx.TensorProto.FLOAT, [], [float(scale)]),
                        helper.make_tensor(params[1], zp_type, [], [zero_point])]
        return ActivationNodes([helper.make_node("QuantizeLinear", [tensor, *params], [f"{prefix}__q"], domain=domain),
                                helper.make_node("DequantizeLinear", [f"{prefix}__q", *params], [out], domain=domain)],
                               initializers, out)

    def _run(self, model_bytes: bytes, data: Dataset | None = None) -> list[np.ndarray]:
        session = self._session(model_bytes)
        return self._guard(lambda: run_session(session, data or self.data))

    def _session(self, model_bytes: bytes) -> ort.InferenceSession:
        return self._guard(lambda: ort.InferenceSession(model_bytes, self.options, providers=["CPUExecutionProvider"]))

    def _guard(self, step):
        try:
            return step()
        except Exception as err:  # onnxruntime raises a family of pybind11 error types
            if isinstance(err, QevoError):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise QevoError(f"onnxruntime could not run the model or variant: {first}", path=self.model.path) from None


def _take(outputs: list, rows: np.ndarray) -> list:
    """The given rows of each output (arrays, or sequences such as ZipMap's list of dicts)."""
    return [o[rows] if isinstance(o, np.ndarray) and o.ndim else [o[i] for i in rows] if isinstance(o, list) else o
            for o in outputs]


def _merge(first: list, rest: list, first_rows: np.ndarray, rest_rows: np.ndarray) -> list:
    """Outputs of two row sets put back in the data's order."""
    order = np.argsort(np.concatenate([first_rows, rest_rows]), kind="stable")
    merged = []
    for a, b in zip(first, rest):
        if isinstance(a, np.ndarray) and a.ndim:
            merged.append(np.concatenate([a, b], axis=0)[order])
        elif isinstance(a, list):
            joined = a + b
            merged.append([joined[i] for i in order])
        else:
            merged.append(a)
    return merged


def _insert_before(graph: onnx.GraphProto, before: dict[str, list[onnx.NodeProto]]) -> None:
    """Put each list of new nodes right before the named node, keeping topological order."""
    nodes = []
    for node in graph.node:
        nodes.extend(before.get(node.name, ()))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
