"""Second-order rounding (GPTQ): the layer's inputs as the weight reads them, and weights that move the
layer's output less than rounding to nearest on the same grid."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from qevo_cli.recovery import gptq_codes, input_columns, output_error, weight_matrix


def _conv_output(weight, x, attributes):
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attributes)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("y", 1, None)], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("attributes, in_per_group", [
    ({"pads": [1, 0, 2, 1], "strides": [2, 1], "dilations": [1, 2], "group": 2}, 2),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 4),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 4),
    ({"group": 4, "pads": [1, 1, 1, 1]}, 1),          # depthwise
])
def test_conv_input_columns_give_what_onnxruntime_computes(attributes, in_per_group):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, in_per_group, 3, 3)).astype(np.float32)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    columns = input_columns("Conv", x, attributes, weight.shape, 0)
    matrix = weight_matrix(weight, 0)
    rows = len(matrix) // len(columns)
    ours = np.concatenate([matrix[g * rows:(g + 1) * rows] @ c for g, c in enumerate(columns)])
    reference = _conv_output(weight, x, attributes)
    np.testing.assert_allclose(ours, reference.transpose(1, 0, 2, 3).reshape(8, -1), atol=1e-5)


def test_matmul_and_gemm_input_columns():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 6))
    right = rng.standard_normal((6, 4))                 # x @ W, output channels on axis 1
    np.testing.assert_allclose(weight_matrix(right, 1) @ input_columns("MatMul", x, {}, right.shape, 1)[0],
                               (x @ right).reshape(-1, 4).T)
    left = rng.standard_normal((4, 5))                  # W @ x, output channels on axis 0
    np.testing.assert_allclose(weight_matrix(left, 0) @ input_columns("MatMul", x, {}, left.shape, 0)[0],
                               np.moveaxis(left @ x, 1, 0).reshape(4, -1))
    a = rng.standard_normal((6, 7))                     # Gemm with transA: A is [K, M]
    b = rng.standard_normal((4, 6))                     # transB: W is [N, K]
    np.testing.assert_allclose(weight_matrix(b, 0) @ input_columns("Gemm", a, {"transA": 1}, b.shape, 0)[0],
                               (a.T @ b.T).T)


@pytest.mark.parametrize("bits, groups", [(4, 1), (3, 1), (4, 4)])
def test_gptq_moves_the_output_less_than_rounding_to_nearest_on_the_same_grid(bits, groups):
    rng = np.random.default_rng(2)
    # correlated inputs, as real activations are: GPTQ's gain comes from the off-diagonal of X Xᵀ
    basis = np.linalg.qr(rng.standard_normal((48, 48)))[0] * np.linspace(0.2, 3.0, 48)
    x = basis @ rng.standard_normal((48, 3000))
    weight = rng.standard_normal((16, 48))
    qmax = 2 ** (bits - 1) - 1
    size = 48 // groups   # one scale per output channel and group of inputs
    scale = np.repeat(np.abs(weight.reshape(16, groups, size)).max(axis=2) / qmax, size, axis=1)
    gram = x @ x.T
    nearest = np.clip(np.round(weight / scale), -qmax, qmax)
    codes = gptq_codes(weight, scale, 0, -qmax, qmax, gram)
    assert codes.dtype.kind == "i" and codes.min() >= -qmax and codes.max() <= qmax
    ours, theirs = output_error(weight, codes * scale, gram), output_error(weight, nearest * scale, gram)
    assert ours < 0.8 * theirs
    # the error is measured on the inputs themselves, not only through the Gram matrix
    assert np.sum(((codes * scale - weight) @ x) ** 2) == pytest.approx(ours, rel=1e-9)


def test_an_input_that_never_varies_does_not_break_the_inverse():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 500))
    x[3] = 0.0
    weight = rng.standard_normal((4, 8))
    scale = np.abs(weight).max(axis=1, keepdims=True) / 7
    codes = gptq_codes(weight, scale, 0, -7, 7, x @ x.T)
    assert np.isfinite(codes).all() and codes.min() >= -7 and codes.max() <= 7


def test_gptq_policies_measure_better_and_export_exactly_what_was_measured(tmp_path):
    """W3 weights with gptq rounding on a small CNN (Conv, Relu, residual add, concat, Gemm head): the model's
    output stays closer to fp32 than with rounding to nearest, and the stored export (DequantizeLinear codes)
    measures exactly what the evaluator measured."""
    import tiny_models
    from qevo_cli.data import load_data
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.export import export_onnx
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.policy import LayerChoice, Policy

    loaded = load_model(tiny_models.save(tiny_models.residual_concat(), tmp_path / "r.onnx"))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    nearest = Policy({layer.name: LayerChoice("int4", "fp32") for layer in loaded.layers})
    second = Policy({layer.name: LayerChoice("int4", "fp32", rounding="gptq") for layer in loaded.layers})
    assert "rounding" not in str(nearest.to_dict()) and Policy.from_dict(second.to_dict()) == second
    assert evaluator.evaluate(second) > evaluator.evaluate(nearest) + 1.0   # dB of output SQNR
    report = export_onnx(evaluator, second, tmp_path / "gptq.onnx", expected=evaluator.evaluate(second))
    assert report.difference == 0
    # per-group scales and an asymmetric grid take the same path
    grouped = Policy({layer.name: LayerChoice("int4", "int8", "per-group-32", symmetric=False, rounding="gptq")
                      for layer in loaded.layers})
    report = export_onnx(evaluator, grouped, tmp_path / "grouped.onnx", expected=evaluator.evaluate(grouped))
    assert report.difference == 0
    # the clipping chosen for the least output error, under gptq rounding
    clipped = Policy({layer.name: LayerChoice("int4", "fp32", weight_range="output-mse", rounding="gptq")
                      for layer in loaded.layers})
    assert evaluator.evaluate(clipped) != evaluator.evaluate(second)
    report = export_onnx(evaluator, clipped, tmp_path / "clipped.onnx", expected=evaluator.evaluate(clipped))
    assert report.difference == 0


def test_bias_correction_removes_the_mean_output_shift_and_exports_what_was_measured(tmp_path):
    """W4 per-tensor weights on a CNN whose inputs are not centred (a shift rounding turns into a bias error): correcting
    the biases (conv2 has none and gets one; the head is a MatMul with a bias Add) brings the output closer
    to fp32, on its own and with gptq, and the export measures exactly that, also with every tensor quantized."""
    import onnx
    import tiny_models
    from onnx import TensorProto, helper as onnx_helper
    from qevo_cli.data import load_data
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.export import export_onnx
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.recovery import corrects_bias
    from qevo_cli.scope import activation_groups

    model = tiny_models.residual_concat()
    graph = model.graph
    head = next(n for n in graph.node if n.name == "head")          # Gemm -> MatMul + Add of a bias
    graph.node.remove(head)
    graph.node.extend([onnx_helper.make_node("MatMul", ["flat", "w4t"], ["mm"], name="head"),
                       onnx_helper.make_node("Add", ["mm", "b4"], ["y"], name="head_bias")])
    w4 = next(t for t in graph.initializer if t.name == "w4")
    graph.initializer.extend([numpy_helper.from_array(numpy_helper.to_array(w4).T.copy(), "w4t"),
                              numpy_helper.from_array(np.linspace(-1, 1, 5).astype(np.float32), "b4")])
    loaded = load_model(tiny_models.save(model, tmp_path / "m.onnx"))
    assert {l.name: corrects_bias(l) for l in loaded.layers} == {"conv1": True, "conv2": True, "conv3": True,
                                                                 "head": True}
    assert loaded.layer("head").bias == "b4" and loaded.layer("conv2").bias is None
    x = (np.random.default_rng(5).standard_normal((64, 3, 8, 8)) + 1.5).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))

    def uniform(**fields):
        return Policy({layer.name: LayerChoice("int4", "fp32", "per-tensor", **fields) for layer in loaded.layers})

    plain, corrected = uniform(), uniform(bias_correction=True)
    assert "bias_correction" not in str(plain.to_dict()) and Policy.from_dict(corrected.to_dict()) == corrected
    assert evaluator.evaluate(corrected) > evaluator.evaluate(plain)
    both = uniform(bias_correction=True, rounding="gptq")
    assert evaluator.evaluate(both) > evaluator.evaluate(uniform(rounding="gptq"))
    for name, policy in (("c", corrected), ("b", both)):
        report = export_onnx(evaluator, policy, tmp_path / f"{name}.onnx", expected=evaluator.evaluate(policy))
        assert report.difference == 0
    # with every tensor quantized, the corrected biases are the ones stored as int32 / uint8 constants
    tensors = {g.tensor: "int8" for g in activation_groups(loaded, "qdq-ops")}
    quantized = Policy({n: LayerChoice("int4", "int8", "per-channel", bias_correction=True) for n in corrected.layers},
                       tensors=tensors, scope="qdq-ops")
    report = export_onnx(evaluator, quantized, tmp_path / "q.onnx", expected=evaluator.evaluate(quantized))
    assert report.difference == 0
    stored = onnx.load(str(tmp_path / "q.onnx"))
    assert not any(t.name.endswith(".b") and t.data_type == TensorProto.FLOAT for t in stored.graph.initializer)


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor", "per-group-32"])
def test_output_mse_range_clips_for_the_least_output_error(granularity):
    """The output-mse weight range picks each channel's clipping by the layer's output error on the inputs,
    so that error is never above the full range's or the weight-MSE range's, and here below both."""
    from qevo_cli.policy import LayerChoice
    from qevo_cli.quantize import quantize_weight

    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.standard_normal((64, 64)))[0] * np.linspace(0.1, 4.0, 64)
    x = (basis @ rng.standard_normal((64, 4000))).T            # [samples, K], as a MatMul reads it
    weight = rng.standard_t(3, size=(64, 24)).astype(np.float32)   # x @ W, heavy-tailed, outputs on axis 1
    gram = input_columns("MatMul", x, {}, weight.shape, 1)[0]
    gram = gram @ gram.T

    def error(weight_range):
        rounded = quantize_weight(weight, LayerChoice("int3", "fp32", granularity, weight_range=weight_range), 1, gram)
        return output_error(weight_matrix(weight, 1), weight_matrix(rounded, 1), gram)

    full, mse, output = error("minmax"), error("mse"), error("output-mse")
    assert output <= min(full, mse) * (1 + 1e-9) and output < full


def test_inspect_shows_each_layers_drop_with_and_without_recovery(tmp_path, monkeypatch):
    """`qevo inspect --sensitivity --recovery`: recovered columns beside the plain ones, in the proxy (predicted)
    and in the full table (measured), and recovery lowers the drops at 2 bits overall."""
    import json

    from typer.testing import CliRunner

    from qevo_cli.cli import app

    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    for extra in ([], ["--full"]):
        result = runner.invoke(app, ["inspect", "--sensitivity", "--recovery", "--json", *extra])
        assert result.exit_code == 0, result.output
        sensitivity = json.loads(result.stdout)["sensitivity"]
        assert {"W:int2+r", "W:int3+r", "W:int4+r"} <= set(sensitivity["columns"])
        cells = sensitivity["drops"] if extra else sensitivity["sqnr_db"]
        plain = sum(row["W:int2"] for row in cells.values())
        recovered = sum(row["W:int2+r"] for row in cells.values())
        assert recovered < plain if extra else recovered > plain   # a drop falls, an SQNR rises
    assert runner.invoke(app, ["inspect", "--recovery"]).exit_code == 2


def _outlier_matmul_model(path, rng, gemm: bool = False):
    """x -> LayerNormalization -> MatMul (+ bias Add) -> Relu -> MatMul, plus a residual that reads the norm's
    output, as a post-norm transformer's does; a few input channels are 50 times larger than the rest."""
    import onnx
    from onnx import TensorProto

    d, h = 32, 48
    scale = np.ones(d, np.float32)
    scale[[3, 17]] = 50.0                                     # outlier channels survive the norm through its scale
    initializers = [numpy_helper.from_array(scale, "gamma"), numpy_helper.from_array(np.zeros(d, np.float32), "beta"),
                    numpy_helper.from_array(rng.standard_normal((d, h)).astype(np.float32) * 0.2, "w1"),
                    numpy_helper.from_array(rng.standard_normal(h).astype(np.float32) * 0.1, "b1"),
                    numpy_helper.from_array(rng.standard_normal((h, d)).astype(np.float32) * 0.2, "w2")]
    first = [helper.make_node("Gemm", ["n", "w1t", "b1"], ["a"], name="fc1", transB=1)] if gemm else \
        [helper.make_node("MatMul", ["n", "w1"], ["m"], name="fc1"), helper.make_node("Add", ["m", "b1"], ["a"])]
    if gemm:
        initializers.append(numpy_helper.from_array(numpy_helper.to_array(initializers[2]).T.copy(), "w1t"))
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=-1), *first,
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["o"], name="fc2"),
             helper.make_node("Add", ["o", "n"], ["y"])]
    shape = ["batch", d]
    graph = helper.make_graph(nodes, "smooth", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("gemm", [False, True])
@pytest.mark.parametrize("scope", ["layer-inputs", "qdq-ops"])
def test_smoothing_lowers_the_output_error_of_outlier_inputs_and_exports_what_was_measured(tmp_path, gemm, scope):
    """W8A8 on a layer whose input has outlier channels: smoothing (SmoothQuant, alpha 0.5 and 0.8) brings the
    model's output closer to fp32 than plain per-tensor activations, the exported file (a Mul in front of the
    layer, the scaled weight stored as int8 codes) measures exactly that, and with every op's tensors
    quantized (qdq-ops) the smoothed layer still reads its own Q/DQ."""
    import onnx
    from qevo_cli.data import load_data
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.export import export_onnx
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.scope import activation_groups
    from qevo_cli.smoothing import smooths

    rng = np.random.default_rng(8)
    loaded = load_model(_outlier_matmul_model(tmp_path / "m.onnx", rng, gemm))
    assert smooths(loaded.layer("fc1"))
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((256, 32)).astype(np.float32))
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    tensors = {g.tensor: "int8" for g in activation_groups(loaded, scope)} if scope != "layer-inputs" else {}

    def policy(alpha):
        choice = LayerChoice("int8", "int8", "per-channel", smoothing=alpha)
        return Policy({"fc1": choice, "fc2": LayerChoice("int8", "int8")}, tensors=tensors,
                      scope=scope if tensors else "all-tensors")

    plain = evaluator.evaluate(policy(0.0))
    smoothed = {alpha: evaluator.evaluate(policy(alpha)) for alpha in (0.5, 0.8)}
    # dB of output SQNR; with every op's tensors quantized the residual still reads the norm's output
    # quantized over its outliers, which smoothing one reader cannot change
    assert max(smoothed.values()) > plain + (3.0 if scope == "layer-inputs" else 0.5), (plain, smoothed)
    assert "smoothing" not in str(policy(0.0).to_dict()) and Policy.from_dict(policy(0.5).to_dict()) == policy(0.5)
    report = export_onnx(evaluator, policy(0.5), tmp_path / "s.onnx", expected=smoothed[0.5])
    assert report.difference == 0
    stored = onnx.load(str(tmp_path / "s.onnx"))
    assert sum(n.op_type == "Mul" for n in stored.graph.node) == 1
    # with gptq rounding and bias correction on top, still exact
    both = Policy({**policy(0.8).layers, "fc1": LayerChoice("int4", "int8", smoothing=0.8, rounding="gptq",
                                                            weight_range="output-mse", bias_correction=True)},
                  tensors=tensors, scope=scope if tensors else "all-tensors")
    report = export_onnx(evaluator, both, tmp_path / "b.onnx", expected=evaluator.evaluate(both))
    assert report.difference == 0


