"""From every evaluated policy to the Pareto front a user chooses from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .errors import QevoError
from .policy import Policy


FRONT_VERSION = 1   # of front.json
OBJECTIVE_NAMES = ("metric", "size", "latency", "energy")
FLAT_SPAN = 0.01   # an objective whose values span less than this share of their largest cannot rank policies


@dataclass(frozen=True)
class Solution:
    """A policy on the front, or a reference (fp32, uniform W8A8): what it scored and what it costs."""

    objectives: dict[str, float]   # objective name -> value in front.json's units (drop, MB, ms, mJ)
    metric: float                  # the metric it scored
    policy: Policy
    id: int | None = None          # its row in the run's store; references have none
    name: str | None = None        # a reference's name
    feasible: bool = True          # within every budget
    violation: float = 0.0         # how far over the budgets, 0 when within

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Solution":
        """From a row of the run's store (RunStore.evaluations)."""
        return cls(dict(row["objectives"]), row["metric"], Policy.from_dict(row["policy"]), id=row["id"],
                   feasible=row["violation"] <= 0, violation=row["violation"])

    def to_dict(self) -> dict[str, Any]:
        head = {"name": self.name} if self.id is None else {"id": self.id}
        tail = {} if self.id is None else {"feasible": self.feasible, "violation": self.violation}
        return {**head, "objectives": self.objectives, "metric": self.metric, **tail, "policy": self.policy.to_dict()}


