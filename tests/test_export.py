"""Every weight a real model holds, and exports that measure what the search measured: one test per failure
seen on third-party models (embedding tables, LSTMs in If branches, fp16 models, x @ x, weights listed as
inputs, opset 7, int2 and int16 exports, metric scales, onnxruntime's own output)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

import tiny_models
from qevo_cli.cli import app
from qevo_cli.config import SearchConfig
from qevo_cli.cost import model_cost
from qevo_cli.data import load_data
from qevo_cli.evaluate import Evaluator, verbose_runtime
from qevo_cli.export import export_onnx
from qevo_cli.metrics import resolve_metric, tolerance_in_metric_units
from qevo_cli.model import load_model
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.profiles import load_profile
from qevo_cli.search import run_search
from qevo_cli.units import human

RNG = np.random.default_rng(11)
runner = CliRunner()


def _evaluator(tmp_path, model, arrays, metric="sqnr"):
    loaded = load_model(tiny_models.save(model, tmp_path / "m.onnx"))
    np.savez(tmp_path / "d.npz", **arrays)
    return Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric(metric))


def _export_matches(evaluator, policy, path):
    """Export `policy`, load it with onnxruntime's defaults too, and return the report; the measurement
    must equal the search's."""
    expected = evaluator.evaluate(policy)
    report = export_onnx(evaluator, policy, path, expected=expected)
    assert report.measured == expected, (report.measured, expected)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return report


def test_embedding_tables_einsum_and_a_budget_below_int8(tmp_path):
    ids = RNG.integers(0, 4000, size=(16, 8)).astype(np.int64)
    evaluator = _evaluator(tmp_path, tiny_models.embedding_encoder(vocab=4000), {"ids": ids})
    layers = {layer.name: layer for layer in evaluator.model.layers}
    assert layers["embed"].kind == "embedding" and layers["embed"].weight_only and layers["embed"].macs == 0
    assert layers["head"].op_type == "Einsum" and layers["head"].channel_axis == 1 and layers["head"].reduce_axis == 0
    assert layers["head"].macs == 16 // 16 * 8 * 32 * 4   # batch 1 for counting: s x d x k
    assert not [h for h in evaluator.model.holders() if h.layer is None]
    policy = Policy({"embed": LayerChoice("int4", "fp32", "per-group-32"), "position": LayerChoice("int8", "fp32"),
                     "proj": LayerChoice("int4", "int8"), "head": LayerChoice("int8", "int16")})
    report = _export_matches(evaluator, policy, tmp_path / "e.onnx")
    stored = {t.name: t.data_type for t in onnx.load(str(report.path)).graph.initializer}
    assert "table" not in stored and onnx.TensorProto.INT4 in stored.values()
    # with the table quantizable, a size below 0.6x uniform int8 exists (the table alone was 0.86x before)
    profile = load_profile("arm-neon")
    weights = [layer for layer in evaluator.model.layers if layer.weight]
    int8 = model_cost(weights, Policy.uniform([l.name for l in weights], LayerChoice("int8", "fp32")), profile,
                      evaluator.model.other_bytes).weight_bytes
    int4 = model_cost(weights, Policy.uniform([l.name for l in weights], LayerChoice("int4", "fp32")), profile,
                      evaluator.model.other_bytes).weight_bytes
    assert int4 < 0.6 * int8
    # the file as predicted, less the few hundred bytes the added nodes take
    assert abs(report.file_bytes / model_cost(evaluator.model.layers, policy, profile,
                                              evaluator.model.other_bytes).weight_bytes - 1) < 0.05


def test_lstm_weights_built_by_slices_inside_an_if_are_quantized_and_exported(tmp_path):
    x = RNG.standard_normal((40, 1, 8)).astype(np.float32)
    evaluator = _evaluator(tmp_path, tiny_models.lstm_in_if(), {"x": x, "flag": np.array(True)})
    layers = {layer.name: layer for layer in evaluator.model.layers}
    assert set(layers) == {"lstm/W", "lstm/R"}
    assert all(layer.kind == "recurrent" and layer.subgraph == "branch/then_branch/" for layer in layers.values())
    assert layers["lstm/W"].weight_shape == (1, 64, 8) and layers["lstm/W"].macs == 5 * 64 * 8
    assert any("slice, concatenate or reshape" in note for note in evaluator.model.notes)
    assert evaluator.fp32_score == 100.0
    policy = Policy({"lstm/W": LayerChoice("int4", "fp32", "per-group-32"), "lstm/R": LayerChoice("int2", "fp32")})
    assert evaluator.evaluate(policy) < 100.0        # the quantized weights are the ones the LSTM reads
    _export_matches(evaluator, policy, tmp_path / "l.onnx")