def test_smoothing_is_offered_where_it_applies_and_refused_where_it_does_not(tmp_path):
    import onnx
    from qevo_cli.config import SearchConfig
    from qevo_cli.data import load_data
    from qevo_cli.errors import QevoError
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.genome import build_space
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.policy import LayerChoice, Policy
    from qevo_cli.profiles import load_profile

    loaded = load_model(_outlier_matmul_model(tmp_path / "m.onnx", np.random.default_rng(9)))
    config = SearchConfig(target="nvidia-trt", smoothing="none,0.5", weight_range="minmax,output-mse")
    space = build_space(loaded.layers, load_profile("nvidia-trt"), config.allowed())
    offered = {layer.name: {c.smoothing for c in options} for layer, options in zip(space.layers, space.options)}
    assert offered == {"fc1": {0.0, 0.5}, "fc2": {0.0, 0.5}}
    assert all(c.smoothing == 0 or (c.weight_is_int and c.activation == "int8")
               for options in space.options for c in options)
    hexagon = build_space(loaded.layers, load_profile("hexagon"), config.allowed())
    assert {c.smoothing for options in hexagon.options for c in options} == {0.0}
    assert any("smoothing" in note for note in hexagon.notes)
    for bad in ("1.5", "strong", "0"):
        with pytest.raises(QevoError, match="smoothing"):
            SearchConfig(target="hexagon", smoothing=bad).allowed()
    with pytest.raises(QevoError, match="smoothing"):
        LayerChoice(smoothing=2.0)
    assert LayerChoice(smoothing="none").smoothing == 0.0
    model = onnx.load(str(tmp_path / "m.onnx"))   # fc2 as W @ x: not a layer smoothing applies to
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.input[:] = ["w2t", "r"]
    model.graph.node.remove(next(n for n in model.graph.node if n.output[0] == "y"))
    model.graph.node.append(helper.make_node("Identity", ["o"], ["y"]))
    model.graph.initializer.append(numpy_helper.from_array(np.ones((32, 48), np.float32), "w2t"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [32, 48]))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 48
    onnx.save(model, str(tmp_path / "t.onnx"))
    transposed = load_model(tmp_path / "t.onnx")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).standard_normal((48, 32)).astype(np.float32))
    evaluator = Evaluator(transposed, load_data(tmp_path / "d.npz", transposed), resolve_metric("sqnr"))
    assert evaluator.evaluate(Policy({"fc1": LayerChoice("int8", "int8", smoothing=0.5)})) > 20
    with pytest.raises(QevoError, match="smoothing applies"):
        evaluator.evaluate(Policy({"fc2": LayerChoice("int8", "int8", smoothing=0.5)}))


