"""Per-layer sensitivity: each layer quantized alone, the rest fp32, the metric drop recorded.

The table is cached on disk, keyed by the content of the model, the data, the
calibration data and the metric, so a second run reads it instead of measuring.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .defaults import cache_dir
from .evaluate import Evaluator
from .files import atomic_write_text
from .policy import LayerChoice, Policy
from .recovery import recovered_choice, supports

TABLE_VERSION = 1
DEFAULT_WEIGHT_FORMATS = ("int2", "int3", "int4", "int6", "int8", "fp16")
DEFAULT_ACTIVATION_FORMATS = ("int8", "int16")


RECOVERED_FORMATS = ("int2", "int3", "int4")   # the weight formats shown recovered too, with --recovery


def probe_choices(weight_formats=DEFAULT_WEIGHT_FORMATS, activation_formats=DEFAULT_ACTIVATION_FORMATS,
                  recovered_formats=()) -> dict[str, LayerChoice]:
    """Column label -> the choice measured: weights alone (activations fp32), or activations alone; a
    "+r" column has its weights recovered (recovery.recovered_choice) on the layers where that applies."""
    columns = {}
    for fmt in weight_formats:
        columns[f"W:{fmt}"] = LayerChoice(weight=fmt, activation="fp32")
        if fmt in recovered_formats:
            columns[f"W:{fmt}+r"] = LayerChoice(weight=fmt, activation="fp32", rounding="gptq",
                                                 weight_range="output-mse", bias_correction=True)
    for fmt in activation_formats:
        columns[f"A:{fmt}"] = LayerChoice(weight="fp32", activation=fmt)
    return columns


@dataclass
class SensitivityTable:
    """drops[layer][column] = fp32 metric minus the metric with only that layer quantized."""

    fp32_score: float
    columns: list[str]
    drops: dict[str, dict[str, float]]
    from_cache: bool = False

    def to_dict(self) -> dict:
        return {"version": TABLE_VERSION, "fp32_score": self.fp32_score, "columns": self.columns,
                "drops": self.drops}


def measure_sensitivity(evaluator: Evaluator, weight_formats=DEFAULT_WEIGHT_FORMATS,
                        activation_formats=DEFAULT_ACTIVATION_FORMATS, use_cache: bool = True,
                        progress: Callable[[int, int], None] | None = None,
                        recovered_formats=()) -> SensitivityTable:
    columns = probe_choices(weight_formats, activation_formats, recovered_formats)
    layers = [layer for layer in evaluator.model.layers]
    path = _cache_path(evaluator, list(columns))
    if use_cache and path.exists():
        try:
            cached = json.loads(path.read_text())
            if cached.get("version") == TABLE_VERSION:
                return SensitivityTable(cached["fp32_score"], cached["columns"], cached["drops"], from_cache=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is measured again
    drops: dict[str, dict[str, float]] = {}
    total = len(layers) * len(columns)
    done = 0
    for layer in layers:
        row = {}
        for label, choice in columns.items():
            if (label.startswith("W:") and layer.weight is None) or (label.startswith("A:") and layer.weight_only) \
                    or (label.endswith("+r") and not supports(layer)):
                continue  # nothing to quantize (or to recover) on that side of this layer
            score = evaluator.evaluate(Policy({layer.name: recovered_choice(layer, choice)
                                               if label.endswith("+r") else choice}))
            row[label] = evaluator.fp32_score - score
            done += 1
            if progress:
                progress(done, total)
        drops[layer.name] = row
    table = SensitivityTable(evaluator.fp32_score, list(columns), drops)
    atomic_write_text(path, json.dumps(table.to_dict(), indent=1))
    return table


def _cache_path(evaluator: Evaluator, columns: list[str]) -> Path:
    key = json.dumps({"version": TABLE_VERSION, "model": evaluator.model.digest, "data": evaluator.data.digest,
                      "calib": evaluator.calibrator.calib.digest, "metric": evaluator.metric.identity,
                      "columns": columns}, sort_keys=True)
    return cache_dir() / "sensitivity" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def sqnr_db(distortion: float) -> float:
    """Output distortion (normalised squared error) as a signal-to-noise ratio in dB; 100 for none."""
    return 100.0 if distortion <= 1e-10 else round(-10.0 * math.log10(distortion), 2)


def applies(layer, column: str) -> bool:
    """Whether a proxy column ("W:int4", "W:int4+r", "A:int8") has anything to quantize on this layer."""
    if column.endswith("+r"):
        return supports(layer)
    return layer.weight is not None if column.startswith("W:") else not layer.weight_only


def proxy_summary(proxy, layers, columns, tensors=(), tensor_formats=()) -> dict:
    """The proxy table as a person reads it: model output SQNR (dB) with one layer (or one activation tensor)
    quantized at each column's format, the rest fp32; which values were probed rather than predicted. The
    activation columns of layers whose inputs are costed as tensors are left out (their tensors carry them)."""
    per_column = {column: proxy.column(layers, column) for column in columns}
    rows = {layer.name: {column: sqnr_db(per_column[column][layer.name]) for column in columns
                         if applies(layer, column) and not (column.startswith("A:") and layer.name in proxy.covered)}
            for layer in layers}
    summary = {"kind": "proxy", "subset": proxy.subset, "unit": "dB", "columns": list(columns), "sqnr_db": rows,
               "measured": {row: sorted(values) for row, values in proxy.measured.items()},
               "complete": proxy.complete}
    if tensors:
        summary["tensor_columns"] = [f"A:{fmt}" for fmt in tensor_formats if fmt.startswith("int")]
        summary["tensors"] = {tensor: {column: sqnr_db(proxy.tensor_cost(tensor, column[2:]))
                                       for column in summary["tensor_columns"]} for tensor in tensors}
    return summary
