"""Which tensors a target quantizes, and one placement of their Q/DQ for the measured variant and the export."""
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import tiny_models
from qevo_cli.data import load_data
from qevo_cli.defaults import DEFAULT_MODEL
from qevo_cli.errors import QevoError
from qevo_cli.evaluate import Evaluator
from qevo_cli.export import export_onnx
from qevo_cli.metrics import resolve_metric
from qevo_cli.model import load_model
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.profiles import load_profile
from qevo_cli.scope import activation_groups

LAYERS = ("conv1", "conv2", "conv3", "head")


@pytest.fixture()
def evaluator(tmp_path):
    loaded = load_model(tiny_models.save(tiny_models.residual_concat(), tmp_path / "r.onnx"))
    x = np.random.default_rng(3).standard_normal((24, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    return Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))


def test_the_tensors_each_target_quantizes(evaluator, tmp_path):
    model = evaluator.model
    assert load_profile("nvidia-trt").activation_scope == "layer-inputs"
    assert {load_profile(name).activation_scope for name in ("arm-neon", "arm-dot", "intel-vnni")} == {"qdq-ops"}
    assert load_profile("hexagon").activation_scope == "all-tensors"
    inputs = activation_groups(model, load_profile("nvidia-trt").activation_scope)
    assert [g.tensor for g in inputs] == ["x", "a", "cat", "flat"]
    npu = {g.tensor: g for g in activation_groups(model, load_profile("hexagon").activation_scope)}
    # c1 is read only by a Relu, which the runtime folds into the range of its output; y is the graph's output
    assert set(npu) == {"x", "a", "b", "sum", "cat", "c3", "pool", "flat", "y"}
    assert npu["a"].producer == "relu1" and npu["a"].consumers == ("conv2", "residual", "concat")
    assert npu["x"].producer is None and npu["y"].consumers == ()
    # Flatten only moves values: its output keeps the encoding of its input
    assert npu["flat"].shares == "pool" and npu["pool"].shares is None
    # onnxruntime's CPU provider has integer kernels for every op here, so it quantizes the same tensors
    cpu = {g.tensor: g for g in activation_groups(model, load_profile("arm-neon").activation_scope)}
    assert set(cpu) == set(npu) and cpu["flat"].shares == "pool" and cpu["a"].consumers == npu["a"].consumers
    # but not a tensor that only ops without one (Tanh, Erf) write and read
    island = load_model(tiny_models.save(tiny_models.float_island(), tmp_path / "island.onnx"))
    assert [g.tensor for g in activation_groups(island, "all-tensors")] == ["x", "c", "h", "e", "m", "s", "y"]
    assert [g.tensor for g in activation_groups(island, "qdq-ops")] == ["x", "c", "e", "m", "s", "y"]


@pytest.mark.parametrize("scope", ["all-tensors", "qdq-ops"])
def test_variant_and_export_place_the_same_qdq_tensor_by_tensor(evaluator, tmp_path, scope):
    groups = activation_groups(evaluator.model, scope)
    tensors = {g.tensor: "int8" for g in groups}
    tensors["sum"] = "int16"
    tensors["pool"] = "fp16"
    # the layers' own input formats give way to their input tensors' (quantized once, where produced)
    policy = Policy({"conv1": LayerChoice("int4", "int8"), "conv2": LayerChoice("int2", "int16"),
                     "conv3": LayerChoice("int8", "int8", "per-group-32"), "head": LayerChoice("int8", "int8")},
                    tensors=tensors, scope=scope)
    simulated = evaluator.editor.build(policy)
    stored = evaluator.editor.build(policy, store=True, base=evaluator.editor.at_opset(
        max(17, evaluator.editor.required_opset(policy))))

    def quantized_values(built):
        """Every group tensor as its consumers read it (the output of its Q/DQ pair), and the model output."""
        model = onnx.ModelProto()
        model.CopyFrom(built)
        outputs = {g.tensor: evaluator.editor.tensor_nodes(g.tensor, tensors[g.tensor], tensors, scope).output
                   for g in groups if g.tensor != "y"}   # the graph output keeps its name
        for name in outputs.values():
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
        session = ort.InferenceSession(model.SerializeToString(), evaluator.options, providers=["CPUExecutionProvider"])
        values = session.run(list(outputs.values()) + ["y"], next(evaluator.data.batches()))
        return dict(zip(list(outputs) + ["y"], values))

    a, b = quantized_values(simulated), quantized_values(stored)
    assert set(a) == {g.tensor for g in groups}
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # each group is quantized once, where it is produced: one QuantizeLinear per int group
    quantize = [n for n in stored.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) == sum(fmt != "fp16" for fmt in tensors.values())
    # conv1's bias is stored as int32 at its input's scale times its weight's
    conv1 = next(n for n in stored.graph.node if n.name == "conv1")
    dequantize = next(n for n in stored.graph.node if n.output[0] == conv1.input[2])
    codes = next(t for t in stored.graph.initializer if t.name == dequantize.input[0])
    assert codes.data_type == onnx.TensorProto.INT32 and list(codes.dims) == [4]
    expected = evaluator.evaluate(policy)
    assert expected != evaluator.evaluate(Policy(policy.layers))   # the extra tensors change what is measured
    report = export_onnx(evaluator, policy, tmp_path / "all.onnx", expected=expected)
    assert report.difference == 0


