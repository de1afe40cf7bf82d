"""Multi-fidelity measurement: a quarter of the data first, the rest only for policies that could reach the front.

Racing with a confidence bound. Each new policy runs on an evenly spread subset of the evaluation data. From
the policies measured both ways so far, the full-data metric is predicted as the subset metric plus their mean
difference, with a margin of Z standard deviations of that difference. If even the optimistic prediction is
dominated by the front of full measurements (with the policy's size, latency and energy, which cost nothing to
compute), the rest of the data is skipped: the policy keeps its prediction, which guides selection, but it is
never stored as measured, never cached as a metric and never shown on the front. Otherwise the same session runs
the rest of the data, so a policy that goes on costs what a plain full pass costs.

Every decision uses only what was known when its generation started, so the result does not depend on the order
in which workers finish, and a resumed run decides as the uninterrupted one did.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBSET_SHARE = 0.25     # of the evaluation data, measured first
MIN_ROWS = 16           # smallest subset worth racing on
MIN_PAIRS = 8           # policies measured both ways before any is cut short
Z = 2.0                 # margin, in standard deviations of (full - subset)


def race_rows(data) -> np.ndarray | None:
    """The subset to race on, or None when the data is too small to split usefully."""
    count = max(MIN_ROWS, int(round(SUBSET_SHARE * data.size)))
    if data.size < 4 * MIN_ROWS:
        return None
    rows = data.subset_rows(count)
    return rows if len(rows) < data.size else None


@dataclass(frozen=True)
class Race:
    """What a worker needs to decide, after the subset, whether the policy deserves the rest of the data."""

    rows: np.ndarray          # indices of the subset
    fp32_metric: float
    shift: float              # mean of (full - subset) metric over policies measured both ways
    margin: float             # Z standard deviations of that difference
    front: np.ndarray         # objectives of the full-data front, metric first (as drops); may be empty
    costs: tuple[float, ...]  # this policy's other objectives, in the front's order
    learning: bool            # too few pairs yet: always measure everything

    def worth_full(self, subset_metric: float) -> bool:
        if self.learning or not len(self.front):
            return True
        optimistic = self.fp32_metric - (subset_metric + self.shift) - self.margin
        point = np.array([optimistic, *self.costs])
        dominated = np.all(self.front <= point, axis=1) & np.any(self.front < point, axis=1)
        return not bool(np.any(dominated))

    def predicted(self, subset_metric: float) -> float:
        return subset_metric + self.shift


def calibrate(pairs: list[tuple[float, float]]) -> tuple[float, float, bool]:
    """(shift, margin, learning) from (subset metric, full metric) pairs."""
    if len(pairs) < MIN_PAIRS:
        return 0.0, 0.0, True
    differences = np.array([full - subset for subset, full in pairs])
    return float(differences.mean()), Z * float(differences.std(ddof=1)), False


def subset_key(rows: np.ndarray, policy_key: str) -> str:
    """Cache key of a policy's subset metric."""
    return f"subset/{len(rows)}/{policy_key}"
