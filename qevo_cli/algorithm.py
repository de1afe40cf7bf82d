"""The evolutionary algorithm a search runs and when it stops.

pymoo's NSGA-II (NSGA-III for four objectives) with its integer recipe, and the termination: the generation
limit, the evaluation limit and --time-limit counted over the whole command. Module-level functions and
classes only: a search's checkpoint pickles the algorithm with them.
"""
from __future__ import annotations

import time

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.algorithms.moo.nsga3 import NSGA3, comp_by_cv_then_random
from pymoo.core.termination import Termination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.termination.collection import TerminationCollection
from pymoo.termination.max_eval import MaximumFunctionCallTermination
from pymoo.termination.max_gen import MaximumGenerationTermination
from pymoo.util.display.multi import MultiObjectiveOutput
from pymoo.util.ref_dirs import get_reference_directions

from . import front_recovery
from .config import SearchConfig


def _by_violation_then_random(pop, P, random_state=None, **kwargs):
    """NSGA-III's tournament, as a module-level function so checkpoints pickle."""
    return comp_by_cv_then_random(pop, P, random_state=random_state, **kwargs)


def make_algorithm(kind: str, n_obj: int, pop_size: int, sampling: np.ndarray):
    """A fresh algorithm with fresh operators: pymoo's integer recipe (SBX and PM with rounding)."""
    common = dict(pop_size=pop_size, sampling=sampling, eliminate_duplicates=True, output=MultiObjectiveOutput(),
                  crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
                  mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()))
    if kind == "nsga3" or (kind == "auto" and n_obj >= 4):
        partitions = max(p for p in range(1, 13)
                         if p == 1 or len(get_reference_directions("das-dennis", n_obj, n_partitions=p)) <= pop_size)
        ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=partitions)
        return NSGA3(ref_dirs=ref_dirs, selection=TournamentSelection(func_comp=_by_violation_then_random), **common)
    return NSGA2(selection=TournamentSelection(func_comp=binary_tournament), **common)


class RunningTime(Termination):
    """--time-limit over the whole command, not from pymoo's first generation: `started_at` is the epoch time
    the search (or, on resume, its first run less the time already spent) started."""

    def __init__(self, limit: float):
        super().__init__()
        self.limit = limit
        self.started_at = time.time()

    def _update(self, algorithm):
        return (time.time() - self.started_at) / self.limit


def termination_for(config: SearchConfig, generations: int):
    parts = [MaximumGenerationTermination(generations)]
    if config.evaluations:
        parts.append(MaximumFunctionCallTermination(config.evaluations))
    if config.time_limit:
        parts.append(RunningTime(config.time_limit * evolution_share(config)))
    return TerminationCollection(*parts)


def evolution_share(config: SearchConfig) -> float:
    """The share of --time-limit the evolution may use."""
    return 1.0 - front_recovery.SHARE if config.recovers_front else 1.0


def set_running_time(algorithm, started_at: float) -> None:
    for part in getattr(algorithm.termination, "terminations", ()):
        if isinstance(part, RunningTime):
            part.started_at = started_at
