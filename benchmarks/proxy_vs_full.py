"""The sensitivity proxy against the full table, per zoo model: rank correlation and time.

    python benchmarks/proxy_vs_full.py [NAMES] [--zoo zoo-data]
The full table runs the whole search split once per layer and format (weights int2/int4/int8 alone,
input activations int8 alone; `--full-columns` measures fewer on large models); the proxy probes a small subset (qevo_cli/proxy.py). Both start from an
empty cache. Reported: Spearman rank correlation over every (layer, format) cell, over weight cells only,
per format column (how well the proxy orders layers for one format), and over the cells the full table
resolves: those whose drop exceeds twice the spread of the int8 column, which is lossless up to
measurement noise (a one-sample change of accuracy), so that ties in noise are not scored as disorder.
Results go to docs/benchmarks/proxy_vs_full.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import ZOO_DIR, save_json  # noqa: E402

WEIGHTS = ("int2", "int4", "int8")
ACTIVATIONS = ("int8",)


def compare(folder: Path, threads: int, weights=WEIGHTS, activations=ACTIVATIONS) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-proxy-bench-")
    from qevo_cli.proxy import measure_proxy, spearman
    from qevo_cli.sensitivity import measure_sensitivity
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    workspace = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    evaluator = workspace.evaluator(threads=threads)
    start = time.perf_counter()
    proxy = measure_proxy(evaluator, WEIGHTS, ACTIVATIONS)   # the probes the search makes
    proxy_seconds = time.perf_counter() - start
    start = time.perf_counter()
    full = measure_sensitivity(evaluator, weights, activations, use_cache=False)
    full_seconds = time.perf_counter() - start
    layers = workspace.model.layers
    columns = [f"W:{f}" for f in weights] + [f"A:{f}" for f in activations]
    per_column, cells = {}, {"all": ([], []), "weights": ([], [])}
    for column in columns:
        predicted = proxy.column(layers, column)
        pairs = [(predicted[l.name], full.drops[l.name][column]) for l in layers if column in full.drops[l.name]]
        if len(pairs) > 2:
            per_column[column] = spearman(*zip(*pairs))
        for p, d in pairs:
            cells["all"][0].append(p)
            cells["all"][1].append(d)
            if column.startswith("W:"):
                cells["weights"][0].append(p)
                cells["weights"][1].append(d)
    # without an int8 column (a cut-down table), one sample of a 100-point metric stands in for the noise
    int8 = [full.drops[l.name]["W:int8"] for l in layers if "W:int8" in full.drops[l.name]]
    noise = float(np.std(int8)) if int8 else 100.0 / evaluator.data.size
    resolved = [(p, d) for p, d in zip(*cells["all"]) if abs(d) > 2 * noise]
    return {"model": info["name"], "noise": noise, "resolved_cells": len(resolved),
            "spearman_resolved": spearman(*zip(*resolved)) if len(resolved) > 2 else float("nan"), "layers": len(layers), "samples": evaluator.data.size,
            "proxy_subset": proxy.subset, "proxy_probes": proxy.probes, "proxy_seconds": round(proxy_seconds, 1),
            "full_passes": sum(len(r) for r in full.drops.values()), "full_seconds": round(full_seconds, 1),
            "spearman_all": spearman(*cells["all"]), "spearman_weights": spearman(*cells["weights"]),
            "spearman_per_column": per_column}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-columns", default="W:int2,W:int4,W:int8,A:int8",
                        help="columns of the full table to measure (fewer for large models)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
                        / "proxy_vs_full.json")
    parser.add_argument("--table", action="store_true", help="print a markdown table of the saved results")
    args = parser.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.table:
        print("| model | layers | proxy: probes on samples, seconds | full table: passes on samples, seconds | "
              "time ratio | Spearman, all cells | weight cells | resolved cells (count) | W2 | W4 | W8 | A8 |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in args.names or list(results):
            r = results[name]
            col = r["spearman_per_column"]
            print(f"| {name} | {r['layers']} | {r['proxy_probes']} on {r['proxy_subset']}, {r['proxy_seconds']} | "
                  f"{r['full_passes']} on {r['samples']}, {r['full_seconds']} | "
                  f"{r['full_seconds'] / max(r['proxy_seconds'], 1e-9):.0f}x | {r['spearman_all']:.2f} | "
                  f"{r['spearman_weights']:.2f} | {r.get('spearman_resolved', float('nan')):.2f} "
                  f"({r.get('resolved_cells', 0)}) | "
                  + " | ".join(f"{col.get(c, float('nan')):.2f}" for c in ("W:int2", "W:int4", "W:int8", "A:int8"))
                  + " |")
        return 0
    names = args.names or sorted(p.name for p in args.zoo.iterdir() if (p / "info.json").exists())
    for name in names:
        chosen = args.full_columns.split(",")
        row = compare(args.zoo / name, args.threads, tuple(c[2:] for c in chosen if c.startswith("W:")),
                      tuple(c[2:] for c in chosen if c.startswith("A:")))
        results[name] = row
        save_json(args.out, results)
        cols = "  ".join(f"{c} {v:.2f}" for c, v in row["spearman_per_column"].items())
        print(f"{name}: {row['layers']} layers; proxy {row['proxy_probes']} probes on {row['proxy_subset']} samples "
              f"in {row['proxy_seconds']} s; full {row['full_passes']} passes on {row['samples']} in "
              f"{row['full_seconds']} s; spearman all {row['spearman_all']:.2f}, weights "
              f"{row['spearman_weights']:.2f}, resolved {row['spearman_resolved']:.2f} over {row['resolved_cells']} "
              f"cells; {cols}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