def test_policies_with_tensors_round_trip_and_unknown_tensors_are_refused(evaluator, tmp_path):
    policy = Policy({"head": LayerChoice("int8", "int8")}, tensors={"sum": "int16", "cat": "int8"})
    path = tmp_path / "p.yaml"
    path.write_text(policy.dumps())
    assert Policy.load(path) == policy and "tensors:" in path.read_text()
    assert "tensors" not in Policy({"head": LayerChoice()}).to_dict()     # earlier policies keep their keys
    with pytest.raises(QevoError, match="not a float activation"):
        evaluator.evaluate(Policy(tensors={"w1": "int8"}))
    with pytest.raises(QevoError, match="expected one of fp32, fp16, int8, int16"):
        Policy(tensors={"sum": "int4"})


def test_on_an_every_tensor_target_each_tensor_is_a_gene_and_layers_read_their_format(evaluator):
    from qevo_cli.genome import Allowed, build_space

    model, hexagon = evaluator.model, load_profile("hexagon")
    groups = activation_groups(model, "all-tensors")
    space = build_space(model.layers, hexagon, Allowed(("int4", "int8"), ("int8", "int16")), groups)
    assert space.tensors.names == tuple(g.tensor for g in groups)
    assert space.tensors.options[0] == ("int8", "int16")
    # weights per layer, one format per tensor (flat keeps pool's encoding, so its format too)
    assert space.n_var == len(model.layers) + len(groups) - 1
    # a layer reading a quantized tensor chooses its weights only
    assert all({c.activation for c in options} == {"int8"} for options in space.options)
    x = space.upper.copy()
    x[len(space.genes) + space.tensors.genes.index(space.tensors.names.index("a"))] = 0   # conv2's input at int8
    policy = space.decode(x)
    assert policy.tensors["a"] == "int8" and policy.tensors["sum"] == "int16"
    assert policy.tensors["flat"] == policy.tensors["pool"] == "int16"
    assert policy.choice("conv2").activation == "int8" and policy.choice("conv3").activation == "int16"
    assert np.array_equal(space.encode(policy), x)
    # the ops between layers move their tensors at the tensor's format: int16 costs more time than int8
    from qevo_cli.cost import model_cost
    glue = space.tensors.traffic
    assert glue["sum"] > 0 and glue["a"] > 0
    narrow = space.with_tensors_at(Policy(policy.layers), "int8")
    wide = space.with_tensors_at(Policy(policy.layers), "int16")
    assert model_cost(space.layers, wide, hexagon, glue=glue).latency_s > \
        model_cost(space.layers, narrow, hexagon, glue=glue).latency_s
    # a CPU target's scope adds no gene
    cpu = build_space(model.layers, load_profile("arm-neon"), Allowed(("int4", "int8"), ("int8",)))
    assert not cpu.tensors.names and cpu.n_var == len(model.layers)


