"""The pymoo problem: an integer vector per policy, objectives to minimise, budgets as G <= 0.

Objectives, in the units users read them in:
    metric   fp32 metric minus the policy's measured metric (points, or dB for sqnr)
    size     model size in MB (weights at their stored width, scales, other parameters)
    latency  ms per inference on the target, from the cost model or measured (latency.py)
    energy   mJ per inference on the target, from the cost model
The metric is measured by whatever `measure` callable the search attaches; the problem
pickles without it, so a checkpoint or a worker never drags a process pool along.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from pymoo.core.problem import Problem

from .cost import model_cost
from .errors import QevoError
from .genome import SearchSpace
from .policy import Policy
from .profiles import Profile

OBJECTIVES = ("metric", "size", "latency", "energy")
UNITS = {"size": "MB", "latency": "ms", "energy": "mJ"}
UNTIMED = 1e9   # latency given to a policy its timer could not time; its constraint marks it infeasible
BUDGETS = {"metric": "max_drop", "size": "max_size_mb", "latency": "max_latency_ms", "energy": "max_energy_mj"}


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    for name in names:
        if name not in OBJECTIVES:
            raise QevoError(f"got {name!r}, expected a comma-separated list of {', '.join(OBJECTIVES)}",
                            field="--objectives")
    if len(names) < 2 or len(set(names)) != len(names):
        raise QevoError("expected at least two different objectives", field="--objectives")
    return tuple(names)


@dataclass(frozen=True)
class Scored:
    """Everything known about one evaluated policy."""

    policy: Policy
    metric: float
    objectives: dict[str, float]
    violation: float        # sum of budget overshoots; 0 when every budget holds
    seconds: float
    cached: bool


class Costing:
    """Objectives and budget violations of a policy, given its measured metric."""

    def __init__(self, space: SearchSpace, profile: Profile, other_bytes: int, fp32_metric: float,
                 objectives: tuple[str, ...], budgets: dict[str, float], latency=None):
        self.space, self.profile, self.other_bytes = space, profile, other_bytes
        self.fp32_metric, self.objectives, self.budgets = fp32_metric, objectives, budgets
        self.glue, self.outputs, self.converted = space.tensors.traffic, space.tensors.outputs, space.tensors.converted
        self.latency = latency   # a latency.MeasuredLatency, or None for the profile's model
        self.timed = latency is not None   # kept through pickling: it fixes the number of constraints

    def __getstate__(self):
        state = self.__dict__.copy()
        state["latency"] = None   # a timer holds sessions and files; the search attaches its own
        return state

    @property
    def n_constraints(self) -> int:
        return len(self.budgets) + self.timed

    def values(self, policy: Policy, metric: float, timed: bool = True) -> dict[str, float]:
        """The objectives; `timed=False` predicts a measured latency from the profile instead of timing it (to
        place a policy before it is measured)."""
        cost = model_cost(self.space.cost_layers(policy), policy, self.profile, other_bytes=self.other_bytes, glue=self.glue,
                          outputs=self.outputs, converted=self.converted)
        latency_ms = cost.latency_s * 1e3
        if self.latency is not None:
            timing = self.latency(policy) if timed else self.latency.known(policy)
            if timing is not None or timed:
                latency_ms = timing.median_ms if timing is not None else UNTIMED
        return {"metric": self.fp32_metric - metric, "size": cost.weight_bytes / 1e6,
                "latency": latency_ms, "energy": cost.energy_j * 1e3}

    def constraints(self, values: dict[str, float]) -> list[float]:
        limits = [values[name] - limit for name, limit in self.budgets.items()]
        return limits + ([1.0 if values["latency"] >= UNTIMED else 0.0] if self.timed else [])


class QuantizationProblem(Problem):
    def __init__(self, space: SearchSpace, costing: Costing):
        super().__init__(n_var=space.n_var, n_obj=len(costing.objectives), n_ieq_constr=costing.n_constraints,
                         xl=np.zeros(space.n_var, dtype=int), xu=space.upper, vtype=int)
        self.space = space
        self.costing = costing
        self.measure: Callable[[list[Policy]], list[Scored]] | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["measure"] = None
        return state

    def _evaluate(self, X, out, *args, **kwargs):
        if self.measure is None:
            raise RuntimeError("attach a measure function before evaluating")
        scored = self.measure([self.space.decode(x) for x in X])
        out["F"] = np.array([[s.objectives[name] for name in self.costing.objectives] for s in scored], dtype=float)
        if self.costing.n_constraints:
            out["G"] = np.array([self.costing.constraints(s.objectives) for s in scored], dtype=float)
