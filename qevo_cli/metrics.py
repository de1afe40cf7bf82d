"""Quality metrics, higher is better.

Built-ins compare a variant's outputs with the labels or with the fp32 model's
outputs. A custom metric is `FILE.py:NAME` or `module:NAME`, a function
`(outputs: list[np.ndarray], labels: np.ndarray | None) -> float` given the outputs
over the whole evaluation set (model output order, batches joined on axis 0).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import QevoError

SQNR_CAP_DB = 100.0  # identical outputs have infinite SQNR; a cap keeps scores finite and comparable


@dataclass(frozen=True)
class Metric:
    """A named metric. `fn(outputs, labels, reference)`; reference is the fp32 outputs."""

    name: str
    fn: Callable[[list[np.ndarray], np.ndarray | None, list[np.ndarray]], float]
    needs_labels: bool
    unit: str          # "%" for accuracy-like metrics, "dB", "" otherwise
    identity: str      # content key for caches: built-in name, or name plus source hash
    # what is wrong with the labels for this metric given the fp32 outputs, or None
    check_labels: Callable[[np.ndarray, list[np.ndarray]], str | None] = lambda labels, reference: None

    def __call__(self, outputs, labels, reference) -> float:
        return float(self.fn(outputs, labels, reference))

    @property
    def label(self) -> str:
        return short_name(self.name)

    def display_unit(self, fp32_score: float) -> str:
        """How drops read: '%' and 'dB' as they are, 'fraction' (shown in points, x100) for a metric
        in 0..1, '' (three significant digits) for any other scale."""
        if self.unit:
            return self.unit
        return "fraction" if abs(fp32_score) <= 1.0 else ""


def short_name(spec: str) -> str:
    """A metric's name for headers: the built-in's name, or a custom metric's function name (not its path)."""
    return spec.rpartition(":")[2]


def tolerance_in_metric_units(tolerance_percent: float, fp32_score: float) -> float:
    """`--tolerance` is a percentage of the fp32 metric's magnitude (of 1 when that is 0), so it means the
    same on a 0..100 accuracy, a 0..1 cosine and a score in dB."""
    return tolerance_percent / 100.0 * (abs(fp32_score) or 1.0)


def _top1(output: np.ndarray) -> np.ndarray:
    return output if output.ndim == 1 else output.reshape(len(output), -1).argmax(axis=1)


def _accuracy(outputs, labels, reference):
    predicted = _top1(outputs[0])
    return 100.0 * float(np.mean(predicted == np.asarray(labels).reshape(len(predicted))))


def _class_labels(labels, reference) -> str | None:
    """Top-1 accuracy compares one class index per sample with the first output's argmax."""
    labels = np.asarray(labels)
    count = len(reference[0])
    if labels.ndim != 1 and labels.shape != (count, 1):
        return f"shape {list(labels.shape)}, expected one class index per sample ([{count}]) for accuracy"
    if labels.dtype.kind not in "iub" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        return f"dtype {labels.dtype}, expected integer class indices for accuracy"
    classes = int(np.prod(reference[0].shape[1:])) if reference[0].ndim > 1 else None
    if classes is not None and labels.size and (labels.min() < 0 or labels.max() >= classes):
        return (f"class indices from {labels.min():g} to {labels.max():g}, expected 0 to {classes - 1} "
                f"(the model's first output has {classes} classes)")
    return None


def _agreement(outputs, labels, reference):
    if np.asarray(reference[0]).ndim == 1 and np.asarray(reference[0]).dtype.kind == "f":
        raise QevoError("agreement compares top-1 classes, and the model's first output is one float per sample; "
                        "expected class scores [N, classes] or class indices (use --metric sqnr or cosine)",
                        field="metric")
    return 100.0 * float(np.mean(_top1(outputs[0]) == _top1(reference[0])))


def _float_outputs(outputs, reference):
    pairs = [(o, r) for o, r in zip(outputs, reference) if np.asarray(r).dtype.kind == "f"]
    if not pairs:
        raise QevoError("the model has no float output to compare", field="metric")
    got = np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1) for o, _ in pairs], axis=1)
    want = np.concatenate([np.asarray(r, np.float64).reshape(len(r), -1) for _, r in pairs], axis=1)
    return got, want


def _sqnr(outputs, labels, reference):
    got, want = _float_outputs(outputs, reference)
    if not np.all(np.isfinite(got)):
        return -SQNR_CAP_DB   # overflowed outputs carry no signal: the worst score, never NaN
    noise = float(np.sum((got - want) ** 2))
    signal = float(np.sum(want ** 2))
    if noise == 0.0:
        return SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, 10.0 * math.log10(max(signal, 1e-30) / noise)))


def _cosine(outputs, labels, reference):
    got, want = _float_outputs(outputs, reference)
    if not np.all(np.isfinite(got)):
        return -1.0
    dot = np.sum(got * want, axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cosine = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 1.0)
    return float(np.mean(cosine))


BUILTIN = {
    "accuracy": Metric("accuracy", _accuracy, needs_labels=True, unit="%", identity="accuracy",
                       check_labels=_class_labels),
    "agreement": Metric("agreement", _agreement, needs_labels=False, unit="%", identity="agreement"),
    "sqnr": Metric("sqnr", _sqnr, needs_labels=False, unit="dB", identity="sqnr"),
    "cosine": Metric("cosine", _cosine, needs_labels=False, unit="", identity="cosine"),
}


def resolve_metric(spec: str) -> Metric:
    """A built-in name, `path/to/file.py:NAME` or `package.module:NAME`."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise QevoError(f"unknown metric {spec!r}; expected one of {', '.join(BUILTIN)}, FILE.py:NAME or "
                        "module:NAME", field="--metric")
    source, _, attr = spec.rpartition(":")
    if source.endswith(".py"):
        path = Path(source)
        if not path.exists():
            raise QevoError("metric file not found", path=path, field="--metric")
        module_spec = importlib.util.spec_from_file_location(f"qevo_metric_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's code may raise anything on import
            raise QevoError(f"cannot import metric file ({type(err).__name__}: {err})", path=path,
                            field="--metric") from None
        content = path.read_bytes()
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as err:
            raise QevoError(f"cannot import module {source!r} ({err})", field="--metric") from None
        content = (inspect.getsource(module) if _has_source(module) else source).encode()
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise QevoError(f"{source} has no function {attr!r}", field="--metric")
    identity = f"{spec}#{hashlib.sha256(content).hexdigest()[:16]}"

    def call_user(outputs, labels, reference):
        try:
            # what the metric prints goes to stderr: stdout may be --json's
            with contextlib.redirect_stdout(sys.stderr):
                value = fn(outputs, labels)
        except (Exception, SystemExit) as err:  # report the user's failure as theirs, in one line
            raise QevoError(f"metric {spec} raised {type(err).__name__}: {err}", field="--metric") from None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise QevoError(f"metric {spec} returned {type(value).__name__}, expected a number",
                            field="--metric") from None
        if not math.isfinite(value):
            raise QevoError(f"metric {spec} returned {value}, expected a finite number", field="--metric")
        return value

    return Metric(spec, call_user, needs_labels=False, unit="", identity=identity)


def _has_source(module) -> bool:
    try:
        inspect.getsource(module)
        return True
    except (OSError, TypeError):
        return False
