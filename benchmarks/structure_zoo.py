"""Precision only against precision plus structure, each searched for the same time on the zoo's CNN models,
with latency as an objective.

    python benchmarks/structure_zoo.py orientation ppocr-cls --target nvidia-trt --time-limit 300
    python benchmarks/structure_zoo.py orientation ppocr-cls --target host --time-limit 300

Both arms run `run_search` one after the other in this process (nothing else on the cores for --target host,
whose latency is timed on this machine), each with an empty cache, the same seed, the same time limit, the
objectives metric and latency, and the same choices per layer: weights int4, int8, fp16 or fp32, activations
int8, fp16 or fp32, rounding nearest (and gptq on nvidia-trt, which 2:4 sparsity needs to keep accuracy),
the model's counting dims from its info.json, and on nvidia-trt a batch of GPU_BATCH (at batch 1 the profile's
per-kernel overhead is nearly all of a small CNN's latency, and no choice moves it).
The structure arm adds --prune 0.25,0.5, and --sparsity 2:4 where the target runs it faster (nvidia-trt).
Each arm's front (its references, fp32 and uniform W8A8, included: they are policies of both spaces) is
scored by hypervolume over (drop / fp32 metric, latency / the arm's own fp32 latency), reference point (0.1, 1.1): only
policies within 10% of the fp32 metric and at most 10% slower than fp32 count. Every front policy is measured
again on the test split, and the hypervolume given on both splits.
The pick of each arm is its fastest front policy within one point of the fp32 metric on the search split; on
the host both picks are timed again, interleaved, REPEATS times each, and the ratio of their medians is
reported. The structure arm's pick is exported (stored weights, pruned shapes), loaded in plain onnxruntime
and measured on the search split against what the search measured.
Results go to docs/benchmarks/structure_zoo_<target>.json.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.common import ZOO_DIR, save_json  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
REPEATS = 7
GPU_BATCH = 32
WITHIN = 1.0   # points of the metric


def search(folder: Path, target: str, limit: float, structure: bool, out: Path) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-structure-")
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import run_search

    info = json.loads((folder / "info.json").read_text())
    sparse = target == "nvidia-trt"
    dims = dict(info.get("dims", {}))
    if sparse:   # a GPU serves batches: at batch 1 the profile's per-kernel overhead is nearly all of its latency
        dims[batch_dim(folder)] = GPU_BATCH
    config = SearchConfig(dims=dims, model=str(folder / "model.onnx"), data=str(folder / "search.npz"),
                          calib=str(folder / "calib.npz"), metric=info["metric"], target=target,
                          objectives=("metric", "latency"), time_limit=limit, generations=100000, seed=0, threads=1,
                          weight_formats=("int4", "int8", "fp16", "fp32"), act_formats=("int8", "fp16", "fp32"),
                          rounding=("nearest", "gptq") if sparse else ("nearest",),
                          prune=("0.25", "0.5") if structure else ("0",),
                          sparsity=("2:4",) if structure and sparse else ("dense",), out=str(out))
    started = time.perf_counter()
    result = run_search(config)
    seconds = time.perf_counter() - started
    front = result.front
    points = [{"id": s.id, "name": s.name, "metric": s.metric, "latency_ms": s.objectives["latency"],
               "policy": s.policy.to_dict(), "summary": s.policy.summary()}
              for s in front.references + front.solutions]
    return {"seconds": seconds, "evaluated": front.evaluated, "points": points, "run_dir": str(out),
            "notes": result.notes}


def batch_dim(folder: Path) -> str:
    from qevo_cli.model import load_model

    return next(dim for dim in load_model(folder / "model.onnx").inputs[0].shape if isinstance(dim, str))


def hypervolume(points: list[dict], fp32_metric: float, fp32_ms: float, key: str) -> float:
    from pymoo.indicators.hv import HV

    rows = np.array([[(fp32_metric - p[key]) / fp32_metric, p["latency_ms"] / fp32_ms] for p in points])
    rows = rows[(rows[:, 0] <= 0.1) & (rows[:, 1] <= 1.1)]
    rows[:, 0] = np.maximum(rows[:, 0], 0.0)   # a policy better than fp32 counts as fp32's metric
    return float(HV(ref_point=np.array([0.1, 1.1]))(rows)) if len(rows) else 0.0


def pick(points: list[dict], fp32_metric: float, key: str = "metric") -> dict:
    within = [p for p in points if p[key] >= fp32_metric - WITHIN]
    return min(within, key=lambda p: p["latency_ms"])


def measure_on_test(folder: Path, arms: dict) -> float:
    """Every front policy of both arms on the test split; returns the fp32 metric there."""
    from qevo_cli.policy import Policy
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    workspace = open_workspace(folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"])
    evaluator = workspace.evaluator()
    for arm in arms.values():
        for point in arm["points"]:
            point["test_metric"] = evaluator.evaluate(Policy.from_dict(point["policy"]))
    return evaluator.fp32_score


def time_picks(folder: Path, picks: dict) -> dict:
    """The picks timed again on this machine, interleaved so drift hits both alike."""
    from qevo_cli.latency import HostTimer
    from qevo_cli.policy import Policy
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    workspace = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    timer = HostTimer(workspace.evaluator())
    times = {name: [] for name in picks}
    for _ in range(REPEATS):
        for name, point in picks.items():
            times[name].append(timer(Policy.from_dict(point["policy"])).median_ms)
    return {name: {"median_ms": float(np.median(values)), "runs_ms": values} for name, values in times.items()}


def export_pick(folder: Path, point: dict, out: Path) -> dict:
    import onnxruntime as ort

    from qevo_cli.export import export_onnx
    from qevo_cli.policy import Policy
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    workspace = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    evaluator = workspace.evaluator()
    report = export_onnx(evaluator, Policy.from_dict(point["policy"]), out, expected=point["metric"],
                         allow_simulated=True)
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])   # loads in plain onnxruntime
    return {"searched": point["metric"], "exported": report.measured, "difference": report.difference,
            "file_bytes": report.file_bytes, "simulated_layers": len(report.simulated_layers)}


def run_model(name: str, target: str, limit: float) -> dict:
    folder = ZOO_DIR / name
    work = Path(tempfile.mkdtemp(prefix=f"structure-{name}-"))
    arms = {arm: search(folder, target, limit, arm == "structure", work / arm) for arm in ("precision", "structure")}
    fp32 = next(p for p in arms["precision"]["points"] if p["name"] == "fp32")
    test_fp32 = measure_on_test(folder, arms)
    # each arm against its own fp32 time: on the host the two runs are timed minutes apart
    result = {"model": name, "target": target, "time_limit_s": limit, "fp32": {"metric": fp32["metric"],
              "latency_ms": fp32["latency_ms"], "test_metric": test_fp32}, "arms": {}}
    picks = {}
    for arm, data in arms.items():
        picks[arm] = pick(data["points"], fp32["metric"])
        own_ms = next(p for p in data["points"] if p["name"] == "fp32")["latency_ms"]
        result["arms"][arm] = {
            "seconds": round(data["seconds"], 1), "evaluated": data["evaluated"], "front": len(data["points"]),
            "fp32_latency_ms": own_ms,
            "hypervolume_search": hypervolume(data["points"], fp32["metric"], own_ms, "metric"),
            "hypervolume_test": hypervolume(data["points"], test_fp32, own_ms, "test_metric"),
            "pick": {key: picks[arm][key] for key in ("id", "name", "metric", "test_metric", "latency_ms", "summary")},
            "points": data["points"], "notes": data["notes"]}
    if target == "host":
        result["retimed"] = time_picks(folder, picks)
        timed = result["retimed"]
        result["speedup"] = timed["precision"]["median_ms"] / timed["structure"]["median_ms"]
    result["export"] = export_pick(folder, picks["structure"], work / "structure.onnx")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--target", default="nvidia-trt")
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args(argv)
    path = OUT / f"structure_zoo_{args.target}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.models:
        results[name] = run_model(name, args.target, args.time_limit)
        save_json(path, results)
        r = results[name]
        line = "  ".join(f"{arm}: HV {a['hypervolume_search']:.4f}/{a['hypervolume_test']:.4f} evals {a['evaluated']} "
                         f"pick {a['pick']['latency_ms']:.3f} ms {a['pick']['metric']:.2f} ({a['pick']['summary']})"
                         for arm, a in r["arms"].items())
        print(f"{name} {args.target}: {line}", flush=True)
        if "speedup" in r:
            print(f"  re-timed picks: precision {r['retimed']['precision']['median_ms']:.3f} ms, structure "
                  f"{r['retimed']['structure']['median_ms']:.3f} ms: x{r['speedup']:.2f}", flush=True)
        print(f"  export: {r['export']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
