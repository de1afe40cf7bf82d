"""Search quality on a space too large to enumerate: hypervolume at equal evaluations.

Space: the bundled model on arm-neon with every weight format the target runs (int2 ... int8, fp16),
int8 or int16 activations and per-channel or per-group-32 weights: about 10^10 policies. Objectives
metric drop and size; one fixed reference point (a 5-point drop, the size of uniform int8). qevo and
random search each get the same number of evaluations over 3 seeds; the greedy path and the ILP
(weight formats only, int8 activations; 240 size budgets) spend what they need. qevo's sensitivity probes
(on 32 of 899 samples each) count as whole evaluations, spent first; qevo runs without racing, whose
subset passes have no place on an evaluation axis (the time-based zoo benchmark measures it); each seed
starts from an empty cache.

    python benchmarks/large_space.py [--budget 400]
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from pymoo.indicators.hv import HV

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exact_front import Bench, finish, front_of, greedy_path, ilp_sweep  # noqa: E402
from qevo_cli.config import SearchConfig  # noqa: E402
from qevo_cli.genome import build_space  # noqa: E402
from qevo_cli.policy import LayerChoice, Policy  # noqa: E402
from qevo_cli.search import run_search  # noqa: E402

TARGET = "arm-neon"
SETTINGS = dict(target=TARGET, weight_formats=("int2", "int3", "int4", "int5", "int6", "int8", "fp16"),
                act_formats=("int8", "int16"), granularity=("per-channel", "per-group-32"),
                objectives=("metric", "size"))
SEEDS = (0, 1, 2)


def trajectory(F: np.ndarray, indicator: HV, step: int = 20) -> list[tuple[int, float]]:
    """Hypervolume of the front of the first n evaluations, every `step` evaluations."""
    return [(n, indicator(front_of(F[:n]))) for n in range(step, len(F) + 1, step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks",
                        help="folder for the plot")
    args = parser.parse_args()
    bench = Bench()
    space = build_space(bench.model.layers, bench.profile, SearchConfig(**SETTINGS).allowed())
    all_int8 = bench.objectives(Policy({l.name: LayerChoice(weight="int8", activation="int8")
                                        for l in bench.model.layers}))
    indicator = HV(ref_point=np.array([5.0, all_int8[1]]))
    print(f"space {space.size:.3g} policies; budget {args.budget} evaluations; reference point: drop 5 points, "
          f"size {all_int8[1] * 1e3:.3f} kB (uniform int8)")
    results: dict[str, list[tuple[float, int, list]]] = {"qevo": [], "random": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in SEEDS:
            os.environ["QEVO_CACHE_DIR"] = str(Path(tmp) / f"cache-{seed}")
            # probes: weights at int4, activations at int8, then int2 and int3 below the probe, for 7 layers
            probes = len(bench.model.layers) * 4
            run = run_search(SearchConfig(**SETTINGS, pop=32, generations=1000, seed=seed, racing=False,
                                          evaluations=args.budget - probes - 2,
                                          out=str(Path(tmp) / f"qevo-{seed}")))
            assert run.progress.probes == probes, run.progress.probes
            with sqlite3.connect(run.run_dir / "evaluations.sqlite") as db:
                rows = db.execute("SELECT objectives FROM evaluation ORDER BY id").fetchall()
            F = np.array([[json.loads(r[0])[n] for n in ("metric", "size")] for r in rows])
            spent = probes   # the probes come before any policy is measured
            curve = [(n + spent, hv) for n, hv in trajectory(F, indicator, step=1)]
            # pymoo finishes the generation that passes the limit: score qevo at the budget, no later
            curve = [(n, hv) for n, hv in curve if n <= args.budget]
            results["qevo"].append((curve[-1][1], curve[-1][0], curve))
            rng = np.random.default_rng(seed)
            X = rng.integers(0, space.upper + 1, size=(args.budget, space.n_var))
            F = np.array([bench.objectives(space.decode(x)) for x in X])
            curve = trajectory(F, indicator, step=1)
            results["random"].append((curve[-1][1], args.budget, curve))
    greedy_F, greedy_used = greedy_path(bench, args.budget)
    ilp_F, ilp_used = ilp_sweep(bench, args.budget)
    lines = ["| method | evaluations | hypervolume median | worst |", "|---|---:|---:|---:|"]
    for name, runs in results.items():
        hvs = [hv for hv, _, _ in runs]
        lines.append(f"| {name} | {max(n for _, n, _ in runs)} | {statistics.median(hvs):.3e} | {min(hvs):.3e} |")
    lines.append(f"| greedy sensitivity path (AMP-like) | {greedy_used} | {indicator(front_of(greedy_F)):.3e} | |")
    lines.append(f"| ILP on additive sensitivity (HAWQ-V3-like) | {ilp_used} | {indicator(front_of(ilp_F)):.3e} | |")
    print("\n".join(lines))
    plot(results, args.out / "large_space.png")


def plot(results, path: Path) -> None:
    """Hypervolume against evaluations, each seed of qevo and random search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for color, (name, runs) in zip(("C0", "C1"), results.items()):
        for i, (_, _, curve) in enumerate(runs):
            ax.plot([n for n, _ in curve], [hv for _, hv in curve], color=color, alpha=0.8,
                    label=name if i == 0 else None)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (drop <= 5 points, size <= int8)")
    ax.set_title("digits CNN on arm-neon, 6.1e9 policies")
    finish(figure, ax, path)


if __name__ == "__main__":
    main()
