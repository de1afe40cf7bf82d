"""Scoring a generation's policies: this run's store, then the shared cache, then the runner.

Results are stored as they arrive, at least every FLUSH_S seconds, so a killed search loses no more than that
much finished work. With racing (fidelity.py) a policy may stop after a subset of the data: it is then scored
by its prediction for the search's selection, and kept out of the store, the metric cache and the front.
A deadline (--time-limit) stops measuring mid-generation: what is left is ranked last and never stored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fidelity import Race, calibrate, subset_key
from .front import non_dominated
from .policy import Policy
from .problem import Costing, Scored
from .runners import MeasureTask
from .store import EvaluationCache, RunStore


@dataclass
class Progress:
    """What a search reports after each generation (and what a callback receives)."""

    generation: int = 0
    evaluations: int = 0      # policies scored, cached or not
    measured: int = 0         # policies run in onnxruntime by this search
    measured_now: int = 0     # of those, measured since this process started (differs after a resume)
    cache_hits: int = 0       # policies new to this run found in the shared cache (not measured again)
    repeats: int = 0          # policies the search proposed again: this run's store already held them
    probes: int = 0           # sensitivity probes measured (on a data subset; not policies)
    estimated: int = 0        # policies cut short after a data subset by racing (never on the front)
    front_size: int = 0
    hypervolume: float = 0.0
    elapsed_s: float = 0.0
    phase: str = "starting"   # references, sensitivity, seeding, search
    phase_done: int = 0       # steps of the phase done, of phase_total (probes, or generations)
    phase_total: int = 0
    remaining_s: float | None = None   # an estimate of the time left, when one can be made
    batch_done: int = 0       # policies of the generation being measured, done of batch_total
    batch_total: int = 0


UNMEASURED = 1e9   # objective and violation given to a policy the deadline left unmeasured


class Measurer:
    FLUSH_S = 0.25

    def __init__(self, store: RunStore, cache: EvaluationCache, costing: Costing, task: MeasureTask, runner,
                 progress: Progress, race_rows: np.ndarray | None = None, tick=None):
        self.store, self.cache, self.costing, self.task, self.runner = store, cache, costing, task, runner
        self.progress = progress
        self.generation = 0
        self.deadline: float | None = None   # time.perf_counter() after which nothing new is measured
        self.race_rows = race_rows            # subset to race on, None to measure every policy in full
        self.tick = tick                      # tick(done, total) after each policy run, for a display

    def _row(self, key: str, policy: Policy, metric: float, seconds: float, cached: bool) -> dict[str, Any]:
        values = self.costing.values(policy, metric)
        violation = float(sum(max(0.0, g) for g in self.costing.constraints(values)))
        return {"key": key, "policy": policy.to_dict(), "metric": metric, "objectives": values,
                "violation": violation, "seconds": seconds, "cached": cached}

    def _flush(self, finished: list[tuple[str, Policy, float | None, float, float | None]]) -> None:
        if not finished:
            return
        self.cache.put_many([(key, value, seconds) for key, _, value, seconds, _ in finished if value is not None]
                            + [(subset_key(self.race_rows, key), partial, seconds)
                               for key, _, _, seconds, partial in finished if partial is not None])
        self.store.record([self._row(key, policy, value, seconds, cached=False)
                           for key, policy, value, seconds, _ in finished if value is not None], self.generation,
                          subsets={key: partial for key, _, _, _, partial in finished if partial is not None})

    # -- racing -------------------------------------------------------------------------------
    def _race_state(self) -> tuple[np.ndarray, float, float, bool]:
        """The front (metric column first, as Race expects), shift, margin and learning flag, from this run's
        full measurements of earlier generations."""
        rows = self.store.measured_before(self.generation)
        names = ["metric", *(n for n in self.costing.objectives if n != "metric")]
        front = non_dominated(rows, list(self.costing.objectives))
        F = np.array([[row["objectives"][n] for n in names] for row in front]) if front else np.zeros((0, len(names)))
        shift, margin, learning = calibrate([(row["subset"], row["metric"]) for row in rows
                                             if row["subset"] is not None])
        return F, shift, margin, learning

    def _race(self, policy: Policy, state) -> Race:
        front, shift, margin, learning = state
        # predicted costs: a measured latency is timed only once the policy is measured
        values = self.costing.values(policy, self.costing.fp32_metric, timed=False)
        costs = tuple(values[n] for n in self.costing.objectives if n != "metric")
        return Race(self.race_rows, self.costing.fp32_metric, shift, margin, front, costs, learning)

    def _cached_partials(self, keys) -> dict[str, float]:
        """Subset metrics the shared cache holds for these policy keys."""
        prefix = subset_key(self.race_rows, "")
        found = self.cache.get_many([subset_key(self.race_rows, k) for k in keys])
        return {k[len(prefix):]: value for k, (value, _) in found.items()}

    # -- scoring --------------------------------------------------------------------------------
    def __call__(self, policies: list[Policy]) -> list[Scored]:
        keys = [policy.key() for policy in policies]
        known = self.store.known(keys)
        from_cache = self.cache.get_many([k for k in keys if k not in known])
        # with their subset metrics when a run raced them: the same pairs calibrate racing, cache or not
        partials = self._cached_partials(from_cache) if self.race_rows is not None and from_cache else None
        self.store.record([self._row(k, p, *from_cache[k], cached=True) for k, p in zip(keys, policies)
                           if k in from_cache], self.generation, subsets=partials)
        known.update(from_cache)
        missing: dict[str, Policy] = {}
        for key, policy in zip(keys, policies):
            if key not in known:
                missing.setdefault(key, policy)
        predicted: dict[str, float] = {}   # raced policies cut short: key -> predicted metric
        items: list[tuple[str, Policy, Any]] = []
        if self.race_rows is not None and missing:
            state = self._race_state()
            earlier = {**self._cached_partials(missing), **self.store.subset_values(list(missing))}
            decided: dict[str, float] = {}
            for key, policy in missing.items():
                race = self._race(policy, state)
                partial = earlier.get(key)
                if partial is not None and not race.worth_full(partial):
                    predicted[key] = race.predicted(partial)   # decided as before: nothing to run
                    decided[key] = partial
                else:
                    items.append((key, policy, (policy.to_dict(), race)))
            self.store.record_subset(decided, self.generation)
        else:
            items = [(key, policy, policy.to_dict()) for key, policy in missing.items()]
        finished: list[tuple[str, Policy, float | None, float, float | None]] = []
        last_flush = time.perf_counter()
        expired = self.deadline is not None and time.perf_counter() >= self.deadline
        results = self.runner(self.task, [item for _, _, item in items]) if items and not expired else iter(())
        measured_now = 0
        try:
            for (key, policy, item), (value, seconds, partial) in zip(items, results):
                finished.append((key, policy, value, seconds, partial))
                if value is None:
                    predicted[key] = item[1].predicted(partial)
                else:
                    known[key] = (value, seconds)
                    measured_now += 1
                if time.perf_counter() - last_flush >= self.FLUSH_S:
                    self._flush(finished)
                    finished, last_flush = [], time.perf_counter()
                if self.tick is not None:
                    self.tick(len(predicted) + measured_now, len(items))
                if self.deadline is not None and time.perf_counter() >= self.deadline:
                    break   # the time limit: what is left of this generation stays unmeasured
        finally:   # on Ctrl-C too: keep what was finished
            self._flush(finished)
        scored = []
        for key, policy in zip(keys, policies):
            if key in known:
                row = self._row(key, policy, *known[key], cached=key not in missing)
                scored.append(Scored(policy, row["metric"], row["objectives"], row["violation"], row["seconds"],
                                     row["cached"]))
            elif key in predicted:   # guides selection only
                row = self._row(key, policy, predicted[key], 0.0, cached=False)
                scored.append(Scored(policy, row["metric"], row["objectives"], row["violation"], 0.0, False))
            else:   # unmeasured: ranked last, never stored, never on the front
                values = {name: UNMEASURED for name in ("metric", "size", "latency", "energy")}
                scored.append(Scored(policy, float("nan"), values, UNMEASURED, 0.0, False))
        self.progress.evaluations += sum(k in known or k in predicted for k in keys)
        self.progress.measured += measured_now
        self.progress.measured_now += measured_now
        self.progress.estimated += len(set(predicted))
        self.progress.cache_hits += len(from_cache)
        self.progress.repeats += len(set(keys)) - len(missing) - len(from_cache)
        return scored
