"""Choosing one policy from a front: the knee, stated priorities, an id, or a rule.

    knee                       pymoo's high trade-off points on the normalised front; of several,
                               the one nearest the ideal point; of none, the nearest to the ideal
    weights=ACC,SIZE,LAT,EN    pymoo's pseudo-weights: the policy whose trade-off best matches
                               the stated priorities (one weight per objective of the run, in the
                               order metric, size, latency, energy)
    ID                         the policy with that id
    max-drop=1.0,min=latency   the policy with the least latency among those within a 1-point drop
                               (filters: max-drop, max-size-mb, max-latency-ms, max-energy-mj;
                               then min=OBJECTIVE)
The same rule on the same front always picks the same policy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.mcdm.high_tradeoff import HighTradeoffPoints
from pymoo.mcdm.pseudo_weights import PseudoWeights

from .errors import QevoError
from .front import Front, Solution
from .problem import BUDGETS, OBJECTIVES

FILTERS = {limit.replace("_", "-"): name for name, limit in BUDGETS.items()}


def _normalised(solutions: Sequence[Solution], objectives: Sequence[str]) -> np.ndarray:
    F = np.array([[s.objectives[name] for name in objectives] for s in solutions], dtype=float)
    low, high = F.min(axis=0), F.max(axis=0)
    return (F - low) / np.where(high > low, high - low, 1.0)


def _nearest_ideal(F: np.ndarray, candidates: Sequence[int]) -> int:
    return min(candidates, key=lambda i: (float(np.linalg.norm(F[i])), i))


OVER_BUDGET = "the run found no policy within its budgets; pick one of the closest by id"


def picks_on(front: Front, rule: str) -> bool:
    """Whether `rule` may choose on this front: any rule on a front that met the budgets; on the list of the
    policies closest to them, an id only (no trade-off among policies that all miss is a choice to offer)."""
    return front.feasible or rule.strip().isdigit()


def knee_id(front: Front) -> int | None:
    """The knee's id, on a front that met the budgets."""
    return pick(front, "knee").id if front.feasible and front.solutions else None


def pick(front: Front, rule: str) -> Solution:
    """The solution of `front` that `rule` selects."""
    solutions = front.solutions
    if not solutions:
        raise QevoError("the front has no solutions to pick from", field="--pick")
    objectives = list(front.objectives)
    rule = rule.strip()
    if rule == "knee":
        return solutions[_knee(_normalised(solutions, objectives))]
    if rule.startswith("weights="):
        return solutions[_by_weights(_normalised(solutions, objectives), objectives, rule[len("weights="):])]
    if rule.isdigit():
        for solution in solutions:
            if solution.id == int(rule):
                return solution
        raise QevoError(f"no solution with id {rule} on the front (ids: "
                        f"{', '.join(str(s.id) for s in solutions[:12])}{' ...' if len(solutions) > 12 else ''})",
                        field="--pick")
    return _by_rule(solutions, objectives, rule)


def _knee(F: np.ndarray) -> int:
    if len(F) <= 2:
        return _nearest_ideal(F, range(len(F)))
    found = HighTradeoffPoints().do(F)
    candidates = [int(i) for i in np.atleast_1d(found)] if found is not None and np.size(found) else []
    return _nearest_ideal(F, candidates or range(len(F)))


def _by_weights(F: np.ndarray, objectives: list[str], text: str) -> int:
    try:
        stated = [float(v) for v in text.split(",")]
    except ValueError:
        raise QevoError(f"got {text!r}, expected comma-separated numbers", field="--pick weights") from None
    if len(stated) == len(OBJECTIVES):
        stated = [stated[OBJECTIVES.index(name)] for name in objectives]   # ACC,SIZE,LAT,ENERGY order
    if len(stated) != len(objectives) or not all(np.isfinite(stated)) or any(w < 0 for w in stated) \
            or sum(stated) <= 0:
        raise QevoError(f"expected {len(objectives)} non-negative weights for {', '.join(objectives)} "
                        f"(or 4 for metric, size, latency, energy)", field="--pick weights")
    weights = np.array(stated) / sum(stated)
    if len(F) == 1:
        return 0
    index = PseudoWeights(weights).do(F)
    return int(np.atleast_1d(index)[0])


def _by_rule(solutions: Sequence[Solution], objectives: list[str], text: str) -> Solution:
    limits: dict[str, float] = {}
    minimise = None
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key == "min" and sep:
            # a run costs every policy in size, latency and energy, whether or not it searched on them
            costed = [name for name in OBJECTIVES if all(name in s.objectives for s in solutions)]
            if value not in costed:
                raise QevoError(f"min={value}: expected one of the quantities the run costed {', '.join(costed)}",
                                field="--pick")
            minimise = value
        elif key in FILTERS and sep:
            try:
                limits[FILTERS[key]] = float(value)
            except ValueError:
                limits[FILTERS[key]] = float("nan")
            if not np.isfinite(limits[FILTERS[key]]):
                raise QevoError(f"{key}={value}: expected a finite number", field="--pick")
        else:
            raise QevoError(f"got {text!r}, expected knee, weights=..., an id, or a rule like "
                            "max-drop=1.0,min=latency", field="--pick")
    if minimise is None:
        raise QevoError("a rule needs min=OBJECTIVE", field="--pick")
    within = [s for s in solutions if all(s.objectives.get(name, 0.0) <= limit for name, limit in limits.items())]
    if not within:
        raise QevoError(f"no solution on the front satisfies {text}", field="--pick")
    order = [minimise] + [name for name in objectives if name != minimise]   # ties: the run's own objectives
    return min(within, key=lambda s: ([s.objectives[name] for name in order], s.id))