def test_a_search_on_an_every_tensor_target_searches_every_tensor(tmp_path):
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import run_search

    result = run_search(SearchConfig(target="hexagon", weight_formats=("int4", "int8"), act_formats=("int8", "int16"),
                                     pop=8, generations=2, out=str(tmp_path / "run")))
    names = [r.name for r in result.front.references]
    assert names == ["fp32", "uniform W8A8", "uniform W8A16"]
    w8a8, w8a16 = (result.front.references[i].policy.to_dict() for i in (1, 2))
    assert len(w8a8["tensors"]) == 11 and set(w8a8["tensors"].values()) == {"int8"}   # 10 read, 1 output
    assert set(w8a16["tensors"].values()) == {"int16"}
    assert {c["activation"] for c in w8a16["layers"].values()} == {"int16"}
    assert any("genes of their own" in note for note in result.notes)
    policies = [s.policy for s in result.front.solutions]
    assert policies and all(len(p.tensors) == 11 for p in policies)
    # the sensitivity proxy probed every tensor, and the first generation holds more than one tensor mix
    import sqlite3
    from qevo_cli.store import RunStore
    with sqlite3.connect(tmp_path / "run" / "evaluations.sqlite") as db:
        probes = [key for (key,) in db.execute("SELECT key FROM probe") if "/T:" in key]
    assert len(probes) == 9   # 11 tensors, two of them keep their input's encoding (MaxPool, Flatten)
    store = RunStore(tmp_path / "run", create=False)
    first = [row for row in store.evaluations() if row["generation"] == 1]
    store.close()
    assert len({tuple(sorted(row["policy"]["tensors"].items())) for row in first}) > 1
    # onnxruntime's CPU provider quantizes the tensors its quantizer places Q/DQ on, under its own rules
    cpu = run_search(SearchConfig(target="arm-dot", pop=8, generations=2, act_formats=("int8",),
                                  out=str(tmp_path / "cpu")))
    assert [r.name for r in cpu.front.references] == ["fp32", "uniform W8A8"]
    placed = {g.tensor for g in activation_groups(load_model(DEFAULT_MODEL), "qdq-ops")}
    policies = [s.policy for s in cpu.front.solutions]
    assert policies and all(p.scope == "qdq-ops" and set(p.tensors) == placed for p in policies)
    # a target whose runtime quantizes layer inputs only keeps policies of layers
    gpu = run_search(SearchConfig(target="nvidia-trt", pop=8, generations=2, act_formats=("int8",),
                                  out=str(tmp_path / "gpu")))
    assert all("tensors" not in s.policy.to_dict() for s in gpu.front.solutions)


def test_ranges_of_layer_inputs_do_not_change_when_other_tensors_are_calibrated(evaluator):
    """Collecting every tensor's range must not move the layer inputs' ranges, or variants built before and
    after measure different grids (and an export in a fresh process disagrees with the search)."""
    calibrator = evaluator.calibrator
    before = {name: calibrator.range(name, "minmax", 8) for name in calibrator.tensors}
    calibrator.tensor_range("sum")
    assert {name: calibrator.range(name, "minmax", 8) for name in before} == before
    assert "sum" not in calibrator.tensors
    with pytest.raises(QevoError, match="no layer reads"):
        calibrator.range("sum", "minmax", 8)


