"""Measured evaluation on the bundled default model, checked against onnxruntime itself."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from qevo_cli.defaults import DEFAULT_MODEL
from qevo_cli.evaluate import run_session
from qevo_cli.metrics import resolve_metric
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.sensitivity import measure_sensitivity


def _uniform(evaluator, **choice):
    return Policy.uniform([layer.name for layer in evaluator.model.layers], LayerChoice(**choice))


def test_fp32_metric_equals_plain_onnxruntime_run(default_workspace, default_evaluator):
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": default_workspace.data.inputs["image"]})[0]
    plain = 100.0 * np.mean(logits.argmax(axis=1) == default_workspace.data.labels)
    assert default_evaluator.fp32_score == pytest.approx(plain)
    assert default_evaluator.evaluate(Policy()) == pytest.approx(plain)
    assert plain >= 97.0


def test_w8a8_close_to_fp32_and_2bit_clearly_worse(default_evaluator):
    fp32 = default_evaluator.fp32_score
    w8a8 = default_evaluator.evaluate(_uniform(default_evaluator, weight="int8", activation="int8"))
    w2 = default_evaluator.evaluate(_uniform(default_evaluator, weight="int2", activation="int8"))
    assert abs(fp32 - w8a8) <= 1.0
    assert w2 < fp32 - 20.0


class _Reader(CalibrationDataReader):
    def __init__(self, dataset):
        self._batches = iter(dataset.batches())

    def get_next(self):
        return next(self._batches, None)


def test_simulated_w8a8_matches_onnxruntime_quantize_static(tmp_path, default_workspace, default_evaluator):
    """qevo's simulation against the real QDQ model onnxruntime makes with the same settings."""
    out = tmp_path / "w8a8.onnx"
    quantize_static(str(DEFAULT_MODEL), str(out), _Reader(default_workspace.calib), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "Gemm", "MatMul"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(out)).graph.node)
    # run with qevo's session options: no fusion of Q/DQ into the host CPU's integer kernels
    outputs = run_session(ort.InferenceSession(str(out), default_evaluator.options, providers=["CPUExecutionProvider"]),
                          default_workspace.data)
    theirs = default_evaluator.metric(outputs, default_workspace.data.labels, default_evaluator.reference)
    ours = default_evaluator.evaluate(_uniform(default_evaluator, weight="int8", activation="int8",
                                               granularity="per-channel", calibration="minmax"))
    assert abs(ours - theirs) <= 0.5
    agreement = resolve_metric("agreement")
    assert agreement(outputs, None, default_evaluator.outputs(_uniform(default_evaluator))) >= 99.0


def test_quantized_weights_are_computed_once_per_layer_and_choice(default_evaluator):
    editor = default_evaluator.editor
    editor._simulated.clear()
    policy_a = Policy({"conv5": LayerChoice(weight="int4"), "fc": LayerChoice(weight="int8")})
    policy_b = Policy({"conv5": LayerChoice(weight="int4", activation="int16"), "fc": LayerChoice(weight="int4")})
    default_evaluator.evaluate(policy_a)
    first = editor.simulated_weight(default_evaluator.model.layer("conv5"), LayerChoice(weight="int4"))
    default_evaluator.evaluate(policy_b)
    assert len(editor._simulated) == 3   # conv5 int4 reused; fc int8 and fc int4
    assert editor.simulated_weight(default_evaluator.model.layer("conv5"),
                                   LayerChoice(weight="int4", activation="fp32")) is first


@pytest.mark.parametrize("activation", ["int8", "int16", "dynamic-int8", "fp16"])
@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy", "mse"])
def test_every_activation_format_and_calibration_runs(default_evaluator, activation, calibration):
    policy = _uniform(default_evaluator, weight="fp32", activation=activation, calibration=calibration)
    sqnr = resolve_metric("sqnr")
    outputs = default_evaluator.outputs(policy)
    value = sqnr(outputs, None, default_evaluator.reference)
    assert 15.0 < value <= 100.0
    if activation == "int16":
        coarse = sqnr(default_evaluator.outputs(_uniform(default_evaluator, weight="fp32", activation="int8",
                                                         calibration=calibration)), None, default_evaluator.reference)
        assert value > coarse


def test_static_ranges_follow_the_calibration_method(default_evaluator):
    tensor = default_evaluator.model.layer("fc").input
    lo, hi = default_evaluator.calibrator.range(tensor, "minmax", 8)
    for method in ("percentile", "entropy", "mse"):
        m_lo, m_hi = default_evaluator.calibrator.range(tensor, method, 8)
        assert lo <= m_lo and m_hi <= hi + 1e-6
    for method in ("percentile", "entropy", "mse"):   # each clips the outliers of this ReLU output
        assert default_evaluator.calibrator.range(tensor, method, 8)[1] < hi


def test_custom_metric_from_file(tmp_path, default_workspace):
    metric_file = tmp_path / "my_metric.py"
    metric_file.write_text(
        "import numpy as np\n"
        "def top2(outputs, labels):\n"
        "    top = np.argsort(outputs[0], axis=1)[:, -2:]\n"
        "    return 100.0 * float(np.mean((top == labels[:, None]).any(axis=1)))\n")
    metric = resolve_metric(f"{metric_file}:top2")
    from qevo_cli.evaluate import Evaluator
    evaluator = Evaluator(default_workspace.model, default_workspace.data, metric, default_workspace.calib)
    assert evaluator.fp32_score >= 99.0
    assert evaluator.evaluate(_uniform(evaluator, weight="int2", activation="int8")) < evaluator.fp32_score


def test_sensitivity_table_differs_by_layer_and_is_cached(default_workspace, isolated_cache):
    from qevo_cli.evaluate import Evaluator
    evaluator = Evaluator(default_workspace.model, default_workspace.data, resolve_metric("sqnr"),
                          default_workspace.calib)
    table = measure_sensitivity(evaluator, weight_formats=("int2", "int4", "int8"), activation_formats=("int8",))
    assert not table.from_cache and set(table.drops) == {layer.name for layer in evaluator.model.layers}
    w2 = [row["W:int2"] for row in table.drops.values()]
    assert max(w2) - min(w2) > 1.0                                     # layers differ
    assert all(row["W:int2"] > row["W:int8"] for row in table.drops.values())
    assert list((isolated_cache / "sensitivity").glob("*.json"))
    again = measure_sensitivity(evaluator, weight_formats=("int2", "int4", "int8"), activation_formats=("int8",))
    assert again.from_cache and again.drops == table.drops
    other = measure_sensitivity(evaluator, weight_formats=("int4",), activation_formats=())
    assert not other.from_cache
