"""From every evaluated policy to the Pareto front a user chooses from."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


FRONT_VERSION = 1   # of front.json
OBJECTIVE_NAMES = ("metric", "size", "latency", "energy")
FLAT_SPAN = 0.01   # an objective whose values span less than this share of their largest cannot rank policies


def check_front(front: Any, path) -> dict[str, Any]:
    """`front` (a front.json read as JSON) if it has the shape every reader relies on, else one QevoError
    naming the first field that does not."""
    from .errors import QevoError
    from .policy import Policy

    def fail(field: str, message: str):
        raise QevoError(message, path=path, field=field)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)

    if not isinstance(front, dict):
        fail("", "expected a JSON object")
    if front.get("version") != FRONT_VERSION or isinstance(front.get("version"), bool):
        fail("version", f"got {front.get('version')!r}, expected {FRONT_VERSION}")
    for key in ("model", "target", "metric"):
        if not isinstance(front.get(key), str):
            fail(key, f"got {front.get(key)!r}, expected a string")
    objectives = front.get("objectives")
    if not isinstance(objectives, list) or not objectives or not all(o in OBJECTIVE_NAMES for o in objectives):
        fail("objectives", f"got {objectives!r}, expected a list of {', '.join(OBJECTIVE_NAMES)}")
    if not number(front.get("fp32_metric")):
        fail("fp32_metric", f"got {front.get('fp32_metric')!r}, expected a number")
    for group in ("references", "solutions"):
        rows = front.get(group)
        if not isinstance(rows, list):
            fail(group, f"got {type(rows).__name__}, expected a list")
        for i, row in enumerate(rows):
            where = f"{group}[{i}]"
            if not isinstance(row, dict):
                fail(where, f"got {type(row).__name__}, expected an object")
            values = row.get("objectives")
            if not isinstance(values, dict) or not all(number(values.get(o)) for o in objectives):
                fail(f"{where}.objectives", f"got {values!r}, expected a number for each of {', '.join(objectives)}")
            if not number(row.get("metric")):
                fail(f"{where}.metric", f"got {row.get('metric')!r}, expected a number")
            if "policy" not in row:
                fail(f"{where}.policy", "missing")
            try:
                Policy.from_dict(row["policy"])
            except QevoError as err:
                raise err.at(path=path, field=f"{where}.policy") from None
            if group == "solutions" and (isinstance(row.get("id"), bool) or not isinstance(row.get("id"), int)):
                fail(f"{where}.id", f"got {row.get('id')!r}, expected an integer")
    return front


def relative_span(values: Sequence[float]) -> float:
    """(largest - smallest) / largest of positive values; 0 for none."""
    values = [v for v in values if v > 0]
    return (max(values) - min(values)) / max(values) if values else 0.0


def flat_objectives(front: dict[str, Any]) -> dict[str, float]:
    """The cost objectives (size, latency, energy) that do not separate a front's policies: name -> span."""
    solutions = front.get("solutions") or []
    if len(solutions) < 2:
        return {}
    spans = {name: relative_span([s["objectives"][name] for s in solutions])
             for name in front["objectives"] if name != "metric"}
    return {name: span for name, span in spans.items() if span < FLAT_SPAN}


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