def test_past_its_deadline_the_proxy_estimates_recovered_options_from_those_computed(tmp_path):
    """gptq costs up to seconds a layer: once the seeding deadline passes, a recovered option not computed yet
    takes the median ratio of its kind, computed on other layers, instead of running gptq."""
    import tiny_models
    from qevo_cli.data import load_data
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.policy import LayerChoice
    from qevo_cli.proxy import measure_proxy

    loaded = load_model(tiny_models.save(tiny_models.residual_concat(), tmp_path / "r.onnx"))
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(4).standard_normal((32, 3, 8, 8)).astype(np.float32))
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    table = measure_proxy(evaluator, ("int4",), ())
    plain, recovered = LayerChoice("int4", "fp32"), LayerChoice("int4", "fp32", rounding="gptq")
    first, second = loaded.layer("conv2"), loaded.layer("conv3")
    ratio = table.cost(first, recovered) / table.cost(first, plain)
    assert 0 < ratio < 1 and table.estimated_ratios == 0
    table.deadline = 0.0   # long past
    assert table.cost(second, recovered) / table.cost(second, plain) == pytest.approx(ratio)
    assert table.estimated_ratios == 1


def test_spread_covers_the_front_evenly_whatever_is_cut():
    from qevo_cli.front_recovery import spread

    from qevo_cli.front import Solution
    from qevo_cli.policy import Policy

    rows = [Solution({"size": float(s)}, 0.0, Policy({}), id=s) for s in (5, 1, 3, 0, 6, 2, 4)]
    order = [row.id for row in spread(rows, "size")]
    assert sorted(order) == list(range(7))
    assert order[:3] == [3, 1, 5]   # the middle, then the middles of both halves