def test_fp16_model_evaluates_and_exports_in_its_own_type(tmp_path):
    x = RNG.standard_normal((16, 3, 6, 6)).astype(np.float16)
    evaluator = _evaluator(tmp_path, tiny_models.half_precision(), {"x": x})
    assert evaluator.model.float_type == onnx.TensorProto.FLOAT16
    for choice in (LayerChoice("int8", "int8"), LayerChoice("int4", "int16", "per-group-32"),
                   LayerChoice("int4", "dynamic-int8"), LayerChoice("int2", "fp32"), LayerChoice("fp16", "fp16")):
        policy = Policy.uniform(["conv", "gemm"], choice)
        assert np.isfinite(evaluator.evaluate(policy))
        if choice.weight_bits >= 8:
            assert evaluator.evaluate(policy) > 20
        report = _export_matches(evaluator, policy, tmp_path / "h.onnx")
        graph = onnx.load(str(report.path)).graph
        assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_x_times_x_with_quantized_activations_exports(tmp_path):
    x = RNG.standard_normal((8, 4, 4)).astype(np.float32)
    evaluator = _evaluator(tmp_path, tiny_models.self_product(), {"x": x})
    policy = Policy({"proj": LayerChoice("int8", "int8"), "square": LayerChoice("fp32", "int8")})
    report = _export_matches(evaluator, policy, tmp_path / "x.onnx")
    nodes = onnx.load(str(report.path)).graph.node
    assert sum(node.op_type == "QuantizeLinear" for node in nodes) == 2   # one for x, one for h (used twice)


def test_weights_listed_as_graph_inputs_export(tmp_path):
    x = RNG.standard_normal((16, 3, 6, 6)).astype(np.float32)
    evaluator = _evaluator(tmp_path, tiny_models.weights_as_inputs(), {"x": x})
    report = _export_matches(evaluator, Policy.uniform(["conv", "gemm"], LayerChoice("int8", "int8")),
                             tmp_path / "w.onnx")
    inputs = [value.name for value in onnx.load(str(report.path)).graph.input]
    assert "cw" not in inputs and "gw" not in inputs and "cb" in inputs   # replaced weights leave the inputs


def test_opset7_ir3_model_exports(tmp_path):
    x = RNG.standard_normal((12, 1, 12)).astype(np.float32)
    model = tiny_models.opset7_ir3()
    loaded = load_model(tiny_models.save(model, tmp_path / "m.onnx"))
    assert loaded.proto.ir_version >= 8
    evaluator = _evaluator(tmp_path, model, {"x": x[:, 0]})
    for choice in (LayerChoice("int8", "int8"), LayerChoice("int2", "int16"), LayerChoice("int4", "fp32")):
        _export_matches(evaluator, Policy.uniform(["fc1", "fc2"], choice), tmp_path / "o.onnx")


def test_int2_export_is_smaller_than_int4_and_int8(tmp_path):
    ids = RNG.integers(0, 4000, size=(16, 8)).astype(np.int64)
    evaluator = _evaluator(tmp_path, tiny_models.embedding_encoder(vocab=4000), {"ids": ids})
    sizes = {}
    for weight in ("int2", "int4", "int8"):
        policy = Policy({layer.name: LayerChoice(weight, "fp32" if layer.weight_only else "int8")
                         for layer in evaluator.model.layers})
        sizes[weight] = _export_matches(evaluator, policy, tmp_path / f"{weight}.onnx").file_bytes
    assert sizes["int2"] < sizes["int4"] < sizes["int8"]


def test_every_front_policy_exports_what_the_search_measured(tmp_path):
    """A whole front, int16 activations and int2 weights included: no export may differ from the search."""
    config = SearchConfig(target="arm-neon", objectives=("metric", "size"), pop=12, generations=3,
                          act_formats=("int8", "int16"), out=str(tmp_path / "run"))
    result = run_search(config)
    front = json.loads((result.run_dir / "front.json").read_text())
    for solution in front["solutions"]:
        exported = runner.invoke(app, ["export", str(result.run_dir), str(tmp_path / "p.onnx"), "--pick",
                                       str(solution["id"]), "--tolerance", "0", "--json"])
        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.stdout)["difference"] == 0


def test_drops_of_a_0_to_1_metric_read_in_points_and_tolerance_is_relative(tmp_path):
    assert human("metric", 0.0012, "fraction") == "+0.12 pt"
    assert human("metric", 0.0012, "") == "+0.0012"
    assert human("metric", 0.5, "%") == "+0.50"
    assert tolerance_in_metric_units(0.5, 0.97) == pytest.approx(0.00485)
    assert tolerance_in_metric_units(0.5, 98.7) == pytest.approx(0.4935)
    metric_file = tmp_path / "scores.py"
    metric_file.write_text("import numpy as np\n\ndef closeness(outputs, labels):\n"
                           "    return float(np.mean(np.argmax(outputs[0], 1) == labels))\n")
    run = tmp_path / "run"
    searched = runner.invoke(app, ["search", "--target", "arm-neon", "--pop", "8", "--generations", "2",
                                   "--metric", f"{metric_file}:closeness", "--out", str(run)])
    assert searched.exit_code == 0, searched.output
    assert "closeness drop" in searched.stdout and str(metric_file) not in searched.stdout
    assert " pt" in searched.stdout
    front = json.loads((run / "front.json").read_text())
    assert front["metric_unit"] == "fraction" and front["metric_label"] == "closeness"
    exported = runner.invoke(app, ["export", str(run), str(tmp_path / "c.onnx"), "--json"])
    report = json.loads(exported.stdout)
    assert report["tolerance"] == pytest.approx(0.005 * front["fp32_metric"])


