"""Fit a profile's throughputs, bandwidth and per-op overhead to measured layer latencies.

The measurements are a CSV with one row per measured layer:
    kind, macs, weight_bytes, activation_bytes, weight_format, activation_format, and one of
    latency_s / latency_ms / latency_us; an optional `layer` column names the row.
The roofline of `cost.py` is fitted by least squares on log latencies, so every layer counts
by its relative error whatever its size. Values the rows say nothing about stay as in the base.
"""
from __future__ import annotations

import csv
import hashlib
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares

from .cost import roofline_latency
from .errors import QevoError
from .layers import KINDS
from .policy import ACTIVATION_FORMATS, WEIGHT_FORMATS
from .files import atomic_write_text
from .quantities import BANDWIDTH, DURATION, THROUGHPUT
from .profiles import Profile, load_profile, profile_from_dict

REQUIRED_COLUMNS = ("kind", "macs", "weight_bytes", "activation_bytes", "weight_format", "activation_format")
LATENCY_COLUMNS = {"latency_s": 1.0, "latency_ms": 1e-3, "latency_us": 1e-6}
MIN_ROWS = 3
SIGNIFICANT_DIGITS = 4       # what a handful of timings can support
PRIOR_WEIGHT = 1e-3          # pulls values the rows cannot tell apart towards the base


@dataclass(frozen=True)
class Measurement:
    line: int
    layer: str
    kind: str
    macs: float
    bytes: float
    weight_format: str
    activation_format: str
    latency_s: float


@dataclass(frozen=True)
class FittedValue:
    key: str          # profile key, e.g. memory.bandwidth
    before: str
    after: str


