"""Search quality against the exact front of a space small enough to enumerate.

Space: the bundled model on arm-neon, every layer at int2, int4 or int8 weights with int8
activations (3^7 = 2187 policies), objectives metric drop and size. Every policy is
measured once (cached), which gives the exact Pareto front. Then, each with at most 15% of
the space in evaluations and one fixed hypervolume reference point:
    qevo        NSGA-II with qevo's seeding, 5 seeds
    random      uniform random policies, 5 seeds
    greedy      AIMET AMP's manner: per-layer sensitivity, then lower the least sensitive
                layer per byte saved, step by step from all-int8, measuring each step
    ilp         HAWQ-V3's manner: an integer linear program (scipy milp) on the additive
                sensitivity table, swept over 240 size budgets, each distinct solution measured
Every measurement counts toward a method's evaluations: the greedy path's and the ILP's sensitivity table
(one full pass per layer and format), and qevo's sensitivity probes (each on 32 of the 899 samples, yet
counted as a whole evaluation), its two references, and every policy racing cut short after a quarter of
the data (also counted whole). Each qevo seed starts from an empty cache.

    python benchmarks/exact_front.py [--out docs/benchmarks]
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from scipy.optimize import Bounds, LinearConstraint, milp

from qevo_cli.config import SearchConfig
from qevo_cli.cost import layer_cost
from qevo_cli.genome import build_space
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.problem import Costing
from qevo_cli.profiles import load_profile
from qevo_cli.search import run_search
from qevo_cli.sensitivity import measure_sensitivity
from qevo_cli.workspace import open_workspace

TARGET = "arm-neon"
FORMATS = ("int2", "int4", "int8")
OBJECTIVES = ("metric", "size")
SEEDS = (0, 1, 2, 3, 4)


class Bench:
    def __init__(self):
        workspace = open_workspace()
        self.evaluator = workspace.evaluator()
        self.model = workspace.model
        self.profile = load_profile(TARGET)
        settings = SearchConfig(target=TARGET, weight_formats=FORMATS, act_formats=("int8",),
                                objectives=OBJECTIVES)
        self.space = build_space(self.model.layers, self.profile, settings.allowed())
        self.costing = Costing(self.space, self.profile, self.model.other_bytes, self.evaluator.fp32_score,
                               OBJECTIVES, {})
        self.scores: dict[str, float] = {}

    def objectives(self, policy: Policy) -> np.ndarray:
        key = policy.key()
        if key not in self.scores:
            self.scores[key] = self.evaluator.evaluate(policy)
        values = self.costing.values(policy, self.scores[key])
        return np.array([values[name] for name in OBJECTIVES])

    def all_policies(self) -> list[Policy]:
        grids = itertools.product(*[range(u + 1) for u in self.space.upper])
        return [self.space.decode(np.array(x)) for x in grids]


def front_of(F: np.ndarray) -> np.ndarray:
    return F[NonDominatedSorting().do(F, only_non_dominated_front=True)]


def sensitivity(bench: Bench):
    table = measure_sensitivity(bench.evaluator, weight_formats=FORMATS[:-1], activation_formats=())
    return table, len(bench.model.layers) * (len(FORMATS) - 1)


def greedy_path(bench: Bench, budget: int) -> tuple[np.ndarray, int]:
    """AMP's manner: from all-int8, lower the layer with the least sensitivity per byte saved."""
    table, used = sensitivity(bench)
    layers = bench.model.layers
    current = {layer.name: "int8" for layer in layers}
    points = []
    while used < budget:
        policy = Policy({name: LayerChoice(weight=w, activation="int8") for name, w in current.items()})
        points.append(bench.objectives(policy))
        used += 1
        best, best_score = None, np.inf
        for layer in layers:
            index = FORMATS.index(current[layer.name])
            if index == 0:
                continue
            lower = FORMATS[index - 1]
            saved = (layer_cost(layer, LayerChoice(weight=current[layer.name]), bench.profile).weight_bytes
                     - layer_cost(layer, LayerChoice(weight=lower), bench.profile).weight_bytes)
            score = max(table.drops[layer.name][f"W:{lower}"], 0.0) / max(saved, 1)
            if score < best_score:
                best, best_score = (layer.name, lower), score
        if best is None:
            break
        current[best[0]] = best[1]
    return np.array(points), used


def ilp_sweep(bench: Bench, budget: int, steps: int = 240) -> tuple[np.ndarray, int]:
    """HAWQ-V3's manner: minimise the summed sensitivity under a size budget, for a sweep of budgets."""
    table, used = sensitivity(bench)
    layers = bench.model.layers
    n_layers, n_formats = len(layers), len(FORMATS)
    drop = np.array([[max(table.drops[l.name].get(f"W:{f}", 0.0), 0.0) for f in FORMATS] for l in layers])
    size = np.array([[layer_cost(l, LayerChoice(weight=f), bench.profile).weight_bytes for f in FORMATS]
                     for l in layers], dtype=float)
    one_each = np.zeros((n_layers, n_layers * n_formats))
    for i in range(n_layers):
        one_each[i, i * n_formats:(i + 1) * n_formats] = 1
    seen, points = set(), []
    for limit in np.linspace(size.min(axis=1).sum(), size.max(axis=1).sum(), steps):
        result = milp(c=drop.ravel() + 1e-9 * size.ravel(), integrality=np.ones(drop.size),
                      bounds=Bounds(0, 1),
                      constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(size.ravel()[None], 0, limit)])
        if result.x is None:
            continue
        picks = tuple(int(np.argmax(result.x[i * n_formats:(i + 1) * n_formats])) for i in range(n_layers))
        if picks in seen or used >= budget:
            continue
        seen.add(picks)
        policy = Policy({l.name: LayerChoice(weight=FORMATS[p], activation="int8") for l, p in zip(layers, picks)})
        points.append(bench.objectives(policy))
        used += 1
    return np.array(points), used


