"""Where the time of a search goes: `qevo search --target hexagon` on the bundled model, profiled.

Runs the default search once with an empty cache under cProfile and splits its wall time into
evaluation (building variants, creating sessions, running them, scoring), the sensitivity table,
costing, pymoo's own work, and the run store (SQLite, front.json, checkpoints).

    python benchmarks/search_profile.py [--generations 30]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from qevo_cli.config import SearchConfig
from qevo_cli.search import run_search

# (label, file suffix, function name): cumulative time of each
PARTS = [
    ("evaluation: build the variant (quantized weights, Q/DQ nodes)", "qevo_cli/evaluate.py", "variant"),
    ("evaluation: serialise the variant", "qevo_cli/evaluate.py", "outputs"),
    ("evaluation: create onnxruntime sessions", "onnxruntime_inference_collection.py", "_create_inference_session"),
    ("evaluation: run the sessions", "qevo_cli/evaluate.py", "run_session"),
    ("evaluation: score the outputs", "qevo_cli/metrics.py", "__call__"),
    ("sensitivity proxy (part of evaluation above)", "qevo_cli/proxy.py", "measure_proxy"),
    ("costing policies on the target", "qevo_cli/problem.py", "values"),
    ("run store: record evaluations", "qevo_cli/store.py", "record"),
    ("run store: rebuild and write front.json", "qevo_cli/search.py", "_write_front"),
    ("run store: checkpoint", "qevo_cli/store.py", "save_checkpoint"),
    ("pymoo: one generation, evaluation included", "pymoo/core/algorithm.py", "next"),
    ("pymoo: evaluating a population (qevo's measure)", "qevo_cli/problem.py", "_evaluate"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["QEVO_CACHE_DIR"] = str(Path(tmp) / "cache")
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        result = run_search(SearchConfig(target="hexagon", generations=args.generations, out=str(Path(tmp) / "run")))
        profiler.disable()
        wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    cumulative = {}
    for (filename, _, name), (_, _, _, cum, _) in stats.items():
        for label, suffix, function in PARTS:
            if filename.endswith(suffix) and name == function:
                cumulative[label] = cumulative.get(label, 0.0) + cum
    serialise = cumulative.get(PARTS[1][0], 0.0) - sum(cumulative.get(PARTS[i][0], 0.0) for i in (0, 2, 3))
    cumulative[PARTS[1][0]] = max(serialise, 0.0)   # outputs() minus what it calls and is listed already
    pymoo_own = cumulative.get(PARTS[-2][0], 0.0) - cumulative.get(PARTS[-1][0], 0.0)
    print(f"search: {wall:.1f} s wall under the profiler, {result.progress.measured} policies measured, "
          f"front {len(result.front.solutions)}")
    print("| part | seconds | share of wall time |\n|---|---:|---:|")
    for label, _, _ in PARTS[:-2]:
        seconds = cumulative.get(label, 0.0)
        print(f"| {label} | {seconds:.2f} | {seconds / wall:.0%} |")
    print(f"| pymoo's own work (selection, mating, survival) | {pymoo_own:.2f} | {pymoo_own / wall:.0%} |")


if __name__ == "__main__":
    main()
