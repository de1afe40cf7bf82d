"""Each zoo model under each target family's scope: uniform W8A8, and qevo's best policy at no more than 0.6x
the size of uniform INT8.

    python benchmarks/scope_zoo.py magika orientation ... [--targets arm-neon,hexagon] [--time-limit 240]

For each model and target (arm-neon quantizes the inputs and outputs of the ops onnxruntime's CPU execution
provider runs as integer kernels; hexagon quantizes every tensor, as QNN's HTP), one search with qevo's
defaults on that target, objectives
metric and size, the budget 0.6x the size of uniform W8A8 on that target, within --time-limit (references,
sensitivity and seeding included). The pick is the feasible front policy with the best metric on the
search split; it and uniform W8A8 are then measured on the test split. Every evaluation the search made is
counted. Results go to docs/benchmarks/scope_zoo.json.

With --recovery the search may also choose, per layer, gptq rounding, bias correction, the output-mse
weight range and (where the target offers it) smoothing at alpha 0.5 (results in scope_zoo_recovery.json);
run it beside a plain run at the same limit (--out docs/benchmarks/scope_zoo_beside_recovery.json) to
compare at equal time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import ZOO_DIR, save_json  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "scope_zoo.json"
BUDGET = 0.6


def uniform_int8_mb(workspace, profile) -> float:
    """Size of uniform W8A8 on the target, as the search's own reference counts it."""
    from qevo_cli.cost import model_cost
    from qevo_cli.genome import Allowed, space_for
    from qevo_cli.policy import LayerChoice
    from qevo_cli.profiles import uniform_policy

    model = workspace.model
    space = space_for(model, profile, Allowed())
    policy = space.with_tensors_at(uniform_policy(profile, model.layers, LayerChoice("int8", "int8"))[0], "int8")
    return model_cost(model.layers, policy, profile, model.other_bytes, space.tensors.traffic).weight_bytes / 1e6


RECOVERY = {"rounding": ("nearest", "gptq"), "bias_correction": ("off", "on"),
            "weight_range": ("minmax", "output-mse"), "smoothing": ("none", "0.5")}