def random_search(bench: Bench, policies: list[Policy], budget: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(policies), size=budget, replace=False)
    return np.array([bench.objectives(policies[i]) for i in chosen])


def qevo_search(budget: int, seed: int, root: Path, racing: bool = True) -> tuple[np.ndarray, int]:
    os.environ["QEVO_CACHE_DIR"] = str(root / f"cache-{seed}-{racing}")   # each run measures everything itself
    probes = 7 * 2   # weights at int4 and at int2 below it; one activation format, so no activation probe
    result = run_search(SearchConfig(target=TARGET, weight_formats=FORMATS, act_formats=("int8",),
                                     objectives=OBJECTIVES, pop=24, generations=1000, seed=seed,
                                     evaluations=budget - probes - 2, racing=racing,
                                     out=str(root / f"qevo-{seed}-{racing}")))
    assert result.progress.probes == probes, result.progress.probes
    import json
    import sqlite3
    with sqlite3.connect(result.run_dir / "evaluations.sqlite") as db:
        rows = db.execute("SELECT objectives FROM evaluation ORDER BY id").fetchall()
    # pymoo finishes the generation that crosses the limit; racing's cut-short policies are not stored but
    # count: keep the stored rows in order up to the budget less everything else spent
    spent_elsewhere = probes + result.progress.estimated
    rows = rows[:max(0, budget - spent_elsewhere)]
    F = np.array([[json.loads(r[0])[name] for name in OBJECTIVES] for r in rows])
    return F, spent_elsewhere + len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks",
                        help="folder for the plot")
    parser.add_argument("--budget", type=float, default=0.15)
    args = parser.parse_args()
    bench = Bench()
    policies = bench.all_policies()
    start = time.perf_counter()
    exact = np.array([bench.objectives(p) for p in policies])
    enumerate_s = time.perf_counter() - start
    exact_front = front_of(exact)
    # Two fixed reference points, the same for every method: the whole front (its nadir plus 10%), and
    # the region a user deploys from (at most a 5-point drop, at most the size of uniform int8).
    all_int8 = bench.objectives(Policy({l.name: LayerChoice(weight="int8", activation="int8")
                                        for l in bench.model.layers}))
    references = {"whole front": exact_front.max(axis=0) * 1.1,
                  "drop <= 5, size <= int8": np.array([5.0, all_int8[1]])}
    budget = int(args.budget * len(policies))
    print(f"space {len(policies)} policies, enumerated in {enumerate_s:.0f} s; exact front {len(exact_front)} points; "
          f"budget {budget} evaluations ({args.budget:.0%})")
    fronts: dict[str, list[tuple[np.ndarray, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fronts["qevo (NSGA-II, seeded)"] = [qevo_search(budget, seed, Path(tmp)) for seed in SEEDS]
        fronts["qevo, --no-racing"] = [qevo_search(budget, seed, Path(tmp), racing=False) for seed in SEEDS]
    fronts["random search"] = [(random_search(bench, policies, budget, seed), budget) for seed in SEEDS]
    fronts["greedy sensitivity path (AMP-like)"] = [greedy_path(bench, budget)]
    fronts["ILP on additive sensitivity (HAWQ-V3-like)"] = [ilp_sweep(bench, budget)]
    header = "| method | evaluations |" + "".join(f" HV ratio, {name}: median / worst |" for name in references)
    lines = [header, "|---|---:|" + "---:|" * len(references)]
    for method, runs in fronts.items():
        cells = []
        for reference in references.values():
            indicator = HV(ref_point=reference)
            exact_hv = indicator(exact_front)
            ratios = [indicator(front_of(F)) / exact_hv for F, _ in runs]
            cells.append(f" {statistics.median(ratios):.4f} / {min(ratios):.4f} |")
        lines.append(f"| {method} | {max(n for _, n in runs)} |" + "".join(cells))
    for name, reference in references.items():
        lines.append(f"\nreference point '{name}': drop {reference[0]:.3f} points, size {reference[1] * 1e3:.3f} kB")
    print("\n".join(lines))
    plot(exact, exact_front, fronts, references["drop <= 5, size <= int8"], args.out / "exact_front.png")


def plot(exact: np.ndarray, exact_front: np.ndarray, fronts, region: np.ndarray, path: Path) -> None:
    """Every policy, the exact front and each method's front (first seed), in the deployable region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(exact[:, 1] * 1e3, exact[:, 0], s=6, color="#cccccc", label="every policy (2187)")
    order = np.argsort(exact_front[:, 1])
    ax.step(exact_front[order, 1] * 1e3, exact_front[order, 0], where="post", color="black", label="exact front")
    for (name, runs), marker in zip(fronts.items(), ("o", "D", "x", "s", "^")):
        F = front_of(runs[0][0])
        ax.scatter(F[:, 1] * 1e3, F[:, 0], marker=marker, s=40, facecolors="none" if marker in "os^" else None,
                   edgecolors=None if marker == "x" else "C" + str(list(fronts).index(name)),
                   color="C" + str(list(fronts).index(name)), label=name)
    ax.set_xlim(exact[:, 1].min() * 1e3 * 0.98, region[1] * 1e3)
    ax.set_ylim(-0.5, region[0])
    ax.set_xlabel("size (kB)")
    ax.set_ylabel("accuracy drop (points)")
    ax.set_title("digits CNN on arm-neon, int2/int4/int8 weights: fronts at 15% of the space")
    finish(figure, ax, path, legend_size=8)


def finish(figure, ax, path: Path, legend_size: int = 10) -> None:
    """Grid, legend, and the PNG written where the docs expect it."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
