"""The initial population: an ILP over the sensitivity proxy swept across the budget range, the greedy path,
then random policies to fill.

The ILP (HAWQ-V3's recipe) picks, for each of many budgets on the
first cost objective (size by default) spread evenly from the smallest policy to the largest one the budgets
allow, the mix with the least predicted distortion; the proxy's costs add up over layers. The greedy path
starts from the richest policy and lowers, one layer at a time, the layer that loses the least per unit saved,
as AIMET's AMP walks its path. So the first generation already covers the feasible region from its smallest
policy to the budget, instead of NSGA-II finding that region by chance.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from .cost import glue_bytes, layer_cost, tensor_node_bytes
from .genome import SearchSpace
from .profiles import Profile
from .structure import scaled_layers

ILP_BUDGETS = 240
# A distortion of 1 is an output as far from the reference as all zeros: beyond it a choice is simply
# unusable, and a larger number (a probe that made the output infinite) must not drown every other ranking.
SCORE_CAP = 1.0
ILP_SHARE = 2   # the first generation measures up to this many populations' worth of ILP solutions
COST_AXES = {"size": "weight_bytes", "latency": "latency_s", "energy": "energy_j"}
UNITS = {"size": 1e-6, "latency": 1e3, "energy": 1e3}   # bytes -> MB, s -> ms, J -> mJ, as the objectives

GeneScore = Callable[[int, int], float]   # (gene, option index) -> predicted distortion


def gene_score(space: SearchSpace, table) -> GeneScore:
    """Predicted distortion of gene `g` at option `k`, from the sensitivity proxy's `table` (proxy.py)."""
    layer_genes = len(space.genes)

    def score(g: int, k: int) -> float:
        if g < layer_genes:
            i = space.genes[g]
            return table.cost(space.layers[i], space.options[i][k])
        if g >= space.first_prune_gene:
            p = g - space.first_prune_gene
            return table.prune_cost(space.prune.groups[p], space.prune.options[p][k])
        t = space.tensors.genes[g - layer_genes]
        return table.tensor_cost(space.tensors.names[t], space.tensors.options[t][k])
    return score


def uniform_rows(space: SearchSpace) -> list[np.ndarray]:
    """Every layer at one weight format, activations at the fewest bits offered (the front's ends)."""
    activations = {c.activation for options in space.options for c in options}
    fewest = min(activations, key=lambda a: (0 if a.startswith("int") else 1, a)) if activations else "int8"
    weights = sorted({c.weight for options in space.options for c in options})
    tensors = space.tensor_row(fewest)
    unpruned = [len(options) - 1 for options in space.prune.options]
    return [np.array([space.nearest(i, weight, fewest) for i in space.genes] + tensors + unpruned, dtype=int)
            for weight in weights]


def structure_rows(space: SearchSpace) -> list[np.ndarray]:
    """The richest option of every layer with every channel group pruned by one share, for each share offered
    (a group whose shares collapse takes the largest of its own at most that share): the ends of the structure
    axis, as uniform_rows are those of the formats."""
    first = space.first_prune_gene
    rows = []
    for share in sorted({s for options in space.prune.options for s in options if s}, reverse=True):
        row = space.upper.copy()
        for g, options in enumerate(space.prune.options):
            row[first + g] = options.index(max(s for s in options if s <= share))
        rows.append(row)
    return rows


def option_costs(space: SearchSpace, profile: Profile, axis: str) -> list[np.ndarray]:
    """Per gene, the cost of each option along one objective axis, in the objective's own unit. A tensor's
    cost holds what the other ops move in it and what the layers reading it pay beyond its cheapest format
    (their weights at the richest option), so the costs of genes add up."""
    field, scale = COST_AXES[axis], UNITS[axis]
    costs = [np.array([getattr(layer_cost(space.layers[i], option, profile), field) * scale
                       for option in space.options[i]]) for i in space.genes]
    tensors = space.tensors
    readers: dict[int, list[int]] = {}
    for i, read in enumerate(tensors.reads):
        for t in read:
            readers.setdefault(t, []).append(i)
    for root in tensors.genes:
        row = []
        for fmt in tensors.options[root]:
            value = 0.0
            for t in tensors.members(root):
                value += _tensor_cost(tensors.glue[t], fmt, profile, axis)
                if axis == "size":
                    continue
                for i in readers.get(t, ()):
                    richest = space.options[i][-1]
                    value += getattr(layer_cost(space.layers[i], replace(richest, activation=fmt), profile), field) \
                        - getattr(layer_cost(space.layers[i], richest, profile), field)
            row.append(value * scale)
        costs.append(np.array(row))
    costs.extend(prune_costs(space, profile, axis))
    return costs