def run(name: str, target: str, zoo: Path, limit: float, seed: int, recovery: bool = False) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-scope-zoo-")
    from qevo_cli.config import SearchConfig
    from qevo_cli.cost import model_cost
    from qevo_cli.profiles import load_profile
    from qevo_cli.search import run_search
    from qevo_cli.workspace import open_workspace

    folder = zoo / name
    info = json.loads((folder / "info.json").read_text())
    profile = load_profile(target)
    search_ws = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    int8_mb = uniform_int8_mb(search_ws, profile)
    config = SearchConfig(model=str(folder / "model.onnx"), data=str(folder / "search.npz"),
                          calib=str(folder / "calib.npz"), metric=info["metric"], target=target,
                          objectives=("metric", "size"), max_size_mb=BUDGET * int8_mb, time_limit=limit,
                          generations=100000, seed=seed, out=tempfile.mkdtemp(prefix="qevo-scope-run-") + "/run",
                          **(RECOVERY if recovery else {}))
    start = time.time()
    result = run_search(config)
    seconds = time.time() - start
    front = result.front
    feasible = [s for s in front.solutions if s.feasible and s.objectives["size"] <= config.max_size_mb]
    references = {r.name: r for r in front.references}
    row = {"model": name, "target": target, "recovery": recovery, "scope": profile.activation_scope,
           "metric": info["metric"],
           "int8_mb": int8_mb, "budget_mb": config.max_size_mb, "time_limit": limit, "seconds": seconds,
           "evaluations": result.progress.evaluations, "front": len(front.solutions), "feasible": len(feasible),
           "search_fp32": front.fp32_metric, "search_w8a8": references["uniform W8A8"].metric}
    test_ws = open_workspace(folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"])
    evaluator = test_ws.evaluator(threads=2)
    row["test_fp32"] = evaluator.fp32_score
    row["test_w8a8"] = evaluator.evaluate(references["uniform W8A8"].policy)
    if feasible:
        pick = max(feasible, key=lambda s: (s.metric, -s.objectives["size"]))
        policy = pick.policy
        layers = test_ws.model.layers
        row.update(pick_id=pick.id, pick_mb=pick.objectives["size"], pick_search=pick.metric,
                   pick_test=evaluator.evaluate(policy), pick_bits=policy.summary(),
                   # the quantized weights alone (scales included), as AIMET reports a model's size
                   pick_weight_bytes=model_cost(layers, policy, profile).weight_bytes)
    from qevo_cli import runners

    runners._EVALUATORS.clear()   # one process measures model after model: keep one model's caches at a time
    return row


AIMET = OUT.parent / "aimet"
RECOVERED = OUT.parent / "scope_zoo_recovery.json"
BESIDE = OUT.parent / "scope_zoo_beside_recovery.json"   # the plain runs made beside the recovery runs   # benchmarks/aimet_amp.py's results, where it was run


def print_table(rows: list[dict]) -> None:
    print("| model | target (scope) | fp32 | uniform W8A8 (file) | qevo best at <= 0.6x INT8: test (file, weights) "
          "| evaluations | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pick = (f"{r['pick_test']:.2f} ({r['pick_mb']:.3g} MB = {r['pick_mb'] / r['int8_mb']:.2f}x, "
                f"{r['pick_weight_bytes'] / 1e3:.0f} kB)" if "pick_test" in r else "no feasible policy")
        print(f"| {r['model']} | {r['target']} ({r['scope']}) | {r['test_fp32']:.2f} | {r['test_w8a8']:.2f} "
              f"({r['int8_mb']:.3g} MB) | {pick} | {r['evaluations']} | {r['seconds']:.0f} |")
    recovered = {(r["model"], r["target"]): r for r in json.loads(RECOVERED.read_text())} if RECOVERED.exists() else {}
    if recovered:
        static = {r["model"]: r["static"] for r in json.loads((OUT.parent / "scope_check.json").read_text())}
        rows = json.loads(BESIDE.read_text()) if BESIDE.exists() else rows
        print("\n| model | target | fp32 | onnxruntime `quantize_static` W8A8 | qevo best at <= 0.6x INT8: test, "
              "weights rounded to nearest | with recovery to choose from | its recovered layers | evaluations "
              "(plain / recovery) |")
        print("|---|---|---:|---:|---:|---:|---|---:|")
        for r in rows:
            other = recovered.get((r["model"], r["target"]))
            if other is None:
                continue
            cell = lambda x: f"{x['pick_test']:.2f} ({x['pick_mb'] / x['int8_mb']:.2f}x)" if "pick_test" in x \
                else "none feasible"   # noqa: E731
            print(f"| {r['model']} | {r['target']} | {r['test_fp32']:.2f} | {static.get(r['model'], float('nan')):.2f} "
                  f"| {cell(r)} | {cell(other)} | {other.get('pick_bits', '-')} | {r['evaluations']} / "
                  f"{other['evaluations']} |")
    amp = [json.loads(path.read_text()) for path in sorted(AIMET.glob("results_*.json"))]
    if amp:
        print("\n| model | AIMET AMP: uniform W8A8 (test) | chosen point: test (weights) | best scored point within 1 "
              "of fp32 on search (weights) | evaluations (phase 1 on a subset / phase 2) | wall s | how it ended |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for a in amp:
            chosen = a.get("chosen") or {}
            weights = chosen.get("quantized_weight_bytes") or 0
            within = [p for p in a.get("pareto") or [] if p.get("search_metric") is not None
                      and p["search_metric"] >= a["fp32_search"] - 1 and p.get("weight_bytes")]
            best = min(within, key=lambda p: p["weight_bytes"], default=None)
            best_cell = f"{best['search_metric']:.2f} ({best['weight_bytes'] / 1e3:.0f} kB)" if best else "none"
            weights_cell = f"{weights / 1e3:.0f} kB" if weights else "not counted"
            test = chosen.get("test_metric_qdq_ort")
            chosen_cell = f"{test:.2f} ({weights_cell})" if test is not None else "none"
            counts = a.get("eval_counts") or {}
            total = sum(counts.get(k, 0) for k in ("baseline_phase2cb", "phase1", "phase2"))
            plan = a.get("plan") or {}
            ended = a.get("truncated") or "finished"
            if ended == "budget exceeded in phase 1" and plan.get("est_phase1_min"):
                ended += f" (phase 1 alone: about {plan['est_phase1_min']:.0f} min)"
            if not counts:
                ended = "failed before its search (see the docs)"
            print(f"| {a['model']} | {a['w8a8_test']:.2f} | {chosen_cell} | {best_cell} | {total} "
                  f"({counts.get('phase1', 0)} / {counts.get('phase2', 0)}) | {a.get('amp_wall_s') or 0:.0f} | {ended} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["magika", "orientation", "ppocr-cls", "minilm", "silero-vad",
                                                     "ppocr-det", "ppocr-rec"])
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--targets", default="arm-neon,hexagon")
    parser.add_argument("--time-limit", type=float, default=240.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recovery", action="store_true", help="let the search choose recovered weights too")
    parser.add_argument("--out", type=Path, help="where the results go (default: scope_zoo.json, or "
                                                 "scope_zoo_recovery.json with --recovery)")
    parser.add_argument("--table", action="store_true", help="print the table of the saved results")
    args = parser.parse_args(argv)
    out = args.out or (RECOVERED if args.recovery else OUT)   # two files: the two runs go side by side
    saved = json.loads(out.read_text()) if out.exists() else []
    if args.table:
        print_table(saved)
        return 0
    for name in args.names:
        for target in args.targets.split(","):
            row = run(name, target, args.zoo, args.time_limit, args.seed, args.recovery)
            print(json.dumps(row), flush=True)
            saved = [r for r in saved if (r["model"], r["target"]) != (name, target)] + [row]
            save_json(out, saved)
    print_table(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
