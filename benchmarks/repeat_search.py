"""Cache speed-up: the same search twice with one shared evaluation cache.

The first run measures every policy; the second finds each in the cache and only
re-costs it. Prints both wall times and their ratio.

    python benchmarks/repeat_search.py [--target hexagon] [--generations 30]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from qevo_cli.config import SearchConfig
from qevo_cli.search import run_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="hexagon")
    parser.add_argument("--generations", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["QEVO_CACHE_DIR"] = str(Path(tmp) / "cache")
        times, results = [], []
        for i in range(2):
            start = time.perf_counter()
            results.append(run_search(SearchConfig(target=args.target, generations=args.generations,
                                                   out=str(Path(tmp) / f"run{i}"))))
            times.append(time.perf_counter() - start)
    for i, (seconds, result) in enumerate(zip(times, results)):
        print(f"run {i + 1}: {seconds:6.2f} s, {result.progress.measured} measured, "
              f"{result.progress.cache_hits} from the cache, {result.progress.repeats} proposed again, "
              f"front {len(result.front.solutions)}")
    print(f"repeat is {times[0] / times[1]:.1f}x faster")


if __name__ == "__main__":
    main()