@dataclass(frozen=True)
class Front:
    """What front.json holds: the run's Pareto front (or, when nothing met the budgets, the closest
    policies), the references beside it, and what a reader needs to show and choose from them."""

    model: str
    target: str
    metric: str
    objectives: list[str]
    fp32_metric: float
    references: list[Solution]
    solutions: list[Solution]
    model_digest: str | None = None
    metric_label: str | None = None
    metric_unit: str = ""
    units: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)
    feasible: bool = True
    hypervolume: float = 0.0
    evaluated: int = 0

    @classmethod
    def from_dict(cls, data: Any, path=None) -> "Front":
        """`data` (front.json read as JSON) if it has the shape a front has, else one QevoError naming the
        first field that does not."""
        def fail(where: str, message: str):
            raise QevoError(message, path=path, field=where)

        if not isinstance(data, dict):
            fail("", "expected a JSON object")
        if data.get("version") != FRONT_VERSION or isinstance(data.get("version"), bool):
            fail("version", f"got {data.get('version')!r}, expected {FRONT_VERSION}")
        for key in ("model", "target", "metric"):
            if not isinstance(data.get(key), str):
                fail(key, f"got {data.get(key)!r}, expected a string")
        objectives = data.get("objectives")
        if not isinstance(objectives, list) or not objectives or not all(o in OBJECTIVE_NAMES for o in objectives):
            fail("objectives", f"got {objectives!r}, expected a list of {', '.join(OBJECTIVE_NAMES)}")
        if not _number(data.get("fp32_metric")):
            fail("fp32_metric", f"got {data.get('fp32_metric')!r}, expected a number")
        groups = {}
        for group in ("references", "solutions"):
            rows = data.get(group)
            if not isinstance(rows, list):
                fail(group, f"got {type(rows).__name__}, expected a list")
            groups[group] = [_solution(row, f"{group}[{i}]", objectives, group == "solutions", fail, path)
                             for i, row in enumerate(rows)]
        for key, kind in (("feasible", bool), ("units", dict), ("budgets", dict), ("model_digest", str),
                          ("metric_label", str), ("metric_unit", str)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                fail(key, f"got {data[key]!r}, expected {'true or false' if kind is bool else kind.__name__}")
        if "hypervolume" in data and not _number(data["hypervolume"]):
            fail("hypervolume", f"got {data['hypervolume']!r}, expected a number")
        if "evaluated" in data and (isinstance(data["evaluated"], bool) or not isinstance(data["evaluated"], int)):
            fail("evaluated", f"got {data['evaluated']!r}, expected an integer")
        return cls(model=data["model"], target=data["target"], metric=data["metric"], objectives=list(objectives),
                   fp32_metric=float(data["fp32_metric"]), model_digest=data.get("model_digest"),
                   metric_label=data.get("metric_label"), metric_unit=data.get("metric_unit") or "",
                   units=data.get("units", {}), budgets=data.get("budgets", {}), feasible=data.get("feasible", True),
                   hypervolume=float(data.get("hypervolume", 0.0)), evaluated=int(data.get("evaluated", 0)),
                   **groups)

    def to_dict(self) -> dict[str, Any]:
        return {"version": FRONT_VERSION, "model": self.model, "model_digest": self.model_digest,
                "target": self.target, "metric": self.metric, "metric_label": self.metric_label,
                "metric_unit": self.metric_unit, "fp32_metric": self.fp32_metric, "objectives": self.objectives,
                "units": self.units, "budgets": self.budgets, "feasible": self.feasible,
                "references": [r.to_dict() for r in self.references],
                "solutions": [s.to_dict() for s in self.solutions],
                "hypervolume": self.hypervolume, "evaluated": self.evaluated}

    def values(self, objective: str) -> list[float]:
        """One objective's values over the solutions, in front order."""
        return [s.objectives[objective] for s in self.solutions]

    def flat_objectives(self) -> dict[str, float]:
        """The cost objectives (size, latency, energy) that do not separate the policies: name -> span."""
        if len(self.solutions) < 2:
            return {}
        spans = {name: relative_span(self.values(name)) for name in self.objectives if name != "metric"}
        return {name: span for name, span in spans.items() if span < FLAT_SPAN}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _solution(row: Any, where: str, objectives: list[str], on_front: bool, fail, path) -> Solution:
    if not isinstance(row, dict):
        fail(where, f"got {type(row).__name__}, expected an object")
    values = row.get("objectives")
    if not isinstance(values, dict) or not all(_number(values.get(o)) for o in objectives):
        fail(f"{where}.objectives", f"got {values!r}, expected a number for each of {', '.join(objectives)}")
    if not _number(row.get("metric")):
        fail(f"{where}.metric", f"got {row.get('metric')!r}, expected a number")
    if "policy" not in row:
        fail(f"{where}.policy", "missing")
    try:
        policy = Policy.from_dict(row["policy"])
    except QevoError as err:
        raise err.at(path=path, field=f"{where}.policy") from None
    if on_front and (isinstance(row.get("id"), bool) or not isinstance(row.get("id"), int)):
        fail(f"{where}.id", f"got {row.get('id')!r}, expected an integer")
    violation = row.get("violation", 0.0)
    if not _number(violation):
        fail(f"{where}.violation", f"got {violation!r}, expected a number")
    return Solution({k: float(v) for k, v in values.items() if _number(v)}, float(row["metric"]), policy,
                    id=row.get("id") if on_front else None, name=None if on_front else str(row.get("name", "")),
                    feasible=bool(row.get("feasible", True)), violation=float(violation))


def relative_span(values: Sequence[float]) -> float:
    """(largest - smallest) / largest of positive values; 0 for none."""
    values = [v for v in values if v > 0]
    return (max(values) - min(values)) / max(values) if values else 0.0


def non_dominated(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> list[dict[str, Any]]:
    """Feasible rows on the first front; of rows with identical objectives, the first evaluated."""
    feasible = [row for row in rows if row["violation"] <= 0]
    unique: dict[tuple, dict[str, Any]] = {}
    for row in feasible:
        unique.setdefault(tuple(round(row["objectives"][name], 12) for name in objectives), row)
    candidates = list(unique.values())
    if not candidates:
        return []
    F = np.array([[row["objectives"][name] for name in objectives] for row in candidates])
    first = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return sorted((candidates[i] for i in first), key=lambda row: [row["objectives"][n] for n in objectives])


def closest(rows: Sequence[dict[str, Any]], count: int = 5) -> list[dict[str, Any]]:
    """The policies that miss the budgets by the least."""
    return sorted(rows, key=lambda row: row["violation"])[:count]


class HypervolumeScale:
    """Hypervolume of a front after dividing each objective by its fp32 reference value.

    The metric loss is divided by the fp32 metric's magnitude (or 1), so a policy that
    loses everything sits at 1; the reference point is 1.1 on every axis.
    """

    def __init__(self, objectives: Sequence[str], fp32_values: dict[str, float], fp32_metric: float):
        self.objectives = list(objectives)
        self.scale = np.array([abs(fp32_metric) or 1.0 if name == "metric" else (fp32_values[name] or 1.0)
                               for name in objectives])
        self.indicator = HV(ref_point=np.full(len(objectives), 1.1))

    def __call__(self, rows: Sequence[dict[str, Any]]) -> float:
        if not rows:
            return 0.0
        F = np.array([[row["objectives"][name] for name in self.objectives] for row in rows]) / self.scale
        return float(self.indicator(F))
