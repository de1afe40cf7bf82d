"""N:M sparsity: the pattern held in simulation and in exports, the second-order compensation, the cost on
targets that run it faster, the genes and the policy field."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qevo_cli import sparsity
from qevo_cli.cost import layer_cost, weight_bytes
from qevo_cli.errors import QevoError
from qevo_cli.export import export_onnx
from qevo_cli.genome import Allowed, build_space
from qevo_cli.layers import Layer
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.profiles import load_profile
from qevo_cli.recovery import local_error

CONV = Layer("conv", "Conv", "conv", "x", "y", "w", (64, 64, 3, 3), 36864, 36864 * 64, 4096, 4096, 0, 1)


def test_every_block_keeps_the_n_largest_magnitudes():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, 16, 3, 3)).astype(np.float32)
    keep = sparsity.keep_mask(weight, 1, "2:4")
    pruned = np.where(keep, weight, 0)
    assert sparsity.holds(pruned, 1, "2:4") and not sparsity.holds(weight, 1, "2:4")
    blocks = np.moveaxis(np.abs(weight), 1, -1).reshape(6, 3, 3, 4, 4)
    kept = np.moveaxis(keep, 1, -1).reshape(6, 3, 3, 4, 4)
    assert kept.sum(axis=-1).max() == 2 and kept.sum(axis=-1).min() == 2
    # no dropped weight is larger than a kept one of its block
    assert np.all(np.where(kept, blocks, np.inf).min(axis=-1) >= np.where(kept, -np.inf, blocks).max(axis=-1))
    assert sparsity.holds(np.where(sparsity.keep_mask(weight, 1, "1:4"), weight, 0), 1, "1:4")
    for bad in ("4:2", "0:4", "2:4:8", "dense"):
        with pytest.raises(ValueError, match="expected dense or N:M"):
            sparsity.parse(bad)


def test_only_layers_whose_input_splits_into_blocks_can_be_sparse(default_workspace):
    applies = {layer.name: sparsity.applies(layer, "2:4") for layer in default_workspace.model.layers}
    # the stem reads one channel, the depthwise layer sums no channels: no blocks of four to thin
    assert applies == {"stem": False, "conv2": True, "depthwise": False, "pointwise": True, "conv5": True,
                       "fc": True, "head": True}


@pytest.mark.parametrize("choice", [
    LayerChoice("int8", "int8", sparsity="2:4"),
    LayerChoice("int8", "int8", rounding="gptq", sparsity="2:4"),
    LayerChoice("int4", "fp32", granularity="per-group-32", rounding="gptq", sparsity="2:4"),
    LayerChoice("fp16", "fp32", sparsity="2:4"),
    LayerChoice("fp16", "fp32", rounding="gptq", sparsity="2:4"),
    LayerChoice("fp32", "fp32", rounding="gptq", sparsity="2:4"),
])
def test_a_sparse_layer_holds_its_pattern_in_simulation_and_export(default_evaluator, tmp_path, choice):
    """Every weight block of a 2:4 layer holds at most 2 non-zeros, in the simulated weights and in the
    exported file's stored weights (codes at the zero point), and the export measures what the simulation did."""
    layers = [layer for layer in default_evaluator.model.layers if sparsity.applies(layer, "2:4")]
    policy = Policy({layer.name: choice for layer in layers})
    editor = default_evaluator.editor
    for layer in layers:
        simulated = numpy_helper.to_array(editor.simulated_weight(layer, choice))
        assert sparsity.holds(simulated, layer.reduce_axis, "2:4"), layer.name
    report = export_onnx(default_evaluator, policy, tmp_path / "sparse.onnx",
                         expected=default_evaluator.evaluate(policy))
    assert report.difference == 0
    model = onnx.load(tmp_path / "sparse.onnx")
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zero_points = {n.input[0]: stored.get(n.input[2]) if len(n.input) > 2 else None
                   for n in model.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    index = {layer.name: i for i, layer in enumerate(default_evaluator.model.layers)}
    for layer in layers:   # a layer's stored weight is named q<its index>.w...
        prefix = f"q{index[layer.name]}.w"
        packed = next((n for n in model.graph.node if n.op_type == "MatMulNBits" and n.input[1] == f"{prefix}.q"), None)
        if packed is not None:   # 4-bit codes + 8, two to a byte, [N, blocks, block / 2]: K along axis 1
            k, n = layer.weight_shape
            nibbles = stored[f"{prefix}.q"].reshape(n, -1)
            codes = np.stack([nibbles & 15, nibbles >> 4], axis=-1).reshape(n, -1)[:, :k].astype(np.int32) - 8
            assert sparsity.holds(codes, 1, "2:4"), layer.name
            checked += 1
            continue
        # per-group codes are stored [outputs, inputs x kernel] and reshaped at run time
        name = next(name for name in stored if name.startswith(prefix) and stored[name].size == layer.params)
        values = stored[name].astype(np.int32) if stored[name].dtype.kind in "iu" else stored[name]
        values = values.reshape(layer.weight_shape)
        zero = zero_points.get(name)
        if zero is not None and np.size(zero) > 1 and values.ndim > 1:   # per-channel, or per-group along inputs
            zero = zero.reshape(zero.shape + (1,) * (values.ndim - zero.ndim)) if zero.shape[0] == values.shape[0] \
                else np.repeat(zero, values.shape[1] // zero.shape[1], axis=1)
        centred = values - (zero.astype(np.int32) if zero is not None else 0)
        assert sparsity.holds(centred, layer.reduce_axis, "2:4"), layer.name
        checked += 1
    assert checked == len(layers)


def test_second_order_compensation_beats_magnitude_on_the_layer_output(default_evaluator):
    editor = default_evaluator.editor
    for layer in [layer for layer in default_evaluator.model.layers if sparsity.applies(layer, "2:4")]:
        dense = editor.layer_weight(layer, LayerChoice("fp32", "fp32"))
        grams = editor.input_statistics(layer, LayerChoice("fp32", "fp32"))[0]
        magnitude = editor.layer_weight(layer, LayerChoice("fp32", "fp32", sparsity="2:4"))
        compensated = editor.layer_weight(layer, LayerChoice("fp32", "fp32", rounding="gptq", sparsity="2:4"))
        # the simulated weights of both pruning methods are kept apart
        simulated = [numpy_helper.to_array(editor.simulated_weight(layer, LayerChoice("fp16", "fp32", rounding=r,
                                                                                    sparsity="2:4")))
                     for r in ("nearest", "gptq")]
        assert not np.array_equal(*simulated)
        assert sparsity.holds(compensated, layer.reduce_axis, "2:4")
        assert np.array_equal(compensated != 0, (magnitude != 0) & (compensated != 0))   # the same mask
        assert local_error(dense, compensated, layer.channel_axis, grams) < \
            local_error(dense, magnitude, layer.channel_axis, grams), layer.name


def test_nvidia_runs_2_4_at_twice_the_math_and_reads_it_compressed():
    trt = load_profile("nvidia-trt")
    dense, sparse = (layer_cost(CONV, LayerChoice("int8", "int8", sparsity=s), trt) for s in ("dense", "2:4"))
    assert sparse.compute_s == pytest.approx(dense.compute_s / 2, rel=1e-12)
    # half the values, each with a 2-bit index; the per-channel scales unchanged
    scales = weight_bytes(CONV, LayerChoice("int8", "int8")) - CONV.params
    assert sparse.weight_bytes == CONV.params // 2 * 10 // 8 + scales
    # fp32 math has no sparse kernels listed: no speed-up; a CPU lists none at all
    fp32 = [layer_cost(CONV, LayerChoice("fp32", "fp32", sparsity=s), trt) for s in ("dense", "2:4")]
    assert fp32[0].compute_s == fp32[1].compute_s and fp32[0].weight_bytes == fp32[1].weight_bytes
    neon = load_profile("arm-neon")
    assert layer_cost(CONV, LayerChoice("int8", "int8", sparsity="2:4"), neon).latency_s == \
        layer_cost(CONV, LayerChoice("int8", "int8"), neon).latency_s


def test_sparsity_genes_only_where_the_target_runs_them_faster(default_workspace):
    layers = default_workspace.model.layers
    allowed = Allowed(("int8", "fp16"), ("int8",), sparsities=("dense", "2:4"))
    space = build_space(layers, load_profile("nvidia-trt"), allowed)
    for layer, options in zip(space.layers, space.options):
        patterns = {c.sparsity for c in options}
        assert patterns == ({"dense", "2:4"} if sparsity.applies(layer, "2:4") else {"dense"}), layer.name
    plain = build_space(layers, load_profile("nvidia-trt"), Allowed(("int8", "fp16"), ("int8",)))
    assert sum(len(o) for o in space.options) > sum(len(o) for o in plain.options)
    cpu = build_space(layers, load_profile("arm-neon"), allowed)
    assert all(c.sparsity == "dense" for options in cpu.options for c in options)
    assert any("runs no 2:4 weights faster" in note for note in cpu.notes)
    with pytest.raises(QevoError, match="--sparsity"):
        Allowed(sparsities=("2:5x",))


def test_the_policy_field_is_written_only_when_sparse():
    dense = LayerChoice("int8", "int8")
    assert "sparsity" not in dense.to_dict()   # earlier policies keep their keys
    sparse = LayerChoice("int8", "int8", sparsity="2:4")
    assert sparse.to_dict()["sparsity"] == "2:4" and LayerChoice.from_dict(sparse.to_dict()) == sparse
    assert Policy({"a": sparse, "b": dense}).summary().endswith("sp2:4:1")
    with pytest.raises(QevoError, match="sparsity: got '3:2'"):
        LayerChoice("int8", "int8", sparsity="3:2")
    # YAML 1.1 reads an unquoted 2:4 as the base-60 number 124; qevo writes it quoted
    import yaml
    from qevo_cli.config import SearchConfig

    assert LayerChoice.from_dict(yaml.safe_load("{weight: int8, sparsity: 2:4}")) == sparse
    assert yaml.safe_load(yaml.safe_dump(sparse.to_dict()))["sparsity"] == "2:4"
    config = SearchConfig.from_mapping(yaml.safe_load("target: nvidia-trt\nsparsity: [2:4]"), "c.yaml")
    assert config.allowed().sparsities == ("dense", "2:4")


def test_the_proxy_predicts_more_distortion_for_a_sparse_choice(default_evaluator):
    from qevo_cli.proxy import measure_proxy

    table = measure_proxy(default_evaluator, ["int8"], [])
    for layer in [layer for layer in default_evaluator.model.layers if sparsity.applies(layer, "2:4")]:
        dense = table.cost(layer, LayerChoice("int8", "fp32"))
        sparse = table.cost(layer, LayerChoice("int8", "fp32", sparsity="2:4"))
        compensated = table.cost(layer, LayerChoice("int8", "fp32", rounding="gptq", sparsity="2:4"))
        assert sparse > dense and compensated < sparse, layer.name
