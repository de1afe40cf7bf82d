"""onnxruntime's own answers on each zoo model, measured on the test split with qevo's metric.

    python benchmarks/zoo/baselines.py [NAMES] [--zoo zoo-data]
For each prepared model: fp32; `quantize_static` W8A8 (QDQ, int8 per-channel weights, uint8 activations,
min-max calibration on calib.npz); `quantize_static` W4A16 (int4 per-channel weights, 16-bit activations,
the closest onnxruntime comes to weight-only INT4 for every layer type). Each model is run with the session
options qevo measures with (Q/DQ kept as exact fake quantization), and its file size is reported.
Writes baselines.json beside each model and prints a table with each model's layers, the share of its float
bytes that sit in quantizable layer weights, and the seconds one evaluation (uniform W8A8) takes on the test split.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ on the path for `zoo`; this folder off it, so zoo/silero_vad.py cannot hide the silero_vad package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.common import ZOO_DIR, save_json  # noqa: E402

RECIPES = {
    "ort W8A8": dict(activation_type="QUInt8", weight_type="QInt8"),
    "ort W4A16": dict(activation_type="QUInt16", weight_type="QInt4"),
}


class _Reader:
    def __init__(self, dataset):
        self.batches = iter(list(dataset.batches()))

    def get_next(self):
        return next(self.batches, None)


def _measure(model_bytes: bytes, workspace, evaluator) -> float:
    import onnxruntime as ort

    from qevo_cli.evaluate import run_session

    session = ort.InferenceSession(model_bytes, evaluator.options, providers=["CPUExecutionProvider"])
    outputs = run_session(session, workspace.data)
    return evaluator.metric(outputs, workspace.data.labels, evaluator.reference)


def baselines(folder: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_static

    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.workspace import open_workspace

    info = json.loads((folder / "info.json").read_text())
    test = open_workspace(folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"])
    evaluator = test.evaluator(threads=1)
    calib = open_workspace(folder / "model.onnx", folder / "calib.npz", None, "agreement").data
    start = time.perf_counter()
    evaluator.evaluate(Policy({layer.name: LayerChoice(weight="int8", activation="int8") for layer in test.model.layers
                               if layer.weight is not None}))
    pass_seconds = time.perf_counter() - start
    rows = {"fp32": {"metric": evaluator.fp32_score, "file_bytes": (folder / "model.onnx").stat().st_size}}
    # quantize the normalised model qevo works on (Constant weights folded, opset raised where needed)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "float.onnx"
        onnx.save(test.model.proto, source)
        for name, recipe in RECIPES.items():
            target = Path(tmp) / "q.onnx"
            start = time.perf_counter()
            try:
                quantize_static(str(source), str(target), _Reader(calib), per_channel=True,
                                activation_type=getattr(QuantType, recipe["activation_type"]),
                                weight_type=getattr(QuantType, recipe["weight_type"]),
                                op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"])
                metric = _measure(target.read_bytes(), test, evaluator)
                rows[name] = {"metric": metric, "file_bytes": target.stat().st_size,
                              "seconds": round(time.perf_counter() - start, 1)}
            except Exception as err:  # a baseline that fails is reported, not hidden
                rows[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    model = test.model
    result = {"model": info["name"], "family": info["family"], "metric": info["metric"], "split": "test",
              "samples": evaluator.data.size, "layers": len(model.layers),
              "layers_in_subgraphs": sum(1 for layer in model.layers if layer.subgraph),
              "quantizable_share": model.quantizable_share,
              "seconds_per_evaluation": round(pass_seconds, 2), "rows": rows}
    save_json(folder / "baselines.json", result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--table", action="store_true", help="print the table from the last run's baselines.json")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.name for p in args.zoo.iterdir() if (p / "info.json").exists())
    results = [baselines(args.zoo / name) for name in names] if not args.table else \
        [json.loads((args.zoo / name / "baselines.json").read_text()) for name in names]
    print("| model | family | layers (in subgraphs) | share of float bytes in layer weights | test samples "
          "| s per evaluation | fp32 | ort W8A8 (file MB) | ort W4A16 (file MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        rows = result["rows"]
        cells = [f"{rows[k]['metric']:.2f} ({rows[k]['file_bytes'] / 1e6:.2f})" if "error" not in rows[k]
                 else f"failed: {rows[k]['error']}" for k in ("fp32", "ort W8A8", "ort W4A16")]
        print(f"| {result['model']} | {result['family']} | {result['layers']} ({result['layers_in_subgraphs']}) | "
              f"{100 * result['quantizable_share']:.0f}% | {result['samples']} | {result['seconds_per_evaluation']} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