def test_recover_front_measures_the_front_again_with_recovered_weights(tmp_path):
    """--recover-front on a small CNN at W2/W4: after the evolution (weights rounded to nearest) each front policy
    is measured again with its weights recovered; recovered policies take the front where they beat their
    source at the same size, and one exported from the front measures what the search measured. Without the
    flag no policy of the run has recovered weights."""
    import tiny_models
    from qevo_cli.config import SearchConfig
    from qevo_cli.cost import BIAS_OVERHEAD_BYTES
    from qevo_cli.export import export_onnx
    from qevo_cli.front_recovery import recovered_policy
    from qevo_cli.policy import Policy
    from qevo_cli.search import Search
    from qevo_cli.store import RunStore

    model = tiny_models.save(tiny_models.residual_concat(), tmp_path / "r.onnx")
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((48, 3, 8, 8)).astype(np.float32))
    settings = dict(model=str(model), data=str(tmp_path / "d.npz"), metric="sqnr", target="arm-dot",
                    objectives=("metric", "size"), weight_formats="int2,int4", act_formats="int8", pop=8,
                    generations=2, racing=False)
    search = Search.new(SearchConfig(out=str(tmp_path / "plain"), **settings))
    plain = search.run()
    assert not any(Policy.from_dict(row["policy"]).is_recovered for row in RunStore(plain.run_dir, create=False).evaluations())

    search = Search.new(SearchConfig(out=str(tmp_path / "finish"), recover_front=True, **settings))
    result = search.run()
    rows = {Policy.from_dict(row["policy"]).key(): row for row in RunStore(result.run_dir, create=False).evaluations()}
    recovered = [s for s in result.front.solutions if s.policy.is_recovered]
    assert recovered, "no recovered policy reached the front"
    assert any("recovering the front" in note for note in result.notes)
    gains = []
    for solution in recovered:
        policy = solution.policy
        source = next(row for row in rows.values() if not Policy.from_dict(row["policy"]).is_recovered and any(
            recovered_policy(search.space, Policy.from_dict(row["policy"]), recipe).key() == policy.key()
            for recipe in ("all", "output-mse")))
        # the same size, but for the bias bias correction gives a Conv without one (stored as floats)
        added = sum(4 * layer.weight_shape[layer.channel_axis] + BIAS_OVERHEAD_BYTES for layer in search.space.layers
                    if layer.bias is None and policy.choice(layer.name).bias_correction)
        assert solution.objectives["size"] == pytest.approx(source["objectives"]["size"] + added / 1e6, rel=0.02)
        gains.append(solution.metric - source["metric"])
    assert max(gains) > 0.5   # dB of output SQNR
    best = max(recovered, key=lambda s: s.metric)
    report = export_onnx(search.evaluator, best.policy, tmp_path / "best.onnx", expected=best.metric)
    assert report.difference == 0