def prune_costs(space: SearchSpace, profile: Profile, axis: str) -> list[np.ndarray]:
    """Per channel group, what each share saves along `axis` on the layers it shrinks (negative: a saving), with
    those layers at their richest option, so that the costs of genes add up."""
    field, scale = COST_AXES[axis], UNITS[axis]
    index = {layer.name: i for i, layer in enumerate(space.layers)}
    costs = []
    for group, options in zip(space.prune.groups, space.prune.options):
        touched = [index[name] for name in dict.fromkeys(group.producers + group.readers + group.depthwise)]
        layers = [space.layers[i] for i in touched]
        richest = [space.options[i][-1] for i in touched]
        before = sum(getattr(layer_cost(layer, choice, profile), field) for layer, choice in zip(layers, richest))
        row = []
        for share in options:
            shrunk = scaled_layers(layers, [group], {name: share for name in group.producers})
            row.append((sum(getattr(layer_cost(layer, choice, profile), field)
                            for layer, choice in zip(shrunk, richest)) - before) * scale)
        costs.append(np.array(row))
    return costs


def ilp_sweep(space: SearchSpace, score: GeneScore, profile: Profile, axis: str = "size",
              limits: dict[str, float] | None = None, budgets: int = ILP_BUDGETS,
              deadline: float | None = None) -> list[np.ndarray]:
    """Distinct policies minimising the summed proxy under `budgets` evenly spaced limits on `axis`
    (between the smallest policy and the largest the `limits` allow), every other limit held as a constraint.
    `limits` maps objective names ("size", "latency", "energy") to budgets in the objectives' units.
    The budgets are solved coarse to fine, so a sweep cut short by `deadline` (time.perf_counter()) still
    spans the range; the rows come back ordered along `axis`."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    if not space.n_var:
        return []
    sizes = [int(u) + 1 for u in space.upper]
    n = sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])
    objective = np.concatenate([[min(max(score(gene, k), 0.0), SCORE_CAP) for k in range(size)]
                                for gene, size in enumerate(sizes)])
    objective = objective / max(float(objective.max()), 1e-30) + 1e-9   # scaled; ties broken toward fewer bits
    one_each = np.zeros((len(sizes), n))
    for gene, (start, size) in enumerate(zip(starts, sizes)):
        one_each[gene, start:start + size] = 1
    constraints = [LinearConstraint(one_each, 1, 1)]
    limits = dict(limits or {})
    for other in COST_AXES:
        if other != axis and other in limits:
            constraints.append(LinearConstraint(np.concatenate(option_costs(space, profile, other)), -np.inf,
                                                limits[other] - _fixed(space, profile, other)))
    along = np.concatenate(option_costs(space, profile, axis))
    fixed = _fixed(space, profile, axis)
    low = sum(float(c.min()) for c in option_costs(space, profile, axis))
    high = sum(float(c.max()) for c in option_costs(space, profile, axis))
    if axis in limits:
        high = min(high, limits[axis] - fixed)
    if high < low:
        return []
    found: dict[tuple, float] = {}
    for limit in coarse_to_fine(list(np.linspace(low, high, budgets))):
        if deadline is not None and time.perf_counter() >= deadline and found:
            break
        with _silent_solver():
            result = milp(objective, constraints=[*constraints, LinearConstraint(along, -np.inf, limit + 1e-12)],
                          integrality=np.ones(n), bounds=Bounds(0, 1), options={"time_limit": 2.0})
        if result.x is None:
            continue
        row = np.array([int(np.argmax(result.x[s:s + k])) for s, k in zip(starts, sizes)], dtype=int)
        found.setdefault(tuple(row), float(along @ result.x))
    return [np.array(key, dtype=int) for key, _ in sorted(found.items(), key=lambda item: item[1])]


@contextlib.contextmanager
def _silent_solver():
    """HiGHS prints a debug line from C++ straight to the process's stdout whatever its options say."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = os.dup(1)
    except OSError:   # no real file descriptor (an embedding host): nothing to hide
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _fixed(space: SearchSpace, profile: Profile, axis: str) -> float:
    """Cost of the layers and tensors without a gene (a single option each)."""
    field, scale = COST_AXES[axis], UNITS[axis]
    graph = profile.per_graph_s * scale if axis == "latency" else 0.0
    tensors = space.tensors
    glue = sum(_tensor_cost(tensors.glue[t], tensors.options[t][0], profile, axis)
               for t in range(len(tensors.names)) if tensors.follows[t] not in tensors.genes)
    return graph + glue * scale + sum(getattr(layer_cost(space.layers[i], space.options[i][0], profile), field) * scale
                                      for i in range(len(space.layers)) if i not in space.genes)


