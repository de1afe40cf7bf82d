"""qevo against onnxruntime's quantize_static: exported file sizes, chosen on one split, reported on another.

    python benchmarks/vs_ort_int8.py [MODEL ...] [--zoo zoo-data] [--time-limit 240] [--digits-time-limit 60]

MODEL is "digits" (qevo's bundled default model), the name of a model prepared in --zoo, or the path of a
prepared zoo folder (model.onnx, search.npz, test.npz, calib.npz, info.json); default: digits orientation
ppocr-cls. The bundled model has no search/test split: its eval.npz is shuffled (seed 0) and cut in two
halves, the first for search and the second for test; calib.npz stays the calibration set.

For each model:
- onnxruntime: `quantize_static` (QDQ, per_channel=True, min-max calibration on calib.npz, op types Conv,
  ConvTranspose, Gemm, MatMul) in three recipes: W8A8 (QInt8 weights, QUInt8 activations), W8A16 (QInt8,
  QUInt16) and W4A16 (QInt4, QUInt16), on the normalised model qevo works on (zoo/baselines.py's recipe).
- qevo: `run_search` on search.npz, objectives metric and size, weights int2/int4/int8, activations
  int8/int16, size budget 0.6x the W8A8 model as qevo's size model predicts it, within the time limit. Its
  feasible policy with the least drop on search.npz is exported with `export_onnx` (formats onnxruntime
  cannot store, int2, are written rounded in float only if the plain export refuses them: that is flagged).
- Every file (fp32, the three onnxruntime models, qevo's export) is measured on test.npz with qevo's session
  options (one thread, Q/DQ kept as exact fake quantization). Drops are fp32 minus the metric, on the same
  split; a negative drop is a gain. Sizes are the files' sizes on disk.
Every onnxruntime thread is limited to one (the quantizer's calibration session included).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnxruntime as ort


class _OneThreadOptions(ort.SessionOptions):
    """onnxruntime's quantizer calibrates in a session of its own, with default (all-core) options."""

    def __init__(self):
        super().__init__()
        self.intra_op_num_threads = 1
        self.inter_op_num_threads = 1


ort.SessionOptions = _OneThreadOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.baselines import RECIPES, _measure, _Reader  # noqa: E402
from zoo.common import ZOO_DIR  # noqa: E402

TARGET = "arm-dot"
DEFAULT_MODELS = ("digits", "orientation", "ppocr-cls")
ORT_RECIPES = {  # baselines.py's two recipes with W8A16 between them
    "ort W8A8": RECIPES["ort W8A8"],
    "ort W8A16": dict(activation_type="QUInt16", weight_type="QInt8"),
    "ort W4A16": RECIPES["ort W4A16"],
}
BUDGET_SHARE = 0.6


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text[:300]}"


def digits_split(root: Path, seed: int = 0) -> tuple[None, Path, Path, Path, str | None]:
    """The bundled model's eval.npz shuffled and cut in two halves (search, test); its calib.npz as is."""
    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL

    with np.load(DEFAULT_DATA) as data:
        arrays = {key: data[key] for key in data.files}
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n)
    half = (n + 1) // 2
    paths = []
    for name, rows in (("search", order[:half]), ("test", order[half:])):
        path = root / f"digits-{name}.npz"
        np.savez(path, **{key: value[np.sort(rows)] for key, value in arrays.items()})
        paths.append(path)
    return DEFAULT_MODEL, paths[0], paths[1], DEFAULT_CALIB, None


