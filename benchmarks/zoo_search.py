"""Hypervolume against wall-clock time on a zoo model: qevo against random search, the greedy path and the
fine-swept ILP, each within the same time limit, every point a full measurement on the search split.

    python benchmarks/zoo_search.py orientation --time-limit 600 [--target arm-neon] [--parallel 2]

Every method runs in its own process with an empty cache, opens the model and data inside its time, and
measures with one onnxruntime thread. Each gets the same search space (qevo's defaults on the target).
- qevo: `run_search` with --time-limit (sensitivity proxy, ILP + greedy seeding, racing, NSGA-II);
  qevo-norace: the same with --no-racing, to show what racing buys; qevo-recovery: the same with recovered
  weights to choose from too (--rounding nearest,gptq --bias-correction off,on --weight-range
  minmax,output-mse), to show what they buy at equal time (`--methods qevo,qevo-recovery --tag recovery`);
  qevo-finish: the plain search with --recover-front, which keeps the last 30% of the limit to measure the
  front's policies again with recovered weights (`--methods qevo,qevo-finish --tag finish`).
- random: uniformly random policies of the space, measured until the time is up.
- greedy: the proxy (with the same time share qevo gives it), then AMP's greedy path from the richest policy
  down, its points measured coarse to fine (the ends first, then halves) so it spends its time well.
- ilp: the proxy, then HAWQ-V3's ILP over the proxy swept over 240 size budgets, measured coarse to fine.
An evaluation counts only if it finished within the limit. Hypervolume (drop and size, each divided by its
fp32 value, reference point 1.1) is reported at 25%, 50% and 100% of the limit, with the useful corner
(drop at most 10% of the fp32 metric, size at most uniform int8). Then each method's pick, the smallest
policy within a 1% drop on the search split, is measured on the test split.
Results go to docs/benchmarks/zoo_search_<model>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import ZOO_DIR, save_json  # noqa: E402

METHODS = ("qevo", "qevo-norace", "random", "greedy", "ilp")   # the default set; qevo-recovery, qevo-finish on request
OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def run_method(method: str, folder: Path, target: str, limit: float, seed: int) -> dict:
    """One method in this process; returns its measured points with their times."""
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"qevo-bench-{method}-")
    from qevo_cli.config import SearchConfig
    from qevo_cli.cost import model_cost
    from qevo_cli.genome import build_space
    from qevo_cli.profiles import load_profile

    info = json.loads((folder / "info.json").read_text())
    config = SearchConfig(model=str(folder / "model.onnx"), data=str(folder / "search.npz"),
                          calib=str(folder / "calib.npz"), metric=info["metric"], target=target,
                          objectives=("metric", "size"), time_limit=limit, generations=100000, seed=seed,
                          threads=1, racing=method != "qevo-norace", recover_front=method == "qevo-finish",
                          rounding=("nearest", "gptq") if method == "qevo-recovery" else ("nearest",),
                          bias_correction=("off", "on") if method == "qevo-recovery" else ("off",),
                          weight_range=("minmax", "output-mse") if method == "qevo-recovery" else ("minmax",),
                          out=tempfile.mkdtemp(prefix="qevo-bench-run-") + "/run")
    start = time.time()
    points: list[dict] = []
    if method.startswith("qevo"):
        from qevo_cli.search import run_search
        from qevo_cli.store import RunStore

        result = run_search(config)
        store = RunStore(result.run_dir, create=False)
        rows = store.evaluations()
        created = {r[0]: r[1] for r in store._db.execute("SELECT id, created FROM evaluation")}
        store.close()
        for row in rows:
            points.append({"t": created[row["id"]] - start, "policy": row["policy"], "metric": row["metric"],
                           "size": row["objectives"]["size"]})
        extra = {"probes": result.progress.probes, "generations": result.progress.generation,
                 "cut_short": result.progress.estimated, "wall_s": time.time() - start}
    else:
        from qevo_cli.proxy import measure_proxy, probed_formats
        from qevo_cli.search import SENSITIVITY_SHARE
        from qevo_cli.seeding import coarse_to_fine, greedy_path, ilp_sweep
        from qevo_cli.workspace import open_workspace

        workspace = open_workspace(config.model, config.data, config.calib, config.metric)
        evaluator = workspace.evaluator(threads=1)
        profile = load_profile(target)
        space = build_space(workspace.model.layers, profile, config.allowed())
        if method == "random":
            rng = np.random.default_rng(seed)
            rows = (rng.integers(0, space.upper + 1) for _ in iter(int, 1))
        else:
            ints, acts = probed_formats(config.weight_formats, config.act_formats)   # as qevo's search probes
            table = measure_proxy(evaluator, ints, acts, deadline=time.perf_counter() - (time.time() - start)
                                  + SENSITIVITY_SHARE * limit)
            score = lambda i, k: table.cost(space.layers[i], space.options[i][k])  # noqa: E731
            found = greedy_path(space, score, profile, 10 ** 9) if method == "greedy" else \
                ilp_sweep(space, score, profile, "size", {})
            rows = iter(coarse_to_fine(found))
        seen = set()
        for row in rows:
            if time.time() - start >= limit:
                break
            policy = space.decode(row)
            if policy.key() in seen:
                continue
            seen.add(policy.key())
            metric = evaluator.evaluate(policy)
            size = model_cost(space.layers, policy, profile, workspace.model.other_bytes).weight_bytes / 1e6
            points.append({"t": time.time() - start, "policy": policy.to_dict(), "metric": metric, "size": size})
        extra = {"wall_s": time.time() - start}
    return {"method": method, "limit": limit, "points": [p for p in points if p["t"] <= limit], **extra}


def _front(points: list[dict], fp32: float) -> list[dict]:
    from qevo_cli.front import non_dominated

    rows = [{"objectives": {"metric": fp32 - p["metric"], "size": p["size"]}, "violation": 0, **p} for p in points]
    return non_dominated(rows, ("metric", "size"))


def summarise(folder: Path, results: dict, target: str) -> dict:
    from pymoo.indicators.hv import HV

    from qevo_cli.cost import model_cost
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    search = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    test = open_workspace(folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"])
    search_eval, test_eval = search.evaluator(threads=2), test.evaluator(threads=2)
    fp32 = search_eval.fp32_score
    profile = load_profile(target)
    layers = search.model.layers
    fp32_size = model_cost(layers, Policy({}), profile, search.model.other_bytes).weight_bytes / 1e6
    int8_size = model_cost(layers, Policy({l.name: LayerChoice(weight="int8", activation="int8") for l in layers
                                           if l.weight is not None}), profile,
                           search.model.other_bytes).weight_bytes / 1e6
    scale = np.array([abs(fp32) or 1.0, fp32_size])
    whole = HV(ref_point=np.array([1.1, 1.1]))
    corner = HV(ref_point=np.array([0.1, int8_size / fp32_size]))
    summary = {"model": info["name"], "layers": len(layers), "fp32_search": fp32, "fp32_test": test_eval.fp32_score,
               "fp32_size_mb": fp32_size, "int8_size_mb": int8_size, "methods": {}}
    for method, result in results.items():
        limit = result["limit"]
        row = {"evaluations": len(result["points"]), "wall_s": round(result["wall_s"], 1)}
        for share in (0.25, 0.5, 1.0):
            front = _front([p for p in result["points"] if p["t"] <= share * limit], fp32)
            F = np.array([[f["objectives"]["metric"], f["objectives"]["size"]] for f in front]) / scale \
                if front else np.zeros((0, 2))
            row[f"hv_{int(share * 100)}"] = float(whole(F)) if len(F) else 0.0
            row[f"hv_corner_{int(share * 100)}"] = float(corner(F)) if len(F) else 0.0
        front = _front(result["points"], fp32)
        inside = [f for f in front if f["objectives"]["size"] <= int8_size]
        row["front_points_below_int8"] = len(inside)
        if inside:
            sizes = [f["objectives"]["size"] for f in inside]
            row["front_span_below_int8"] = (max(sizes) - min(sizes)) / int8_size
        within = [f for f in front if f["objectives"]["metric"] <= 0.01 * abs(fp32)]
        if within:
            pick = min(within, key=lambda f: f["objectives"]["size"])
            row["pick"] = {"size_mb": pick["size"], "drop_search": fp32 - pick["metric"],
                           "drop_test": test_eval.fp32_score - test_eval.evaluate(Policy.from_dict(pick["policy"]))}
        small = [p for p in result["points"] if p["size"] <= 0.6 * int8_size]
        if small:   # chosen on the search split, reported on the test split
            best = max(small, key=lambda p: p["metric"])
            row["best_at_0.6x"] = {"size_mb": best["size"], "metric_search": best["metric"],
                                   "metric_test": test_eval.evaluate(Policy.from_dict(best["policy"])),
                                   "policy": best["policy"]}
        for key in ("probes", "generations", "cut_short"):
            if key in result:
                row[key] = result[key]
        summary["methods"][method] = row
    return summary


def print_table(names: list[str], tag: str = "") -> None:
    """One markdown table over saved results: hypervolume at 25/50/100% of the limit, the pick, overshoot."""
    print("| model (layers) | method | evaluations | HV 25% | HV 50% | HV 100% | HV, useful corner | front points "
          "below int8 size (span) | pick: size MB, drop on search / on test | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        summary = json.loads((OUT / (f"zoo_search_{name}" + (f"_{tag}" if tag else "") + ".json")).read_text())
        best = {k: max(row[k] for row in summary["methods"].values()) for k in ("hv_25", "hv_50", "hv_100")}
        for method, row in summary["methods"].items():
            cells = [f"**{row[k]:.4f}**" if row[k] == best[k] else f"{row[k]:.4f}" for k in ("hv_25", "hv_50", "hv_100")]
            pick = row.get("pick")
            picked = f"{pick['size_mb']:.3f}, {pick['drop_search']:+.2f} / {pick['drop_test']:+.2f}" if pick else "-"
            span = f"{row['front_points_below_int8']} ({100 * row.get('front_span_below_int8', 0):.0f}%)"
            cut = f" ({row['cut_short']} cut short)" if row.get("cut_short") else ""
            print(f"| {name} ({summary['layers']}) | {method} | {row['evaluations']}{cut} | {' | '.join(cells)} | "
                  f"{row['hv_corner_100']:.4f} | {span} | {picked} | {row['wall_s']} |")
    static_path = OUT / "scope_check.json"
    static = {r["model"]: r["static"] for r in json.loads(static_path.read_text())} if static_path.exists() else {}
    print("\n| model | method | fp32 (test) | onnxruntime `quantize_static` W8A8 (test) | most accurate policy at <= 0.6x "
          "uniform int8 size: size, search / test | loses no more than `quantize_static` |")
    print("|---|---|---:|---:|---:|---|")
    for name in names:
        summary = json.loads((OUT / (f"zoo_search_{name}" + (f"_{tag}" if tag else "") + ".json")).read_text())
        for method, row in summary["methods"].items():
            best = row.get("best_at_0.6x")
            ort = static.get(name)
            cell = (f"{best['size_mb'] / summary['int8_size_mb']:.2f}x, {best['metric_search']:.2f} / "
                    f"{best['metric_test']:.2f}") if best else "none measured"
            holds = "-" if not best or ort is None else "yes" if best["metric_test"] >= ort else "no"
            print(f"| {name} | {method} | {summary['fp32_test']:.2f} | {'-' if ort is None else f'{ort:.2f}'} | "
                  f"{cell} | {holds} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--target", default="arm-neon")
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1, help="methods run at once (one thread each)")
    parser.add_argument("--tag", default="", help="suffix of the result files (zoo_search_NAME_TAG.json)")
    parser.add_argument("--one", help=argparse.SUPPRESS)   # run one method in this process
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true",
                        help="print a markdown table from the saved results of the models named (comma-separated)")
    args = parser.parse_args(argv)
    if args.table:
        print_table(args.name.split(","), args.tag)
        return 0
    folder = args.zoo / args.name
    if args.one:
        save_json(args.raw, run_method(args.one, folder, args.target, args.time_limit, args.seed))
        return 0
    methods = args.methods.split(",")
    raw_dir = Path(tempfile.mkdtemp(prefix="qevo-bench-raw-"))
    pending = list(methods)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < args.parallel:
            method = pending.pop(0)
            running.append(subprocess.Popen([sys.executable, __file__, args.name, "--zoo", str(args.zoo), "--target",
                                             args.target, "--time-limit", str(args.time_limit), "--seed",
                                             str(args.seed), "--one", method, "--raw", str(raw_dir / method)]))
        time.sleep(1)
        for process in list(running):
            if process.poll() is not None:
                running.remove(process)
    results = {m: json.loads((raw_dir / m).read_text()) for m in methods if (raw_dir / m).exists()}
    summary = summarise(folder, results, args.target)
    summary.update({"target": args.target, "time_limit": args.time_limit, "seed": args.seed,
                    "parallel": args.parallel})
    stem = f"zoo_search_{args.name}" + (f"_{args.tag}" if args.tag else "")
    save_json(OUT / f"{stem}.json", summary)
    save_json(OUT / f"{stem}_points.json", results)
    print(f"{args.name} ({summary['layers']} layers) on {args.target}, {args.time_limit:.0f} s each")
    print(f"{'method':<8} {'evals':>6} {'wall s':>7} {'HV 25%':>8} {'HV 50%':>8} {'HV 100%':>8} "
          f"{'corner 100%':>11} {'pick MB':>8} {'drop search':>11} {'drop test':>9}")
    for method, row in summary["methods"].items():
        pick = row.get("pick", {})
        print(f"{method:<8} {row['evaluations']:>6} {row['wall_s']:>7} {row['hv_25']:>8.4f} {row['hv_50']:>8.4f} "
              f"{row['hv_100']:>8.4f} {row['hv_corner_100']:>11.4f} {pick.get('size_mb', float('nan')):>8.3f} "
              f"{pick.get('drop_search', float('nan')):>11.3f} {pick.get('drop_test', float('nan')):>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