def _tensor_cost(glue_elements: int, fmt: str, profile: Profile, axis: str) -> float:
    """One tensor's own cost at `fmt` along `axis`, in bytes, seconds or joules: the nodes the file adds for
    it (size), or what the ops other than the layers move in it (latency, energy)."""
    if axis == "size":
        return tensor_node_bytes(fmt)
    moved = glue_bytes(glue_elements, fmt, profile)
    return moved / profile.bandwidth if axis == "latency" else moved * profile.joules_per_byte


def greedy_path(space: SearchSpace, score: GeneScore | None, profile: Profile, steps: int) -> list[np.ndarray]:
    """Up to `steps` policies from the greedy path, evenly spaced along it."""
    if score is None or not space.n_var:
        return []
    sizes = [costs / UNITS["size"] for costs in option_costs(space, profile, "size")]   # bytes
    current = space.upper.copy()   # the richest option of every gene
    path = [current.copy()]
    while True:
        best, best_score = None, np.inf
        for gene in range(space.n_var):
            if current[gene] == 0:
                continue
            # activation-only steps save no bytes but may save time: keep them last
            saved = sizes[gene][current[gene]] - sizes[gene][current[gene] - 1] + 1e-3
            added = min(score(gene, current[gene] - 1), SCORE_CAP) - min(score(gene, current[gene]), SCORE_CAP)
            value = max(added, 0.0) / saved + (1.0 if saved < 1 else 0.0)
            if value < best_score:
                best, best_score = gene, value
        if best is None:
            break
        current[best] -= 1
        path.append(current.copy())
    if len(path) <= steps:
        return path
    picks = np.unique(np.linspace(0, len(path) - 1, steps).round().astype(int))
    return [path[i] for i in picks]


def spread(rows: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`count` of the rows, evenly spaced along their order (the sweep runs from small to large)."""
    if len(rows) <= count:
        return rows
    return [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, count).round().astype(int))]


def coarse_to_fine(rows: list[np.ndarray]) -> list[np.ndarray]:
    """Both ends, the middle, the quarters...: every prefix of the order spans the whole list."""
    order, seen, step = [], set(), max(1, len(rows))
    while step >= 1 and rows:
        for i in [*range(0, len(rows), step), len(rows) - 1]:
            if i not in seen:
                seen.add(i)
                order.append(i)
        step //= 2
    return [rows[i] for i in order]


def initial_population(space: SearchSpace, pop_size: int, score: GeneScore | None, profile: Profile,
                       seed: int, axis: str = "size", limits: dict[str, float] | None = None,
                       deadline: float | None = None) -> np.ndarray:
    """Distinct rows to measure first: every distinct ILP solution (up to ILP_SHARE x pop_size, coarse to fine;
    the first generation may so be larger than the population, which the first survival trims), the uniformly
    pruned structures at the richest formats, the greedy path, then random rows to fill `pop_size`. Without a
    proxy: uniform policies, then random."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    seen: set[tuple] = set()

    def add(row, limit):
        key = tuple(int(v) for v in row)
        if key not in seen and len(rows) < limit:
            seen.add(key)
            rows.append(np.array(key, dtype=int))

    # measured in this order: under a time limit the first generation may not finish, so the ILP's spread of
    # the budget range comes first, coarse to fine, then the greedy path; uniform policies only without a proxy
    # (the ILP's ends are the uniform extremes, and uniform low bits are the first thing a real model rejects)
    if score is not None:
        ilp = ilp_sweep(space, score, profile, axis, limits, deadline=deadline)
        for row in coarse_to_fine(spread(ilp, ILP_SHARE * pop_size)):
            add(row, ILP_SHARE * pop_size)
    else:
        for row in uniform_rows(space):
            add(row, pop_size)
    for row in structure_rows(space):
        add(row, max(pop_size, len(rows) + 1))
    for row in greedy_path(space, score, profile, max(1, pop_size // 4)):
        add(row, max(pop_size, len(rows) + pop_size // 4))
    attempts = 0
    while len(rows) < pop_size and attempts < 50 * pop_size:
        add(rng.integers(0, space.upper + 1), pop_size)
        attempts += 1
    return np.array(rows, dtype=int).reshape(len(rows), space.n_var)
