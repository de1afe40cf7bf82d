"""How far each activation scope's simulation is from what onnxruntime's QNN configuration writes.

    python benchmarks/scope_check.py digits orientation ppocr-cls ... [--zoo zoo-data]

For each model, on its test split (digits: the bundled eval.npz), with min-max calibration on the
calibration split, six measurements with qevo's session options:
- fp32;
- QNN: onnxruntime's `get_qnn_qdq_config` (uint8 activations, uint8 weights, per-tensor, min-max) and
  `quantize`, the model a user would hand to the QNN execution provider for Hexagon;
- quantize_static: onnxruntime's plain `quantize_static` with its defaults (QDQ, uint8 activations, int8
  symmetric weights, per-tensor), the model a user would hand to the CPU execution provider; and the
  same with uint8 weights and `op_types_to_quantize` restricted to Conv, ConvTranspose, Gemm and MatMul;
- qevo W8A8, qdq-ops scope: every layer's weights int8 per-tensor symmetric (a Gather's table asymmetric,
  as quantize_static quantizes it with the activations' type), one uint8 Q/DQ on every
  tensor onnxruntime's quantizer places one on (the CPU targets' scope, `qevo_cli/ort_placement.py`);
- qevo W8A8, layer-inputs scope: every layer's weights int8 per-tensor asymmetric and its inputs int8,
  float elsewhere (the `nvidia-trt` and `apple-ane` profiles' scope);
- qevo W8A8, all-tensors scope: the same plus one int8 Q/DQ on every float tensor of the graph
  (the `hexagon` profile's scope), with the rules of `qevo_cli/fullgraph.py`; layers inside If / Loop
  bodies stay float, as the helper leaves them.
The gap between qevo's all-tensors number and QNN's is what qevo's hexagon simulation still misses; the
gap between its qdq-ops number and quantize_static's, what its CPU simulation misses.
Results go to docs/benchmarks/scope_check.json.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.common import per_model_main, test_paths  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "scope_check.json"
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")   # the layers onnxruntime's quantizer knows


def check(name: str, zoo: Path) -> dict:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize, quantize_static
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    from qevo_cli.evaluate import run_session
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.scope import activation_groups
    from qevo_cli.workspace import open_workspace

    model_path, data, calib, metric = test_paths(name, zoo)
    workspace = open_workspace(model_path, data, calib, metric)
    evaluator = workspace.evaluator(threads=2)
    model = workspace.model
    result = {"model": name, "metric": evaluator.metric.label, "samples": workspace.data.size,
              "fp32": evaluator.fp32_score, "tensors": len(activation_groups(model, "all-tensors"))}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(evaluator.calibrator.calib.batches())

        def get_next(self):
            return next(self.batches, None)

    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        source, output = Path(tmp) / "in.onnx", Path(tmp) / "qnn.onnx"
        onnx.save(model.proto, source)   # the normalised model qevo works on
        try:
            config = get_qnn_qdq_config(str(source), Reader(), activation_type=QuantType.QUInt8,
                                        weight_type=QuantType.QUInt8)
            quantize(str(source), str(output), config)
            session = ort.InferenceSession(str(output), evaluator.options, providers=["CPUExecutionProvider"])
            result["qnn"] = evaluator.metric(run_session(session, evaluator.data), evaluator.data.labels,
                                             evaluator.reference)
        except Exception as err:  # the helper refuses some graphs; reported, not hidden
            result["qnn_error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
        # the CPU execution provider's answer: plain quantize_static, QDQ, the same types and calibration
        try:
            static = Path(tmp) / "static.onnx"
            quantize_static(str(source), str(static), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False)
            session = ort.InferenceSession(str(static), evaluator.options, providers=["CPUExecutionProvider"])
            result["static"] = evaluator.metric(run_session(session, evaluator.data), evaluator.data.labels,
                                                evaluator.reference)
        except Exception as err:
            result["static_error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
        # the same, restricted to the op types of qevo's layers: the model closest to the layer-inputs scope
        try:
            static = Path(tmp) / "static_layers.onnx"
            quantize_static(str(source), str(static), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=False,
                            op_types_to_quantize=list(LAYER_OPS))
            session = ort.InferenceSession(str(static), evaluator.options, providers=["CPUExecutionProvider"])
            result["static_layers"] = evaluator.metric(run_session(session, evaluator.data), evaluator.data.labels,
                                                       evaluator.reference)
        except Exception as err:
            result["static_layers_error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
    result["qnn_s"] = round(time.time() - start, 1)
    w8a8 = Policy({layer.name: LayerChoice("int8", "fp32" if layer.weight_only else "int8", "per-tensor",
                                           symmetric=False) for layer in model.layers})
    result["qevo_layer_inputs"] = evaluator.evaluate(w8a8)
    # onnxruntime's quantizer leaves layers inside If / Loop bodies float (the QNN execution provider runs
    # control flow on the CPU), so the same layers stay float here
    top = Policy({name: choice for name, choice in w8a8.layers.items() if not model.layer(name).subgraph})
    # weights as quantize_static stores them: int8 symmetric, a Gather's table uint8 over its range
    symmetric = Policy({name: replace(choice, symmetric=model.layer(name).op_type != "Gather")
                        for name, choice in top.layers.items()})
    result["qevo_qdq_ops"] = evaluator.evaluate(symmetric.with_tensors(
        {g.tensor: "int8" for g in activation_groups(model, "qdq-ops")}, "qdq-ops"))
    result["qdq_ops_tensors"] = len(activation_groups(model, "qdq-ops"))
    everything = top.with_tensors({g.tensor: "int8" for g in activation_groups(model, "all-tensors")})
    result["qevo_all_tensors"] = evaluator.evaluate(everything)
    return result


def print_table(rows: list[dict]) -> None:
    print("| model (metric, test samples) | fp32 | QNN helper W8A8 | qevo W8A8, all-tensors: tensors, metric (gap "
          "to QNN) | quantize_static W8A8 | qevo W8A8, qdq-ops: tensors, metric (gap to quantize_static) "
          "| quantize_static W8A8, layer ops only | qevo W8A8, layer-inputs (gap to layer ops only) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        qnn, static, layers = r.get("qnn"), r.get("static"), r.get("static_layers")
        def gap(value, other):
            return f"{value - other:+.2f}" if other is not None and value is not None else "-"
        def shown(value, error=None):
            return f"{value:.2f}" if value is not None else f"failed: {error}" if error else "-"
        qdq = r.get("qevo_qdq_ops")
        print(f"| {r['model']} ({r['metric']}, {r['samples']}) | {r['fp32']:.2f} | {shown(qnn, r.get('qnn_error'))} "
              f"| {r['tensors']}: {r['qevo_all_tensors']:.2f} ({gap(r['qevo_all_tensors'], qnn)}) "
              f"| {shown(static, r.get('static_error'))} | {r.get('qdq_ops_tensors', '-')}: {shown(qdq)} "
              f"({gap(qdq, static)}) | {shown(layers, r.get('static_layers_error'))} | "
              f"{r['qevo_layer_inputs']:.2f} ({gap(r['qevo_layer_inputs'], layers)}) |")


def main(argv=None) -> int:
    return per_model_main(__doc__.splitlines()[0], OUT, check, print_table, argv,
                          names=["digits", "orientation", "ppocr-cls", "magika"], echo=True)


if __name__ == "__main__":
    sys.exit(main())