@dataclass(frozen=True)
class RowError:
    line: int
    layer: str
    measured_s: float
    predicted_s: float

    @property
    def relative_error(self) -> float:
        return abs(self.predicted_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class FitResult:
    profile: Profile
    values: list[FittedValue]
    rows: list[RowError]
    base_rows: list[RowError]

    @property
    def median_relative_error(self) -> float:
        return statistics.median(row.relative_error for row in self.rows)

    @property
    def base_median_relative_error(self) -> float:
        return statistics.median(row.relative_error for row in self.base_rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.profile.name,
            "path": self.profile.path,
            "rows": len(self.rows),
            "median_relative_error": self.median_relative_error,
            "base_median_relative_error": self.base_median_relative_error,
            "values": [vars(value) for value in self.values],
            "layers": [{"line": row.line, "layer": row.layer, "measured_s": row.measured_s,
                        "predicted_s": row.predicted_s, "relative_error": row.relative_error}
                       for row in self.rows],
        }


# ---------------------------------------------------------------- reading

def read_measurements(path: str | Path) -> list[Measurement]:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except UnicodeDecodeError:
        raise QevoError("not valid UTF-8 text, expected a CSV of measurements", path=path) from None
    except (OSError, csv.Error) as error:
        raise QevoError(f"cannot read measurements ({getattr(error, 'strerror', None) or error})", path=path) from None
    if not rows:
        raise QevoError(f"the file is empty, expected a header row with {', '.join(REQUIRED_COLUMNS)}, latency_s",
                        path=path)
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    latency = [name for name in LATENCY_COLUMNS if name in header]
    if missing:
        raise QevoError(f"missing column {missing[0]!r}, expected columns {', '.join(REQUIRED_COLUMNS)} "
                        f"and one of {', '.join(LATENCY_COLUMNS)}", path=path, field="header")
    if len(latency) != 1:
        raise QevoError(f"expected exactly one latency column, one of {', '.join(LATENCY_COLUMNS)}",
                        path=path, field="header")
    measurements = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise QevoError(f"got {len(row)} cells, expected {len(header)} as in the header",
                            path=path, field=f"line {number}")
        cells = {name: cell.strip() for name, cell in zip(header, row)}
        measurements.append(_measurement(cells, number, latency[0], path))
    if len(measurements) < MIN_ROWS:
        raise QevoError(f"got {len(measurements)} measured layers, expected at least {MIN_ROWS}", path=path)
    return measurements


def _measurement(cells: dict[str, str], line: int, latency_column: str, path: Path) -> Measurement:
    def fail(column: str, expected: str) -> QevoError:
        return QevoError(f"got {cells[column]!r}, expected {expected}", path=path, field=f"line {line}.{column}")

    def number(column: str, positive: bool = False) -> float:
        try:
            value = float(cells[column])
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise fail(column, "a number above zero" if positive else "a number, zero or more")
        return value

    kind = cells["kind"]
    if kind not in KINDS:
        raise fail("kind", f"one of {', '.join(KINDS)}")
    weight = cells["weight_format"] or ("fp32" if kind == "act_matmul" else "")
    if weight not in WEIGHT_FORMATS:
        raise fail("weight_format", f"one of {', '.join(WEIGHT_FORMATS)}")
    if cells["activation_format"] not in ACTIVATION_FORMATS:
        raise fail("activation_format", f"one of {', '.join(ACTIVATION_FORMATS)}")
    return Measurement(line=line, layer=cells.get("layer") or f"line {line}", kind=kind, macs=number("macs"),
                       bytes=number("weight_bytes") + number("activation_bytes"), weight_format=weight,
                       activation_format=cells["activation_format"],
                       latency_s=number(latency_column, positive=True) * LATENCY_COLUMNS[latency_column])


# ---------------------------------------------------------------- fitting

def predict(profile: Profile, row: Measurement) -> float:
    run = profile.compute_path_for(row.weight_format, row.activation_format, has_weight=row.kind != "act_matmul",
                                   kind=row.kind)
    return roofline_latency(row.macs, row.bytes, run.rate[row.kind], profile.bandwidth, profile.per_op_s)


def fit_profile(base: Profile, measurements: Sequence[Measurement], *, name: str, measurements_label: str,
                sha256: str, path: str | None = None) -> FitResult:
    """Least-squares fit of `base` to `measurements`; the result is a new, validated profile."""
    design = LayerDesign.build(base, measurements, measurements_label)
    lower, upper = design.bounds()
    starts = [design.start_from_base(base), design.start_from_data()]
    best = min((least_squares(design.residuals, np.clip(start, lower, upper), bounds=(lower, upper), x_scale="jac",
                              xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=4000) for start in starts),
               key=lambda result: result.cost)
    return _fitted_result(base, measurements, design.values(best.x), name=name,
                          measurements_label=measurements_label, sha256=sha256, path=path)


@dataclass(frozen=True)
class LayerDesign:
    """The measurements as arrays, and what the parameter vector x means:
    x = [log throughput of each compute entry used, log efficiency of each fitted kind,
         log bandwidth, per-op overhead / time_scale]."""

    entries: list[str]
    kinds: list[str]
    entry_index: np.ndarray          # row -> compute entry
    kind_index: np.ndarray           # row -> fitted kind, -1 where its efficiency stays as in the base
    fixed_efficiency: np.ndarray
    base_logs: np.ndarray            # the base's values of every log parameter
    macs: np.ndarray
    moved: np.ndarray
    measured: np.ndarray
    time_scale: float                # keeps the overhead parameter near 1

    @classmethod
    def build(cls, base: Profile, rows: Sequence[Measurement], label: str) -> "LayerDesign":
        spec = base.spec
        entries_per_row = _compute_labels(base, rows, label)
        entries = sorted(set(entries_per_row))
        # A throughput and an efficiency multiply, so one kind (the most measured) anchors
        # the scale; only kinds that use the profile-wide efficiency are fitted.
        free = [_override(spec, entry, row.kind) is None for row, entry in zip(rows, entries_per_row)]
        free_kinds = sorted({row.kind for row, is_free in zip(rows, free) if is_free})
        anchor = max(free_kinds, key=lambda kind: sum(row.kind == kind for row in rows), default=None)
        kinds = [kind for kind in free_kinds if kind != anchor]
        return cls(
            entries=entries,
            kinds=kinds,
            entry_index=np.array([entries.index(entry) for entry in entries_per_row]),
            kind_index=np.array([kinds.index(row.kind) if is_free and row.kind in kinds else -1
                                 for row, is_free in zip(rows, free)]),
            fixed_efficiency=np.array([_efficiency(spec, entry, row.kind) for row, entry in zip(rows, entries_per_row)]),
            base_logs=np.log([spec.compute[entry].throughput for entry in entries]
                             + [getattr(spec.efficiency, kind) for kind in kinds] + [spec.memory.bandwidth]),
            macs=np.array([row.macs for row in rows]),
            moved=np.array([row.bytes for row in rows]),
            measured=np.array([row.latency_s for row in rows]),
            time_scale=float(np.median([row.latency_s for row in rows])),
        )

    def latencies(self, x: np.ndarray) -> np.ndarray:
        n, k = len(self.entries), len(self.kinds)
        efficiency = self.fixed_efficiency
        if k:
            efficiency = np.where(self.kind_index >= 0, np.exp(x[n:n + k])[np.maximum(self.kind_index, 0)], efficiency)
        rate = np.exp(x[:n])[self.entry_index] * efficiency
        return np.maximum(self.macs / rate, self.moved / math.exp(x[n + k])) + x[-1] * self.time_scale

    def residuals(self, x: np.ndarray) -> np.ndarray:
        predicted = np.maximum(self.latencies(x), 1e-15)
        prior = math.sqrt(PRIOR_WEIGHT) * (x[:-1] - self.base_logs)
        return np.concatenate([np.log(predicted) - np.log(self.measured), prior])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        n, k = len(self.entries), len(self.kinds)
        lower = np.concatenate([np.full(n + k + 1, -np.inf), [0.0]])                  # overhead >= 0
        upper = np.concatenate([np.full(n, np.inf), np.zeros(k), [np.inf, np.inf]])  # efficiency <= 1
        return lower, upper

    def start_from_base(self, base: Profile) -> np.ndarray:
        overhead = min(base.per_op_s, 0.5 * float(self.measured.min()))
        return np.concatenate([self.base_logs, [overhead / self.time_scale]])

    def start_from_data(self) -> np.ndarray:
        # Each measured time bounds both roofline terms: rate >= MACs / time, bandwidth >= bytes / time.
        start = self.base_logs.copy()
        for i in range(len(self.entries)):
            rows = self.entry_index == i
            fastest = np.max(self.macs[rows] / (self.measured[rows] * self.fixed_efficiency[rows]))
            start[i] = math.log(max(float(fastest), 1.0))
        start[len(self.entries) + len(self.kinds)] = math.log(max(float(np.max(self.moved / self.measured)), 1.0))
        return np.concatenate([start, [0.1 * float(self.measured.min()) / self.time_scale]])

    def values(self, x: np.ndarray) -> dict[str, tuple[Any, float]]:
        """Profile key -> (its quantity, or None for a plain number; the fitted value)."""
        n, k = len(self.entries), len(self.kinds)
        values: dict[str, tuple[Any, float]] = {
            f"compute.{entry}.throughput": (THROUGHPUT, math.exp(x[i])) for i, entry in enumerate(self.entries)}
        values.update({f"efficiency.{kind}": (None, math.exp(x[n + i])) for i, kind in enumerate(self.kinds)})
        values["memory.bandwidth"] = (BANDWIDTH, math.exp(x[n + k]))
        values["overhead.per_op"] = (DURATION, float(x[-1]) * self.time_scale)
        return values


def _compute_labels(base: Profile, measurements: Sequence[Measurement], label: str) -> list[str]:
    labels = []
    for row in measurements:
        run = base.compute_path_for(row.weight_format, row.activation_format, has_weight=row.kind != "act_matmul",
                                    kind=row.kind)
        if run is None:
            reason = (base.reason(row.weight_format, row.activation_format)
                      or f"{base.name} does not offer {row.activation_format} activations for a MatMul of two activations")
            raise QevoError(f"{reason}, expected formats the base profile runs", path=label, field=f"line {row.line}")
        labels.append(run.label)
    return labels


def _override(spec, label: str, kind: str) -> float | None:
    entry = spec.compute[label]
    return getattr(entry.efficiency, kind) if entry.efficiency else None


def _efficiency(spec, label: str, kind: str) -> float:
    override = _override(spec, label, kind)
    return override if override is not None else getattr(spec.efficiency, kind)


def rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _fitted_result(base: Profile, measurements: Sequence[Measurement], values: dict, *, name: str,
                   measurements_label: str, sha256: str, path: str | None) -> FitResult:
    data, changed = fitted_data(base, values, name=name, what=f"{len(measurements)} measured layer latencies",
                                measurements_label=measurements_label, sha256=sha256, rows=len(measurements))
    draft = profile_from_dict(data, path)
    rows = [RowError(row.line, row.layer, row.latency_s, predict(draft, row)) for row in measurements]
    base_rows = [RowError(row.line, row.layer, row.latency_s, predict(base, row)) for row in measurements]
    data["fitted"]["median_relative_error"] = rounded(statistics.median(row.relative_error for row in rows))
    return FitResult(profile_from_dict(data, path), changed, rows, base_rows)


def fitted_data(base: Profile, values: dict, *, name: str, what: str, measurements_label: str, sha256: str,
                rows: int) -> tuple[dict, list[FittedValue]]:
    """The base profile's data with the fitted values written in and a source of their own."""
    data = base.spec.to_dict()
    changed = []
    for key, (quantity, value) in values.items():
        value = rounded(value)
        if quantity is not None and quantity.allow_zero and value < quantity.plausible[0]:
            value = 0.0   # a fitted duration of 1e-39 s is none
        if key.startswith("efficiency."):
            value = min(value, 1.0)
        text: Any = quantity.format(value) if quantity else value
        section, *middle, leaf = key.split(".")
        if section == "conversion" and section not in data:   # a base without conversions gains them
            data[section] = {"weight": "0 s", "activation": "0 s"}
        holder = data[section]
        for part in middle:
            holder = holder[part]
        before = holder[leaf]
        holder[leaf] = text
        changed.append(FittedValue(key, str(before), str(text)))

    keys = [value.key for value in changed]
    for source in data["sources"]:
        source["used_for"] = [key for key in source.get("used_for", []) if key not in keys]
    ids = {source["id"] for source in data["sources"]}
    fit_id = next(candidate for candidate in ("fit", *(f"fit-{n}" for n in range(2, 1000))) if candidate not in ids)
    data["sources"].insert(0, {
        "id": fit_id, "flag": "measured",
        "what": f"least-squares fit of the roofline to {what}",
        "reference": f"{measurements_label} (sha256 {sha256[:16]})", "used_for": keys})
    data["name"] = name
    data["description"] = (f"Fitted to {what} in {measurements_label}, starting from {base.name}. "
                            + data["description"])
    data["fitted"] = {"base": base.origin, "measurements": measurements_label, "sha256": sha256,
                      "rows": rows, "median_relative_error": 0.0, "parameters": keys}
    return data, changed


# ---------------------------------------------------------------- the command's one call

def profile_name(path: str | Path) -> str:
    """A profile name from an output file name: 'My Phone.yaml' -> 'my-phone'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", Path(path).stem.lower()).strip("-._")
    return name or "fitted"


def run_fit(measurements_path: str | Path, base: str, output: str | Path, name: str | None = None) -> FitResult:
    """Read the CSV, fit the base profile to it, and write the fitted profile to `output`."""
    measurements_path = Path(measurements_path)
    measurements = read_measurements(measurements_path)
    sha256 = hashlib.sha256(measurements_path.read_bytes()).hexdigest()
    base_profile = load_profile(base)
    if name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise QevoError(f"got {name!r}, expected a name of lowercase letters, digits, '.', '_' or '-'", field="--name")
    result = fit_profile(base_profile, measurements, name=name or profile_name(output),
                         measurements_label=str(measurements_path), sha256=sha256, path=str(output))
    if Path(output).is_dir():
        raise QevoError("is a folder, expected a path for the fitted profile (.yaml)", path=output)
    atomic_write_text(output, result.profile.dumps())
    return result
