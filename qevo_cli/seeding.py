"""The initial population: uniform policies, a sensitivity path along the size axis, then random.

The uniform policies (every layer at the same formats, where the target offers them)
anchor the front's ends. The sensitivity path starts from the richest policy and
lowers, one layer at a time, the layer that loses the least metric per byte saved,
as AIMET's AMP walks its greedy path. Random policies fill the rest.
"""
from __future__ import annotations

import numpy as np

from .cost import layer_cost
from .genome import SearchSpace
from .profiles import Profile
from .sensitivity import SensitivityTable


def uniform_rows(space: SearchSpace) -> list[np.ndarray]:
    pairs = sorted({(c.weight, c.activation) for options in space.options for c in options},
                   key=lambda p: (p[0], p[1]))
    rows = []
    for weight, activation in pairs:
        rows.append(np.array([space.nearest(i, weight, activation) for i in space.genes], dtype=int))
    return rows


def sensitivity_path(space: SearchSpace, table: SensitivityTable | None, profile: Profile,
                     steps: int) -> list[np.ndarray]:
    """Up to `steps` policies from the greedy path, evenly spaced along it."""
    if table is None or not space.genes:
        return []
    current = space.upper.copy()   # the richest option of every layer
    path = [current.copy()]
    while True:
        best, best_score = None, np.inf
        for gene, layer_index in enumerate(space.genes):
            if current[gene] == 0:
                continue
            layer = space.layers[layer_index]
            options = space.options[layer_index]
            now, lower = options[current[gene]], options[current[gene] - 1]
            saved = (layer_cost(layer, now, profile).weight_bytes - layer_cost(layer, lower, profile).weight_bytes
                     + 1e-3)  # activation-only steps save no bytes but may save time: keep them last
            drop = table.drops.get(layer.name, {}).get(f"W:{lower.weight}", 0.0) if lower.weight != now.weight else 0.0
            score = max(drop, 0.0) / saved + (1.0 if saved < 1 else 0.0)
            if score < best_score:
                best, best_score = gene, score
        if best is None:
            break
        current[best] -= 1
        path.append(current.copy())
    if len(path) <= steps:
        return path
    picks = np.unique(np.linspace(0, len(path) - 1, steps).round().astype(int))
    return [path[i] for i in picks]


def initial_population(space: SearchSpace, pop_size: int, table: SensitivityTable | None, profile: Profile,
                       seed: int) -> np.ndarray:
    """`pop_size` distinct rows: uniform policies, the sensitivity path, then random."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    seen: set[tuple] = set()

    def add(row):
        key = tuple(int(v) for v in row)
        if key not in seen and len(rows) < pop_size:
            seen.add(key)
            rows.append(np.array(key, dtype=int))

    for row in uniform_rows(space):
        add(row)
    for row in sensitivity_path(space, table, profile, max(1, pop_size // 3)):
        add(row)
    attempts = 0
    while len(rows) < pop_size and attempts < 50 * pop_size:
        add(rng.integers(0, space.upper + 1))
        attempts += 1
    return np.array(rows, dtype=int).reshape(len(rows), space.n_var)
