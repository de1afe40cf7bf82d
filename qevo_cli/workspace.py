"""Open a model with its data and metric, applying qevo's defaults.

With no model given, the bundled default model, its evaluation data and its
calibration data are used, so every command has something real to work on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data import Dataset, load_data
from .defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL
from .errors import QevoError
from .evaluate import Evaluator
from .metrics import Metric, resolve_metric
from .model import LoadedModel, load_model


@dataclass
class Workspace:
    model: LoadedModel
    data: Dataset | None
    calib: Dataset | None
    metric: Metric | None

    def evaluator(self, threads: int = 1) -> Evaluator:
        if self.data is None or self.metric is None:
            raise QevoError("evaluation data is needed: pass --data FILE.npz")
        return Evaluator(self.model, self.data, self.metric, self.calib, threads=threads)


def parse_dims(items: list[str] | None) -> dict[str, int]:
    """['batch=4', 'seq=128'] -> {'batch': 4, 'seq': 128}."""
    dims = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().isdigit() or int(value) <= 0:
            raise QevoError(f"got {item!r}, expected NAME=POSITIVE_INTEGER", field="--dim")
        dims[name.strip()] = int(value)
    return dims


def open_workspace(model: str | Path | None = None, data: str | Path | None = None,
                   calib: str | Path | None = None, metric: str | None = None,
                   dims: dict[str, int] | None = None, need_data: bool = True) -> Workspace:
    """Load and cross-check the model, data, calibration data and metric."""
    using_default = model is None
    loaded = load_model(DEFAULT_MODEL if using_default else model, dims)
    if not loaded.layers:
        raise QevoError("no quantizable layer (Conv, ConvTranspose, Gemm or MatMul) in the model", path=loaded.path)
    if data is None and using_default:
        data = DEFAULT_DATA
        calib = calib or DEFAULT_CALIB
    if data is None:
        if need_data:
            raise QevoError("evaluation data is needed for a model other than the bundled default: "
                            "pass --data FILE.npz", path=loaded.path)
        return Workspace(loaded, None, None, None)
    dataset = load_data(data, loaded)
    calib_set = load_data(calib, loaded) if calib is not None else None
    chosen = resolve_metric(metric or ("accuracy" if dataset.labels is not None else "agreement"))
    if chosen.needs_labels and dataset.labels is None:
        raise QevoError(f"metric {chosen.name!r} needs labels; the file has no 'labels' array "
                        "(use --metric agreement to compare with the fp32 model instead)",
                        path=dataset.path, field="labels")
    return Workspace(loaded, dataset, calib_set, chosen)