def ort_baselines(workspace, test_eval, calib_data, root: Path, label: str) -> dict:
    """The three quantize_static recipes on the model qevo loaded, each file measured on test."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = root / f"{label}-float.onnx"
    onnx.save(workspace.model.proto, source)
    rows = {}
    for name, recipe in ORT_RECIPES.items():
        target = root / f"{label}-{name.split()[-1]}.onnx"
        start = time.perf_counter()
        try:
            quantize_static(str(source), str(target), _Reader(calib_data), quant_format=QuantFormat.QDQ,
                            per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                            activation_type=getattr(QuantType, recipe["activation_type"]),
                            weight_type=getattr(QuantType, recipe["weight_type"]),
                            op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"])
            metric = _measure(target.read_bytes(), workspace, test_eval)
            rows[name] = {"metric": metric, "drop": test_eval.fp32_score - metric,
                          "file_bytes": target.stat().st_size, "seconds": round(time.perf_counter() - start, 1)}
        except Exception as err:  # a baseline that fails is reported, not hidden
            rows[name] = {"error": _one_line(err)}
        print(f"  {name}: {rows[name]}", flush=True)
    return rows


def compare(label: str, model, search_npz, test_npz, calib_npz, metric, root: Path, time_limit: float,
            seed: int) -> dict:
    from qevo_cli.config import SearchConfig
    from qevo_cli.cost import model_cost
    from qevo_cli.errors import QevoError
    from qevo_cli.export import export_onnx
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile
    from qevo_cli.search import run_search
    from qevo_cli.workspace import open_workspace

    print(f"== {label}", flush=True)
    search = open_workspace(model, search_npz, calib_npz, metric)
    test = open_workspace(model, test_npz, calib_npz, metric)
    calib_data = open_workspace(model, calib_npz, None, "agreement").data
    test_eval = test.evaluator(threads=1)
    fp32_file = Path(search.model.path)
    row = {"model": label, "metric": test.metric.name, "search_rows": search.data.size, "test_rows": test.data.size,
           "fp32_test": test_eval.fp32_score, "fp32_file_bytes": fp32_file.stat().st_size,
           "time_limit_s": time_limit, "notes": []}
    row["ort"] = ort_baselines(test, test_eval, calib_data, root, label)

    layers = search.model.layers
    int8 = Policy.uniform([layer.name for layer in layers], LayerChoice(weight="int8", activation="int8"))
    int8_mb = model_cost(layers, int8, load_profile(TARGET), other_bytes=search.model.other_bytes).weight_bytes / 1e6
    budget = BUDGET_SHARE * int8_mb
    row.update(int8_predicted_mb=int8_mb, budget_mb=budget)
    print(f"  qevo: W8A8 predicted {int8_mb * 1e3:.1f} kB, budget {budget * 1e3:.1f} kB, "
          f"{time_limit:.0f} s", flush=True)

    start = time.perf_counter()
    result = run_search(SearchConfig(target=TARGET, model=str(model), data=str(search_npz), calib=str(calib_npz),
                                     metric=metric, objectives=("metric", "size"), max_size_mb=budget,
                                     weight_formats=("int2", "int4", "int8"), act_formats=("int8", "int16"),
                                     time_limit=time_limit, generations=100000, seed=seed, threads=1,
                                     out=str(root / f"{label}-run")))
    row["search_seconds"] = round(time.perf_counter() - start, 1)
    row["evaluated"] = result.front.evaluated
    row["fp32_search"] = result.front.fp32_metric
    feasible = [s for s in result.front.solutions if s.feasible] if result.feasible else []
    if not feasible:
        row["notes"].append(f"qevo found no policy within {budget * 1e3:.1f} kB")
        return row
    best = min(feasible, key=lambda s: (s.objectives["metric"], s.objectives["size"], s.id))
    policy = best.policy
    row["qevo"] = {"id": best.id, "predicted_mb": best.objectives["size"],
                   "metric_search": best.metric, "drop_search": best.objectives["metric"],
                   "policy": policy.summary(), "front_size": len(feasible)}
    print(f"  qevo: {result.front.evaluated} evaluated; best {row['qevo']}", flush=True)

    search_eval = search.evaluator(threads=1)
    out = root / f"{label}-qevo.onnx"
    report = None
    try:
        report = export_onnx(search_eval, policy, out, expected=best["metric"])
    except QevoError as err:
        row["notes"].append(f"export refused: {err}")
        if "allow-simulated" not in str(err):
            return row
        try:
            report = export_onnx(search_eval, policy, out, expected=best["metric"], allow_simulated=True)
            row["qevo"]["simulated_layers"] = len(report.simulated_layers)
            row["notes"].append(f"exported with allow_simulated: {len(report.simulated_layers)} layer(s) stored "
                                "as rounded float weights, so the file is larger than a runtime would store")
        except Exception as err2:
            row["notes"].append(f"export failed: {_one_line(err2)}")
    except Exception as err:
        row["notes"].append(f"export failed: {_one_line(err)}")
    if report is None:
        return row
    measured_test = _measure(out.read_bytes(), test, test_eval)
    row["qevo"].update(file_bytes=out.stat().st_size, exported_metric_search=report.measured,
                       exported_vs_searched=report.difference, metric_test=measured_test,
                       drop_test=test_eval.fp32_score - measured_test, stored_layers=len(report.stored_layers))
    if report.difference is not None and abs(report.difference) > 1e-6:
        row["notes"].append(f"exported file on search: {report.measured:.3f} against {best['metric']:.3f} "
                            "in the search")
    print(f"  qevo export: {row['qevo']}", flush=True)
    return row


def _kb(n_bytes: float) -> str:
    return f"{n_bytes / 1e3:,.0f} kB" if n_bytes >= 100e3 else f"{n_bytes / 1e3:.1f} kB"


def table(rows: list[dict]) -> str:
    lines = ["| model | fp32 (test) | ORT W8A8: file, metric (drop) | ORT W8A16 | ORT W4A16 | qevo predicted size | "
             "qevo file (x ORT W8A8 file) | qevo drop on search | qevo drop on test | policies evaluated |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        metric = row["metric"].rsplit(":", 1)[-1]   # a zoo metric is named by its file and function
        cells = [f"{row['model']} ({metric}; search {row['search_rows']}, test {row['test_rows']})",
                 f"{row['fp32_test']:.2f} ({_kb(row['fp32_file_bytes'])})"]
        for name in ORT_RECIPES:
            ort_row = row["ort"][name]
            cells.append(f"failed: {ort_row['error']}" if "error" in ort_row else
                         f"{_kb(ort_row['file_bytes'])}, {ort_row['metric']:.2f} ({ort_row['drop']:.2f})")
        qevo = row.get("qevo")
        w8a8 = row["ort"]["ort W8A8"].get("file_bytes")
        if qevo is None:
            cells += ["none within budget", "-", "-", "-"]
        else:
            cells.append(f"{_kb(qevo['predicted_mb'] * 1e6)} (budget {_kb(row['budget_mb'] * 1e6)})")
            if "file_bytes" in qevo:
                ratio = f" ({qevo['file_bytes'] / w8a8:.2f}x)" if w8a8 else ""
                flag = " *" if qevo.get("simulated_layers") else ""
                cells.append(f"{_kb(qevo['file_bytes'])}{ratio}{flag}")
            else:
                cells.append("export failed")
            cells.append(f"{qevo['drop_search']:.2f}")
            cells.append(f"{qevo['drop_test']:.2f}" if "drop_test" in qevo else "-")
        cells.append(f"{row.get('evaluated', '-')} in {row['time_limit_s']:.0f} s")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def resolve(name: str, zoo: Path, root: Path):
    """(label, model, search, test, calib, metric) for a model name or a prepared folder."""
    if name == "digits":
        return ("digits", *digits_split(root))
    folder = Path(name) if Path(name).is_dir() else zoo / name
    info = json.loads((folder / "info.json").read_text())
    return (info["name"], folder / "model.onnx", folder / "search.npz", folder / "test.npz", folder / "calib.npz",
            info["metric"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS),
                        help="digits, a model name prepared in --zoo, or a prepared folder")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of qevo search per zoo model")
    parser.add_argument("--digits-time-limit", type=float, default=60.0, help="seconds of search on digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-ort-") as tmp:
        root = Path(tmp)
        os.environ["QEVO_CACHE_DIR"] = str(root / "cache")   # no measurement reused from earlier runs
        for name in args.models:
            label, model, search_npz, test_npz, calib_npz, metric = resolve(name, args.zoo, root)
            limit = args.digits_time_limit if name == "digits" else args.time_limit
            try:
                rows.append(compare(label, model, search_npz, test_npz, calib_npz, metric, root, limit, args.seed))
            except Exception as err:
                traceback.print_exc()
                print(f"{label}: failed: {_one_line(err)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    print()
    print(table(rows))
    notes = [f"- {row['model']}: {note}" for row in rows for note in row["notes"]]
    if notes:
        print("\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
