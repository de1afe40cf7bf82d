"""Model ingestion on tiny models that each carry a trap, and on the bundled default."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tiny_models
from qevo_cli.data import load_data
from qevo_cli.errors import QevoError
from qevo_cli.evaluate import Evaluator
from qevo_cli.metrics import resolve_metric
from qevo_cli.model import default_opset, load_model
from qevo_cli.policy import LayerChoice, Policy


def _load(tmp_path, model, name="m.onnx", **kwargs):
    return load_model(tiny_models.save(model, tmp_path / name), **kwargs)


def _evaluator(tmp_path, loaded, arrays, metric="sqnr"):
    np.savez(tmp_path / "d.npz", **arrays)
    return Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric(metric))


def test_conv_and_gemm_counts_by_hand(tmp_path):
    loaded = _load(tmp_path, tiny_models.conv_gemm())
    conv, gemm = loaded.layers
    assert (conv.op_type, conv.kind, conv.weight_shape, conv.params) == ("Conv", "conv", (8, 3, 3, 3), 216)
    assert conv.macs == 8 * 6 * 6 * 3 * 3 * 3          # output elements x (C_in x kh x kw)
    assert (conv.input_elems, conv.output_elems) == (3 * 36, 8 * 36)
    assert conv.channel_axis == 0
    assert gemm.macs == 288 * 4 and gemm.channel_axis == 0  # transB=1: weight is [N, K]
    # the file less its two weights: biases, graph and names
    weights = 4 * (216 + 288 * 4)
    assert loaded.other_bytes == loaded.file_bytes - weights and 4 * (8 + 4) < loaded.other_bytes < 2000
    assert loaded.dims == {"N": 1}


def test_dynamic_batch_fixed_with_dim(tmp_path):
    loaded = _load(tmp_path, tiny_models.conv_gemm(), dims={"N": 4})
    assert loaded.layers[0].macs == 4 * 8 * 6 * 6 * 27
    with pytest.raises(QevoError, match="no dynamic dim of that name"):
        _load(tmp_path, tiny_models.conv_gemm(), name="b.onnx", dims={"batch": 4})


def test_constant_weights_are_folded(tmp_path):
    loaded = _load(tmp_path, tiny_models.constant_weights())
    assert [layer.name for layer in loaded.layers] == ["matmul"]
    assert loaded.layers[0].weight_shape == (5, 3) and loaded.layers[0].channel_axis == 1
    assert any("Constant" in note for note in loaded.notes)
    assert not any(node.op_type == "Constant" for node in loaded.proto.graph.node)


def test_opset_11_is_converted_and_quantized_variant_runs(tmp_path):
    loaded = _load(tmp_path, tiny_models.opset11())
    assert default_opset(loaded.proto) >= 13
    assert any("opset 11" in note for note in loaded.notes)
    x = np.random.default_rng(1).standard_normal((16, 3, 6, 6)).astype(np.float32)
    evaluator = _evaluator(tmp_path, loaded, {"x": x})
    policy = Policy.uniform([l.name for l in loaded.layers], LayerChoice(weight="int8", activation="int8"))
    assert 20 < evaluator.evaluate(policy) < 100   # quantized: close to fp32 but not identical


def test_if_subgraph_layers_are_found_and_quantized(tmp_path):
    loaded = _load(tmp_path, tiny_models.if_subgraph())
    names = {layer.name: layer for layer in loaded.layers}
    assert set(names) == {"then_matmul", "else_matmul"}
    assert names["then_matmul"].subgraph == "branch/then_branch/"
    assert any("If/Loop/Scan" in note for note in loaded.notes)
    x = np.random.default_rng(2).standard_normal((32, 4)).astype(np.float32)
    evaluator = _evaluator(tmp_path, loaded, {"x": x, "flag": np.array(True)})  # a scalar input: one value for all
    assert evaluator.fp32_score == 100.0
    taken = evaluator.evaluate(Policy({"then_matmul": LayerChoice(weight="int2", activation="fp32")}))
    not_taken = evaluator.evaluate(Policy({"else_matmul": LayerChoice(weight="int2", activation="fp32")}))
    assert taken < 30 and not_taken == 100.0


def test_two_inputs_int_input_and_activation_matmul(tmp_path):
    loaded = _load(tmp_path, tiny_models.two_inputs_with_int())
    assert [(s.name, str(s.dtype)) for s in loaded.inputs] == [("a", "float32"), ("ids", "int64")]
    proj, scores = loaded.layers
    assert proj.kind == "gemm" and proj.macs == 4 * 8 * 6
    assert scores.kind == "act_matmul" and scores.weight is None and scores.params == 0
    assert scores.macs == 4 * 4 * 8
    rng = np.random.default_rng(3)
    evaluator = _evaluator(tmp_path, loaded, {"a": rng.standard_normal((8, 4, 6)).astype(np.float32),
                                              "ids": rng.integers(0, 5, (8, 4))})
    only_activations = Policy({"scores": LayerChoice(weight="fp32", activation="int8")})
    assert 20 < evaluator.evaluate(only_activations) < 100


def test_ai_onnx_ml_model(tmp_path):
    loaded = _load(tmp_path, tiny_models.ml_classifier())
    assert [layer.name for layer in loaded.layers] == ["linear"]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    plain = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    np.savez(tmp_path / "d.npz", x=x, labels=plain)
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("accuracy"))
    assert evaluator.fp32_score == 100.0
    assert evaluator.evaluate(Policy({"linear": LayerChoice(weight="int2", activation="int8")})) < 100.0


def test_conv_transpose_channel_axis(tmp_path):
    loaded = _load(tmp_path, tiny_models.conv_transpose())
    layer = loaded.layers[0]
    assert layer.channel_axis == 1 and layer.kind == "conv"
    assert layer.macs == 4 * 3 * 3 * 6 * 2 * 2   # input elements x (C_out x kh x kw)


def test_default_model_layers(default_workspace):
    layers = default_workspace.model.layers
    assert len(layers) >= 6
    kinds = [layer.kind for layer in layers]
    assert kinds.count("conv") >= 3 and "depthwise" in kinds and "gemm" in kinds
    assert {layer.op_type for layer in layers} >= {"Conv", "Gemm", "MatMul"}
    assert default_workspace.model.path.stat().st_size < 2_000_000


def test_weight_on_the_left_of_a_matmul(tmp_path):
    loaded = _load(tmp_path, tiny_models.weight_on_left())
    layer = loaded.layers[0]
    assert (layer.channel_axis, layer.reduce_axis) == (0, 1)
    assert layer.macs == 3 * 7 * 5


def test_same_activation_on_both_inputs_is_quantized_once(tmp_path):
    loaded = _load(tmp_path, tiny_models.self_product())
    assert loaded.layers[1].kind == "act_matmul"
    x = np.random.default_rng(5).standard_normal((8, 4, 4)).astype(np.float32)
    evaluator = _evaluator(tmp_path, loaded, {"x": x})
    assert 10 < evaluator.evaluate(Policy({"square": LayerChoice(weight="fp32", activation="int8")})) < 100


def test_a_dim_stored_as_minus_one_is_dynamic(tmp_path):
    """Exporters that write -1 for a dynamic batch: qevo must batch the data, not run batches of -1."""
    from onnx import TensorProto, helper, numpy_helper

    from qevo_cli.data import load_data
    from qevo_cli.model import load_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 2])
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4), np.float32))
    model = load_model(path)
    assert model.layers[0].macs == 8 and any("-1" in note for note in model.notes)
    data = load_data(tmp_path / "d.npz", model)
    assert data.batch_size > 0 and sum(len(b["x"]) for b in data.batches()) == 8


def test_opset_conversion_leaves_every_node_a_unique_name():
    """Layers and activation tensors are placed by node name: nodes a converter adds must not share one."""
    from qevo_cli.model import convert_opset

    model = tiny_models.opset11()
    for node in model.graph.node:
        node.name = "same"
    converted = convert_opset(model, 21)
    names = [node.name for node in converted.graph.node]
    assert len(set(names)) == len(names) and all(names)
    assert not converted.graph.value_info     # the converter's inferred shapes are not kept


def test_unused_weights_are_dropped_but_not_one_only_a_subgraph_reads():
    """graphs.drop_unused looks into If / Loop bodies: onnxruntime's ONNXModel.remove_unused_constant drops a
    weight of the outer graph that only a branch reads, and the model no longer loads."""
    from onnxruntime.quantization.onnx_model import ONNXModel

    from qevo_cli.graphs import drop_unused

    model = tiny_models.if_subgraph()
    then = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    model.graph.initializer.append(then.initializer[0])   # an outer-scope weight, as exporters write it
    del then.initializer[:]
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(3, np.float32), "orphan"))
    ours = onnx.ModelProto.FromString(model.SerializeToString())
    drop_unused(ours)
    assert [t.name for t in ours.graph.initializer] == ["then_w"]
    ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = ONNXModel(onnx.ModelProto.FromString(model.SerializeToString()))
    theirs.remove_unused_constant()
    assert [t.name for t in theirs.model.graph.initializer] == []
