"""NNCF's post-training INT8 (`nncf.quantize`, ONNX backend) on a qevo zoo model, for comparison with qevo.

Runs in a venv of its own (nncf brings its own pins):
    python3.11 -m venv nncf-venv && nncf-venv/bin/pip install nncf onnx onnxruntime
    nncf-venv/bin/python benchmarks/nncf_int8.py MODEL [--zoo zoo-data] [--out docs/benchmarks/nncf]
  MODEL: digits | magika | orientation | ppocr-cls | minilm | ppocr-det | ppocr-rec | silero-vad

What it does (CPUExecutionProvider, 2 intra-op threads, the same splits and metric as qevo's benchmarks):
 1. fp32 metric with plain onnxruntime on test.npz.
 2. nncf.quantize(model, nncf.Dataset(every calib.npz sample), subset_size=all of them) with its defaults:
    preset performance, fast bias correction on; model_type=TRANSFORMER for the transformer (minilm), as
    NNCF's documentation asks for transformers (SmoothQuant and its transformer ignored patterns).
 3. The quantized model's metric on test.npz with plain onnxruntime, its file size and the wall time.
Results: OUT/results_MODEL.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_data import THREADS, Split, load_metric, plain_session, run_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMERS = {"minilm"}


def paths(model: str, zoo: Path) -> tuple[Path, Path, Path, str]:
    if model == "digits":
        folder = ROOT / "qevo_cli" / "data" / "default"
        return folder / "model.onnx", folder / "eval.npz", folder / "calib.npz", "accuracy"
    folder = zoo / model
    info = json.loads((folder / "info.json").read_text())
    return folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"]


def main(argv=None) -> int:
    import nncf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--zoo", type=Path, default=ROOT / "zoo-data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "nncf")
    args = parser.parse_args(argv)
    model_path, test_path, calib_path, metric_spec = paths(args.model, args.zoo)
    model = onnx.load(str(model_path))
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    metric = load_metric(metric_spec)
    test = Split(test_path, names)
    calib = Split(calib_path, names, 1)
    result = {"model": args.model, "nncf": nncf.__version__, "threads": THREADS, "calib_samples": calib.n,
              "test_samples": test.n, "model_type": "TRANSFORMER" if args.model in TRANSFORMERS else "default"}
    result["fp32_test"] = float(metric(run_outputs(plain_session(str(model_path)), test), test.labels))
    samples = list(calib.batches())
    dataset = nncf.Dataset(samples, lambda item: item)
    options = {"model_type": nncf.ModelType.TRANSFORMER} if args.model in TRANSFORMERS else {}
    start = time.time()
    quantized = nncf.quantize(model, dataset, subset_size=len(samples), **options)
    result["quantize_s"] = round(time.time() - start, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "int8.onnx"
        onnx.save(quantized, str(path))
        result["file_bytes"] = path.stat().st_size
        result["int8_test"] = float(metric(run_outputs(plain_session(str(path)), test), test.labels))
    result["quantized_ops"] = sorted({n.op_type for n in quantized.graph.node if n.op_type not in
                                      ("QuantizeLinear", "DequantizeLinear")})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results_{args.model}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
