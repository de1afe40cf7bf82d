"""Measure a policy: build the quantized variant and run it in onnxruntime on real data.

A variant is the float graph with each quantized layer's weight replaced by its
fake-quantized values and Q/DQ pairs in front of the layer's input activations, built by
the graph editor that also writes exports. The fp32 reference outputs are computed once;
each layer's quantized weight is computed once per choice and reused by every policy.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from .calibration import ActivationCalibrator
from .data import Dataset
from .errors import QevoError, first_line
from .graph_edit import GraphEditor
from .structure import Structures, group_shares
from .metrics import Metric
from .model import LoadedModel
from .policy import FP32, Policy
from .scope import float_tensors

# onnxruntime's own logger writes to stderr; only fatal errors get through unless the user asks.
_runtime_severity = 4
ort.set_default_logger_severity(_runtime_severity)


def verbose_runtime(on: bool) -> None:
    """Let onnxruntime's warnings and errors through (qevo --verbose)."""
    global _runtime_severity
    _runtime_severity = 2 if on else 4
    ort.set_default_logger_severity(_runtime_severity)


def session_options(threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _runtime_severity
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
        self.editor = GraphEditor(model, self.calibrator)
        self.structures = Structures(model, self.calibrator, self.editor)
        self._base_bytes = model.proto.SerializeToString()
        self.reference = self._run(self._base_bytes)
        problem = metric.check_labels(data.labels, self.reference) if data.labels is not None else None
        if problem:
            raise QevoError(problem, path=data.path, field="labels")
        self.fp32_score = self.metric(self.reference, data.labels, self.reference)

    # -- public --------------------------------------------------------------------------------
    def evaluate(self, policy: Policy) -> float:
        """The metric of the policy's variant on the evaluation data."""
        if all(choice == FP32 for choice in policy.layers.values()) and \
                all(fmt == "fp32" for fmt in policy.tensors.values()) and not policy.prune:
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
        if not policy.layers and not policy.tensors and not policy.prune and data is None:
            return self.reference
        return self._run(self.variant(policy).SerializeToString(), data)

    def variant(self, policy: Policy) -> onnx.ModelProto:
        """The float model (its channels pruned as the policy says) with the policy's quantization simulated in
        the graph."""
        self.check(policy)
        return self.editor_for(policy).build(policy.without_pruning())

    def editor_for(self, policy: Policy) -> GraphEditor:
        """The editor of the model the policy's structure leaves: the loaded model's, or a pruned one's."""
        return self.structures.editor(policy.prune) if policy.prune else self.editor

    def check(self, policy: Policy) -> None:
        known = {layer.name for layer in self.model.layers}
        for name in policy.layers:
            if name not in known:
                raise QevoError(f"policy names layer {name!r}, which {self.model.path.name} does not have "
                                f"(it has {len(known)} quantizable layers; see qevo inspect)")
        if policy.tensors:
            floats = float_tensors(self.model)
            for name in policy.tensors:
                if name not in floats:
                    raise QevoError(f"policy names tensor {name!r}, which is not a float activation of "
                                    f"{self.model.path.name}'s top graph (see qevo inspect --target)",
                                    field=f"tensors.{name}")
        if policy.prune:
            group_shares(self.structures.groups, policy.prune)

    # -- running ----------------------------------------------------------------------------------
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
            raise QevoError(f"onnxruntime could not run the model or variant: {first_line(err)}",
                            path=self.model.path) from None


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
