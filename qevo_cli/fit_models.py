"""Fit a profile to whole-model latencies: each measured policy is one row.

A policy's latency is predicted as the cost model adds it up (cost.model_cost): every layer's roofline
plus the per-op overhead, one per-graph overhead, and the bytes the other ops move (glue) over the
bandwidth. The fit is fit.py's least squares on log latencies over the same parameters (throughput per
compute entry used, efficiency per op kind, bandwidth, per-op overhead) plus the per-graph overhead, with
each model row the sum of its layers. Measurements come from a search whose latency was measured
(`--target host` or `--latency-cmd`): its run folder holds every policy with its measured latency.
"""
from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares

from .cost import model_cost, tensor_conversions
from .errors import QevoError
from .fit import PRIOR_WEIGHT, FitResult, LayerDesign, Measurement, RowError, fitted_data, rounded
from .layers import Layer
from .policy import Policy
from .quantities import DURATION
from .profiles import Profile, profile_from_dict

MIN_MODELS = 4
SLOWEST_DEQUANTIZED = math.log(20.0)   # a kernel on dequantized weights reaches at least 1/20 of its rate


@dataclass(frozen=True)
class ModelMeasurement:
    label: str
    policy: Policy
    latency_s: float
    layers: Sequence[Layer] | None = None   # the layers as the policy's structure leaves them, when pruned


def _parts(layers: Sequence[Layer], policy: Policy, profile: Profile, glue, outputs,
           weight_groups: Sequence[str]) -> tuple[list[Measurement], list[bool], np.ndarray, float]:
    """One layer row per layer (its kind, MACs, bytes moved and formats), whether its kernel reads weights
    dequantized at every run, the policy's conversions (cost.conversion_elements summed: the weight elements
    in the column of their conversion rate, `weight_groups`, then activation elements and conversion ops), and
    the glue bytes of the policy."""
    cost = model_cost(layers, policy, profile, glue=glue, outputs=outputs)
    # each row is costed on the compute entry it ran on (an unfused integer kernel runs the float one)
    parts = [Measurement(line=i, layer=layer.name, kind=layer.cost_kind, macs=float(layer.macs), bytes=float(c.bytes),
                         weight_format=c.compute.split("/")[0], activation_format=c.compute.split("/")[1],
                         latency_s=1.0)
             for i, (layer, c) in enumerate(zip(layers, cost.layers))]
    conversions = np.zeros(len(weight_groups) + 2)
    for layer, c in zip(layers, cost.layers):
        weights, activations, ops = c.conversions
        converted = profile.converted_format(policy.choice(layer.name).weight)
        conversions[weight_groups.index(converted) if converted in weight_groups else 0] += weights
        conversions[-2:] += activations, ops
    return (parts, [c.dequantized for c in cost.layers], conversions,
            float(cost.bytes - sum(c.bytes for c in cost.layers)))


