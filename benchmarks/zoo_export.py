"""Every front policy of a short search, written to ONNX and measured again, on each zoo model.

    python benchmarks/zoo_export.py orientation,magika --time-limit 180 [--target arm-neon]
    python benchmarks/zoo_export.py orientation,magika --table

Per model: the layers found (by kind), how many the search can quantize, and the share of the file's
bytes in constant weights qevo cannot reach. Then one search with the same settings for every model
(weights int2 / int4 / int8 / fp16, per-channel or per-group-32; activations int8 / int16 / fp16;
objectives metric and size; the search split), and every policy of its front, plus the fp32 and
uniform W8A8 references, exported with `export_onnx` and measured again on the same data: the
largest |search - export| (goal: 0.1% of the fp32 metric at most), failures, and the predicted size
against the file's size. Results go to docs/benchmarks/zoo_export_<model>.json.
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

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
SETTINGS = {"weight_formats": ("int2", "int4", "int8", "fp16"), "act_formats": ("int8", "int16", "fp16"),
            "granularity": ("per-channel", "per-group-32"), "objectives": ("metric", "size")}


def reach(model) -> dict:
    """Layers found, by kind, and the bytes qevo cannot quantize."""
    kinds: dict[str, int] = {}
    for layer in model.layers:
        kinds[layer.kind] = kinds.get(layer.kind, 0) + 1
    holders = model.holders()
    out_of_reach = [h for h in holders if h.layer is None]
    return {"layers": len(model.layers), "kinds": kinds,
            "quantizable": sum(1 for layer in model.layers if layer.weight is not None or not layer.weight_only),
            "weights": len(holders), "weights_out_of_reach": len(out_of_reach),
            "out_of_reach_share": sum(h.bytes for h in out_of_reach) / model.file_bytes,
            "out_of_reach_ops": sorted({op for h in out_of_reach for op in h.op_types}),
            "quantizable_share": model.quantizable_share, "file_bytes": model.file_bytes}


def run(folder: Path, target: str, limit: float, seed: int) -> dict:
    os.environ["QEVO_CACHE_DIR"] = tempfile.mkdtemp(prefix="qevo-zoo-export-")
    from qevo_cli.config import SearchConfig
    from qevo_cli.errors import QevoError
    from qevo_cli.export import export_onnx
    from qevo_cli.policy import Policy
    from qevo_cli.search import run_search
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    workspace = open_workspace(folder / "model.onnx", folder / "search.npz", folder / "calib.npz", info["metric"])
    result = {"model": info["name"], "target": target, "time_limit": limit, "settings": SETTINGS,
              **reach(workspace.model)}
    config = SearchConfig(model=str(folder / "model.onnx"), data=str(folder / "search.npz"),
                          calib=str(folder / "calib.npz"), metric=info["metric"], target=target, time_limit=limit,
                          generations=100000, seed=seed, threads=1,
                          out=tempfile.mkdtemp(prefix="qevo-zoo-export-run-") + "/run", **SETTINGS)
    start = time.time()
    searched = run_search(config)
    front = json.loads((searched.run_dir / "front.json").read_text())
    result["search_s"] = round(time.time() - start, 1)
    evaluator = workspace.evaluator(threads=2)
    fp32 = evaluator.fp32_score
    result["fp32"] = fp32
    rows = []
    entries = [(f"#{s['id']}", s) for s in front["solutions"]] + [(r["name"], r) for r in front["references"]]
    with tempfile.TemporaryDirectory() as tmp:
        for label, entry in entries:
            policy = Policy.from_dict(entry["policy"])
            row = {"policy": label, "bits": policy.summary(), "search": entry["metric"],
                   "predicted_mb": entry["objectives"]["size"]}
            begun = time.time()
            try:
                report = export_onnx(evaluator, policy, Path(tmp) / "m.onnx", expected=entry["metric"])
                row.update(export=report.measured, difference=report.difference, file_mb=report.file_bytes / 1e6,
                           opset=report.opset)
            except QevoError as err:
                row["error"] = str(err)
            row["seconds"] = round(time.time() - begun, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result["rows"] = rows
    done = [r for r in rows if "error" not in r]
    result["max_abs_difference"] = max((abs(r["difference"]) for r in done), default=None)
    result["max_abs_difference_of_fp32"] = (result["max_abs_difference"] / (abs(fp32) or 1.0)
                                            if done else None)
    result["failures"] = len(rows) - len(done)
    result["max_size_error"] = max((abs(r["file_mb"] / r["predicted_mb"] - 1) for r in done), default=None)
    return result


def print_table(names: list[str]) -> None:
    print("| model | layers found (kinds) | quantizable | bytes out of reach | search s | policies exported | "
          "failures | max \\|search - export\\| (of fp32) | file size / predicted |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = json.loads((OUT / f"zoo_export_{name}.json").read_text())
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items())
        done = [row for row in r["rows"] if "error" not in row]
        ratios = [row["file_mb"] / row["predicted_mb"] for row in done]
        size = f"{min(ratios):.3f} - {max(ratios):.3f}" if ratios else "-"
        diff = "-" if r["max_abs_difference"] is None else \
            f"{r['max_abs_difference']:.4g} ({100 * r['max_abs_difference_of_fp32']:.3f}%)"
        print(f"| {r['model']} | {r['layers']} ({kinds}) | {r['quantizable']} | {100 * r['out_of_reach_share']:.1f}% | "
              f"{r['search_s']} | {len(r['rows'])} | {r['failures']} | {diff} | {size} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", help="zoo models, comma-separated")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--target", default="arm-neon")
    parser.add_argument("--time-limit", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print a markdown table from saved results")
    args = parser.parse_args(argv)
    names = args.names.split(",")
    if args.table:
        print_table(names)
        return 0
    for name in names:
        result = run(args.zoo / name, args.target, args.time_limit, args.seed)
        save_json(OUT / f"zoo_export_{name}.json", result)
        print(f"{name}: {result['failures']} failures, max |search - export| {result['max_abs_difference']}, "
              f"size error {result['max_size_error']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