def test_onnxruntime_is_quiet_unless_verbose(tmp_path, capfd):
    model = tiny_models.conv_gemm()
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(3, np.float32), "unused"))
    data = model.SerializeToString()
    capfd.readouterr()
    ort.InferenceSession(data, providers=["CPUExecutionProvider"])   # onnxruntime warns of the unused initializer
    assert capfd.readouterr().err == ""
    verbose_runtime(True)
    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert "unused" in capfd.readouterr().err
    finally:
        verbose_runtime(False)


def test_inspect_reports_weights_out_of_reach(tmp_path):
    path = tiny_models.save(tiny_models.contrib_matmul(), tmp_path / "c.onnx")
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    weights = {w["tensor"]: w for w in report["weights"]}
    assert weights["w"]["layer"] == "plain" and weights["wf"]["layer"] is None
    assert "com.microsoft" in weights["wf"]["why"] and weights["wf"]["op_types"] == ["com.microsoft.FusedMatMul"]
    assert report["totals"]["weights_out_of_reach"] == 1
    assert report["totals"]["out_of_reach_share"] == pytest.approx(6 * 8 * 4 / report["totals"]["file_bytes"])
    shown = runner.invoke(app, ["inspect", str(path)])
    assert "1 of 2 constant weights qevo cannot quantize" in shown.stdout


def test_a_model_qevo_exported_can_be_searched_and_exported_again(tmp_path):
    """The editor's short names (q0.w, q0.a0.s, 2bit.two ...) must not clash with those already in the model."""
    x = RNG.standard_normal((16, 3, 6, 6)).astype(np.float32)
    first = _evaluator(tmp_path, tiny_models.conv_gemm(), {"x": x})
    once = export_onnx(first, Policy({"conv": LayerChoice("int2", "int8")}), tmp_path / "once.onnx")
    again = _evaluator(tmp_path, onnx.load(str(once.path)), {"x": x})
    assert [layer.name for layer in again.model.layers] == ["gemm"]     # conv's weight is stored as integers now
    _export_matches(again, Policy({"gemm": LayerChoice("int2", "int8")}), tmp_path / "twice.onnx")


@pytest.mark.parametrize("scope", ["all-tensors", "qdq-ops"])
def test_fp16_model_with_quantized_tensors_exports_in_its_own_type(tmp_path, scope):
    """Every tensor quantized on a half-precision model: its biases and constants stored as integers are
    dequantized and cast back to fp16, and the file measures what the evaluator did."""
    from qevo_cli.scope import activation_groups

    x = RNG.standard_normal((16, 3, 6, 6)).astype(np.float16)
    evaluator = _evaluator(tmp_path, tiny_models.half_precision(), {"x": x})
    tensors = {g.tensor: "int8" for g in activation_groups(evaluator.model, scope)}
    policy = Policy({"conv": LayerChoice("int8", "int8"), "gemm": LayerChoice("int4", "int8")},
                    tensors=tensors, scope=scope)
    report = _export_matches(evaluator, policy, tmp_path / "t.onnx")
    graph = onnx.load(str(report.path)).graph
    assert any(t.data_type == onnx.TensorProto.INT32 for t in graph.initializer)   # the biases, as int32


def test_the_bias_bias_correction_gives_a_conv_without_one_is_counted_in_the_size(tmp_path):
    """A Conv without a bias gets one from bias correction: the exported file grows by it, and so must the size
    the search costs (on the zoo's orientation CNN, 32 such Convs made the file 5% larger than predicted)."""
    x = RNG.standard_normal((16, 3, 8, 8)).astype(np.float32)
    evaluator = _evaluator(tmp_path, tiny_models.residual_block(), {"x": x})
    layer = next(layer for layer in evaluator.model.layers if layer.name == "conv3")
    assert layer.bias is None and layer.weight_shape[0] == 12
    profile = load_profile("arm-neon")
    sizes, files = {}, {}
    for corrected in (False, True):
        policy = Policy({"conv3": LayerChoice("int8", "fp32", bias_correction=corrected)})
        files[corrected] = _export_matches(evaluator, policy, tmp_path / f"bc{corrected}.onnx").file_bytes
        sizes[corrected] = model_cost(evaluator.model.layers, policy, profile,
                                      evaluator.model.other_bytes).weight_bytes
    grown = files[True] - files[False]
    assert grown >= 12 * 4                                  # twelve float32 biases, at least
    assert abs((sizes[True] - sizes[False]) - grown) <= 16  # the prediction grows by as much, to a few bytes
