"""Channel pruning as part of a policy: the prune map, the pruned model the evaluator builds and exports, the
costing of its smaller layers, and the genes and proxy of the search."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

import tiny_models
from qevo_cli.cost import model_cost
from qevo_cli.errors import QevoError
from qevo_cli.export import export_onnx
from qevo_cli.genome import Allowed, space_for
from qevo_cli.model import load_model
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.profiles import load_profile
from qevo_cli.proxy import measure_proxy
from qevo_cli.seeding import option_costs
from qevo_cli.structure import group_shares, kept_channels, prune_groups, scaled_layers


def test_a_pruning_policy_is_version_2_and_round_trips(tmp_path):
    policy = Policy({"conv2": LayerChoice()}, prune={"stem": 0.5, "pointwise": 0.0})
    assert policy.prune == {"stem": 0.5} and policy.version == 2   # 0 removes nothing and is left out
    assert "pr:1" in policy.summary()
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"policy{suffix}"
        path.write_text(policy.dumps("json" if suffix == ".json" else "yaml"))
        assert Policy.load(path) == policy
    assert Policy({"conv2": LayerChoice()}).to_dict()["version"] == 1   # unpruned policies keep version 1
    data = yaml.safe_load(policy.dumps())
    data["version"] = 1
    with pytest.raises(QevoError, match="prunes channels"):
        Policy.from_dict(data)
    with pytest.raises(QevoError, match="from 0 to below 1"):
        Policy({}, prune={"stem": 1.0})


def test_kept_channels_are_multiples_of_four():
    assert kept_channels(64, 0.25) == 48 and kept_channels(64, 0.5) == 32
    assert kept_channels(8, 0.5) == 4 and kept_channels(8, 0.25) in (4, 8)
    assert kept_channels(8, 0.9) == 4   # never below one multiple
    assert kept_channels(30, 0.0) == 30


def test_tied_producers_must_prune_the_same_share(tmp_path):
    tiny_models.save(tiny_models.residual_block(), tmp_path / "residual.onnx")
    model = load_model(tmp_path / "residual.onnx")
    groups = prune_groups(model)
    tied = next(g for g in groups if g.producers == ("conv1", "conv2"))
    assert tied.depthwise == ("depthwise",) and set(tied.readers) == {"conv2", "conv3"}
    with pytest.raises(QevoError, match="same share"):
        group_shares(groups, {"conv1": 0.5})
    with pytest.raises(QevoError, match="heads no prunable channel group"):
        group_shares(groups, {"head": 0.5})
    assert group_shares(groups, {"conv1": 0.5, "conv2": 0.5}) == {groups.index(tied): 0.5}
    # a share that keeps every channel prunes nothing (the readers are not refitted either)
    assert group_shares(groups, {"conv1": 0.1, "conv2": 0.1}) == {}


def test_the_evaluated_model_is_the_pruned_one_and_costs_what_it_holds(default_evaluator):
    evaluator = default_evaluator
    groups = evaluator.structures.groups
    policy = Policy({layer.name: LayerChoice() for layer in evaluator.model.layers},
                    prune={name: 0.5 for group in groups for name in group.producers})
    variant = evaluator.variant(policy)
    onnx.checker.check_model(variant)
    editor = evaluator.editor_for(policy)
    pruned_layers = {layer.name: layer for layer in editor.model.layers}
    assert pruned_layers["stem"].weight_shape == (4, 1, 3, 3)
    assert pruned_layers["conv2"].weight_shape == (4, 4, 3, 3)
    # the costing's arithmetic gives the layers the pruned model really holds
    for layer in scaled_layers(evaluator.model.layers, groups, policy.prune):
        real = pruned_layers[layer.name]
        assert (layer.weight_shape, layer.params, layer.macs, layer.input_elems, layer.output_elems) == \
            (real.weight_shape, real.params, real.macs, real.input_elems, real.output_elems), layer.name
    profile = load_profile("arm-neon")
    full = model_cost(evaluator.model.layers, policy.without_pruning(), profile)
    pruned = model_cost(scaled_layers(evaluator.model.layers, groups, policy.prune), policy, profile)
    assert pruned.latency_s < full.latency_s and pruned.weight_bytes < full.weight_bytes
    score = evaluator.evaluate(policy)
    assert 0.0 <= score <= 100.0 and score != evaluator.evaluate(policy.without_pruning())


@pytest.mark.parametrize("choice", [LayerChoice(), LayerChoice(weight="int4", rounding="gptq"),
                                    LayerChoice(rounding="gptq", sparsity="2:4")], ids=["w8a8", "w4-gptq", "2:4"])
def test_a_pruned_export_loads_in_plain_onnxruntime_and_measures_what_the_search_said(default_evaluator, tmp_path,
                                                                                        choice):
    evaluator = default_evaluator
    group = evaluator.structures.groups[1]
    sparse = [layer.name for layer in evaluator.model.layers if layer.op_type == "Conv" and layer.weight_shape[1] > 1]
    policy = Policy({layer.name: choice if layer.name in sparse or choice.sparsity == "dense" else LayerChoice()
                     for layer in evaluator.model.layers},
                    prune={name: 0.5 for name in group.producers})
    expected = evaluator.evaluate(policy)
    report = export_onnx(evaluator, policy, tmp_path / "pruned.onnx", expected=expected)
    assert report.measured == pytest.approx(expected, abs=1e-9)
    exported = onnx.load(tmp_path / "pruned.onnx")
    session = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {evaluator.model.inputs[0].name: evaluator.data.inputs[evaluator.model.inputs[0].name][:4]}
    assert session.run(None, feeds)[0].shape[0] == 4
    dequantized = {node.input[0] for node in exported.graph.node if node.op_type == "DequantizeLinear"}
    codes = {t.name: t for t in exported.graph.initializer if t.name in dequantized}
    shapes = sorted(tuple(t.dims) for t in codes.values() if len(t.dims) == 4)
    assert (4, 8, 3, 3) in shapes or (8, 4, 3, 3) in shapes   # the pruned Convs are stored smaller
    if choice.sparsity == "2:4":   # every block of 4 input channels of a sparse Conv holds at most 2 codes
        from onnx import numpy_helper
        blocks = [np.moveaxis(numpy_helper.to_array(t), 1, -1).reshape(-1, 4) for t in codes.values()
                  if len(t.dims) == 4 and t.dims[1] > 1]
        assert blocks and all(((b != 0).sum(axis=1) <= 2).all() for b in blocks)


def test_prune_genes_decode_encode_and_cost_savings(default_workspace):
    profile = load_profile("arm-neon")
    space = space_for(default_workspace.model, profile, Allowed(weight_formats=("int8",), prunes=(0.0, 0.5)))
    assert len(space.prune.groups) == 3 and all(options == (0.5, 0.0) for options in space.prune.options)
    row = space.upper.copy()
    row[space.first_prune_gene] = 0   # the first group at its most pruned
    policy = space.decode(row)
    assert policy.prune == {name: 0.5 for name in space.prune.groups[0].producers}
    assert (space.encode(policy) == row).all()
    costs = option_costs(space, profile, "latency")[space.first_prune_gene:]
    assert all(c[0] < 0 and c[-1] == 0 for c in costs)   # pruning saves time; none saves nothing
    # the seeding measures the richest formats with every group pruned alike, for each share
    from qevo_cli.seeding import initial_population, structure_rows
    ends = structure_rows(space)
    assert len(ends) == 1 and space.decode(ends[0]).prune == {name: 0.5 for group in space.prune.groups
                                                             for name in group.producers}
    population = initial_population(space, 8, None, profile, seed=0)
    assert any((row == ends[0]).all() for row in population)
    # without --prune there is no gene
    assert not space_for(default_workspace.model, profile, Allowed(weight_formats=("int8",))).prune.groups


def test_the_proxy_probes_each_group_and_predicts_more_distortion_for_more_pruning(default_evaluator):
    structures = default_evaluator.structures
    groups = structures.groups
    table = measure_proxy(default_evaluator, ("int8",), (), prune=[(group, 0.5) for group in groups])
    assert table.probes >= len(groups)
    for group in groups:
        assert table.prune_cost(group, 0.5) > 0
        assert table.prune_cost(group, 0.0) == 0
        assert structures.local_error(group, 0.5) > 0