@dataclass(frozen=True)
class _ModelDesign:
    """x = [the layer design's parameters (fit.LayerDesign, per-op overhead last), per-graph overhead,
    weight conversion (then one per format of `conversion.weight_by_format`), activation conversion,
    -log dequantized_efficiency], each overhead and conversion scaled to be near 1."""

    layers: LayerDesign
    group: np.ndarray          # layer row -> model row
    dequantized: np.ndarray    # layer row -> its kernel reads weights dequantized at every run
    glue: np.ndarray
    weight_groups: tuple[str, ...]   # "weight", then the formats with a conversion rate of their own
    conversions: np.ndarray    # per model row: weight elements per group, activation elements, conversion ops
    conversion_scale: np.ndarray
    measured: np.ndarray

    @classmethod
    def build(cls, base: Profile, layers: Sequence[Layer], rows: Sequence[ModelMeasurement], glue, outputs,
              converted, label: str):
        weight_groups = ("weight", *sorted(base.weight_conversion_by_format))
        parts, group, dequantized, glue_bytes, conversions = [], [], [], [], []
        for m, row in enumerate(rows):
            layer_rows, flags, by_layers, moved = _parts(row.layers or layers, row.policy, base, glue, outputs,
                                                         weight_groups)
            parts += layer_rows
            dequantized += flags
            group += [m] * len(layer_rows)
            glue_bytes.append(moved)
            elements, ops = tensor_conversions(row.policy, converted)
            by_layers[-2:] += elements, ops
            conversions.append(by_layers)
        design = LayerDesign.build(base, parts, label)
        measured = np.array([row.latency_s for row in rows])
        conversions = np.array(conversions, dtype=float).reshape(len(rows), len(weight_groups) + 2)
        if not base.models_conversions:   # a profile without conversion terms is fitted as the roofline it is
            conversions[:] = 0.0
        typical = float(np.median(measured))
        # the overheads are scaled by a typical layer's share of a model's time, a conversion so that the
        # most converting policy's conversions at 1 take a typical model's time
        return cls(replace(design, time_scale=typical / max(len(layers), 1)), np.array(group),
                   np.array(dequantized, dtype=bool), np.array(glue_bytes), weight_groups, conversions,
                   typical / np.maximum(conversions[:, :-1].max(axis=0), 1.0), measured)

    def latencies(self, x: np.ndarray) -> np.ndarray:
        design = self.layers
        d = len(design.base_logs) + 1
        if self.dequantized.any():   # those kernels run slower by exp(x[-1])
            design = replace(design, macs=np.where(self.dequantized, design.macs * math.exp(x[-1]), design.macs))
        per_layer = design.latencies(x[:d])
        bandwidth = math.exp(x[len(design.entries) + len(design.kinds)])
        elements, ops = self.conversions[:, :-1], self.conversions[:, -1]
        converted = elements @ (x[d + 1:-1] * self.conversion_scale) + ops * x[d - 1] * design.time_scale
        return (np.bincount(self.group, per_layer, minlength=len(self.measured)) + self.glue / bandwidth
                + x[d] * design.time_scale + converted)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        predicted = np.maximum(self.latencies(x), 1e-15)
        prior = math.sqrt(PRIOR_WEIGHT) * (x[:len(self.layers.base_logs)] - self.layers.base_logs)
        return np.concatenate([np.log(predicted) - np.log(self.measured), prior])


def fit_to_models(base: Profile, layers: Sequence[Layer], rows: Sequence[ModelMeasurement], glue=None, *,
                  name: str, measurements_label: str, sha256: str, path: str | None = None,
                  outputs=None, converted=None) -> FitResult:
    """Least-squares fit of `base` to measured model latencies; the result is a new, validated profile."""
    if len(rows) < MIN_MODELS:
        raise QevoError(f"{len(rows)} measured policies, expected at least {MIN_MODELS}", path=measurements_label)
    glue, outputs, converted = glue or {}, outputs or {}, converted or {}
    design = _ModelDesign.build(base, layers, rows, glue, outputs, converted, measurements_label)
    lower, upper = design.layers.bounds()
    extra = 2 + len(design.weight_groups)   # per-graph overhead, conversions: each >= 0
    lower = np.append(lower, [0.0] * (extra + 1))
    upper = np.append(upper, [np.inf] * extra + [SLOWEST_DEQUANTIZED])
    rates = ([base.weight_conversion_s] + [base.weight_conversion_by_format[f] for f in design.weight_groups[1:]]
             + [base.activation_conversion_s])
    start = np.append(design.layers.start_from_base(base),
                      [base.per_graph_s / design.layers.time_scale, *(np.array(rates) / design.conversion_scale),
                       -math.log(base.dequantized_efficiency)])
    best = least_squares(design.residuals, np.clip(start, lower, upper), bounds=(lower, upper), x_scale="jac",
                         xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=4000)
    d = len(design.layers.base_logs) + 1
    values: dict[str, tuple[Any, float]] = design.layers.values(best.x[:d])
    values["overhead.per_graph"] = (DURATION, float(best.x[d]) * design.layers.time_scale)
    if base.models_conversions:
        fitted_rates = best.x[d + 1:-1] * design.conversion_scale
        if design.dequantized.any():
            values["conversion.dequantized_efficiency"] = (None, math.exp(-float(best.x[-1])))
        keys = ["conversion.weight"] + [f"conversion.weight_by_format.{f}" for f in design.weight_groups[1:]]
        values.update({key: (DURATION, float(rate)) for key, rate in zip(keys, fitted_rates)})
        values["conversion.activation"] = (DURATION, float(fitted_rates[-1]))
    data, changed = fitted_data(base, values, name=name, what=f"{len(rows)} measured model latencies",
                                measurements_label=measurements_label, sha256=sha256, rows=len(rows))
    draft = profile_from_dict(data, path)

    def errors(profile: Profile) -> list[RowError]:
        return [RowError(i, row.label, row.latency_s,
                         model_cost(row.layers or layers, row.policy, profile, glue=glue, outputs=outputs,
                                    converted=converted).latency_s)
                for i, row in enumerate(rows)]

    fitted = errors(draft)
    data["fitted"]["median_relative_error"] = rounded(statistics.median(r.relative_error for r in fitted))
    return FitResult(profile_from_dict(data, path), changed, fitted, errors(base))