def test_uniform_w8a8_on_every_tensor_computes_what_onnxruntimes_qnn_configuration_writes(tmp_path):
    """qevo's fully quantized W8A8 (int8 per-tensor asymmetric weights, every tensor int8) gives the same outputs
    as the model onnxruntime's `get_qnn_qdq_config` + `quantize` writes from the same calibration data: bias and
    norm constants, the folded Clip, the shared Reshape encoding, the Softmax range and the graph output."""
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    path = tiny_models.save(tiny_models.fully_quantized_ops(), tmp_path / "ops.onnx")
    loaded = load_model(path)
    x = np.random.default_rng(5).standard_normal((16, 3, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    tensors = {g.tensor: "int8" for g in activation_groups(loaded, "all-tensors")}
    assert tensors.keys() == {"x", "c1", "a1", "m1", "flat", "mm", "logits", "y"}   # n1 folds into the Clip
    policy = Policy({layer.name: LayerChoice("int8", "int8", "per-tensor", symmetric=False)
                     for layer in loaded.layers}, tensors=tensors)

    onnx.save(loaded.proto, tmp_path / "in.onnx")
    config = get_qnn_qdq_config(str(tmp_path / "in.onnx"), _calibration_reader(evaluator),
                                activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QUInt8)
    quantize(str(tmp_path / "in.onnx"), str(tmp_path / "qnn.onnx"), config)
    feed = {"x": x}
    qnn = ort.InferenceSession(str(tmp_path / "qnn.onnx"), evaluator.options, providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(evaluator.editor.build(policy).SerializeToString(), evaluator.options,
                                providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(ours.run(["y"], feed)[0], qnn.run(["y"], feed)[0], rtol=0, atol=1e-6)
    # the constants and encodings matter here: quantizing the tensors alone does not give that model
    unmatched = ort.InferenceSession(evaluator.editor.build(Policy(policy.layers)).SerializeToString(),
                                     evaluator.options, providers=["CPUExecutionProvider"])
    assert np.abs(unmatched.run(["y"], feed)[0] - qnn.run(["y"], feed)[0]).max() > 1e-3
    stored = evaluator.editor.build(policy, store=True)
    exported = ort.InferenceSession(stored.SerializeToString(), evaluator.options, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(exported.run(["y"], feed)[0], ours.run(["y"], feed)[0])


@pytest.mark.parametrize("build", [tiny_models.fully_quantized_ops, tiny_models.float_island,
                                   tiny_models.residual_concat])
def test_uniform_w8a8_on_the_cpu_scope_computes_what_quantize_static_writes(tmp_path, build):
    """qevo's W8A8 on the `qdq-ops` scope (int8 per-tensor symmetric weights, every tensor onnxruntime's quantizer
    places Q/DQ on at int8) gives the outputs of plain `quantize_static` with its defaults: the elementwise
    constants uint8, the norm's scale int8, the biases int32, the folded Clip and Relu, float where no op has
    an integer kernel."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    loaded = load_model(tiny_models.save(build(), tmp_path / "m.onnx"))
    shape = [2 if isinstance(d, str) else d for d in loaded.inputs[0].shape]
    x = np.random.default_rng(7).standard_normal([16, *shape[1:]]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    tensors = {g.tensor: "int8" for g in activation_groups(loaded, "qdq-ops")}
    policy = Policy({layer.name: LayerChoice("int8", "int8", "per-tensor") for layer in loaded.layers},
                    tensors=tensors, scope="qdq-ops")

    onnx.save(loaded.proto, tmp_path / "in.onnx")
    quantize_static(str(tmp_path / "in.onnx"), str(tmp_path / "static.onnx"), _calibration_reader(evaluator),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False)
    feed = {"x": x}
    static = ort.InferenceSession(str(tmp_path / "static.onnx"), evaluator.options,
                                  providers=["CPUExecutionProvider"]).run(["y"], feed)[0]
    ours = ort.InferenceSession(evaluator.editor.build(policy).SerializeToString(), evaluator.options,
                                providers=["CPUExecutionProvider"]).run(["y"], feed)[0]
    np.testing.assert_allclose(ours, static, rtol=0, atol=1e-5 * np.abs(static).max())
    if build is not tiny_models.residual_concat:   # there both runtimes quantize the same way
        # the fully quantized runtime's rules (every tensor, uint8 constants) give another model
        assert_differs_from_npu(evaluator, policy, loaded)
    stored = ort.InferenceSession(evaluator.editor.build(policy, store=True).SerializeToString(), evaluator.options,
                                  providers=["CPUExecutionProvider"]).run(["y"], feed)[0]
    np.testing.assert_array_equal(stored, ours)


def assert_differs_from_npu(evaluator, policy, loaded):
    """The model the fully quantized runtime's rules give differs: other tensors, or constants of other types."""
    def placed(built):
        constants = {t.name: t.data_type for t in built.graph.initializer}
        return ({n.input[0] for n in built.graph.node if n.op_type == "QuantizeLinear"},
                sorted(constants[n.input[0]] for n in built.graph.node
                       if n.op_type == "DequantizeLinear" and n.input[0] in constants))
    npu = replace(policy, tensors={g.tensor: "int8" for g in activation_groups(loaded, "all-tensors")},
                  scope="all-tensors")
    assert placed(evaluator.editor.build(npu, store=True)) != placed(evaluator.editor.build(policy, store=True))


def _calibration_reader(evaluator):
    """onnxruntime's calibration reader over the evaluator's calibration batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(evaluator.calibrator.calib.batches())

        def get_next(self):
            return next(self.batches, None)

    return Reader()
