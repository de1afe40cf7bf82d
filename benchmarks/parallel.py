"""Parallel speed-up: the same search serially and with --workers 2, each measuring afresh.

Both runs use the same seed and an empty evaluation cache of their own, so both measure
the same policies; the ratio of their wall times is the speed-up (including the time
the worker processes take to start and open the model).

    python benchmarks/parallel.py [--target hexagon] [--pop 32] [--generations 10] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from qevo_cli.config import SearchConfig
from qevo_cli.search import run_search


def timed(settings: dict, workers: int, root: Path) -> tuple[float, int, set]:
    os.environ["QEVO_CACHE_DIR"] = str(root / f"cache-{workers}")
    start = time.perf_counter()
    result = run_search(SearchConfig(out=str(root / f"run-{workers}"), workers=workers, **settings))
    seconds = time.perf_counter() - start
    front = {str(s.policy.to_dict()) for s in result.front.solutions}
    return seconds, result.progress.measured, front


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="hexagon")
    parser.add_argument("--pop", type=int, default=32)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per evaluation")
    args = parser.parse_args()
    settings = dict(target=args.target, pop=args.pop, generations=args.generations, seed=0, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        serial_s, serial_n, serial_front = timed(settings, 1, root)
        parallel_s, parallel_n, parallel_front = timed(settings, args.workers, root)
    print(f"serial:     {serial_s:6.1f} s for {serial_n} measured policies ({serial_n / serial_s:.1f}/s)")
    print(f"workers {args.workers}:  {parallel_s:6.1f} s for {parallel_n} measured policies ({parallel_n / parallel_s:.1f}/s)")
    print(f"speed-up {serial_s / parallel_s:.2f}x; same front: {serial_front == parallel_front}")


if __name__ == "__main__":
    main()