def run_rows(run_dir: str | Path) -> tuple[Sequence[Layer], tuple[dict, dict, dict], list[ModelMeasurement], str]:
    """The layers, (glue, outputs, converted) of its tensors (cost.model_cost), the measured policies of a
    search whose latency was measured, and a digest of them."""
    from .config import SearchConfig
    from .defaults import DEFAULT_MODEL
    from .genome import space_for
    from .model import load_model
    from .problem import UNTIMED
    from .profiles import load_profile
    from .store import RunStore

    store = RunStore(run_dir, create=False)
    try:
        config = SearchConfig.from_run(store)
        profile = load_profile(config.target)
        if profile.latency_source != "host" and not config.latency_cmd:
            raise QevoError(f"its latencies come from {profile.name}'s cost model, expected a run whose latency was "
                            "measured (--target host or --latency-cmd)", path=run_dir)
        rows = [row for row in store.evaluations() if row["objectives"]["latency"] < UNTIMED]
    finally:
        store.close()
    model = load_model(config.model or DEFAULT_MODEL)
    space = space_for(model, profile, config.allowed())
    policies = [Policy.from_dict(row["policy"]) for row in rows]
    measured = [ModelMeasurement(f"#{row['id']}", policy, row["objectives"]["latency"] / 1e3,
                                 space.cost_layers(policy) if policy.prune else None)
                for row, policy in zip(rows, policies)]
    digest = hashlib.sha256("".join(sorted(f"{m.policy.key()}{m.latency_s}" for m in measured)).encode()).hexdigest()
    return model.layers, (dict(space.tensors.traffic), space.tensors.outputs, space.tensors.converted), measured, digest


def run_fit_to_run(run_dir: str | Path, base: str, output: str | Path, name: str | None = None) -> FitResult:
    """Fit the base profile to a run's measured latencies and write the fitted profile to `output`."""
    import re

    from .files import atomic_write_text
    from .fit import profile_name
    from .profiles import load_profile

    if name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise QevoError(f"got {name!r}, expected a name of lowercase letters, digits, '.', '_' or '-'", field="--name")
    if Path(output).is_dir():
        raise QevoError("is a folder, expected a path for the fitted profile (.yaml)", path=output)
    layers, (glue, outputs, converted), rows, digest = run_rows(run_dir)
    result = fit_to_models(load_profile(base), layers, rows, glue, name=name or profile_name(output),
                           measurements_label=str(run_dir), sha256=digest, path=str(output), outputs=outputs,
                           converted=converted)
    atomic_write_text(output, result.profile.dumps())
    return result
