"""Looking at a front, choosing from it, and writing the choice: assertions on the files."""
import json
import struct
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort

import pytest
from typer.testing import CliRunner

from qevo_cli.cli import app
from qevo_cli.config import SearchConfig
from qevo_cli.front import Front
from qevo_cli.pick import pick
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.search import run_search

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    import os
    previous = os.environ.get("QEVO_CACHE_DIR")
    os.environ["QEVO_CACHE_DIR"] = str(root / "cache")
    try:
        result = run_search(SearchConfig(target="arm-neon", weight_formats="int4,int8", act_formats="int8,int16",
                                         pop=16, generations=4, seed=1,
                                         out=str(root / "qevo-runs" / "model-arm-neon-1")))
    finally:
        if previous is not None:
            os.environ["QEVO_CACHE_DIR"] = previous
    assert len(result.front.solutions) >= 4
    return result.run_dir


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_show_json_sort_limit_and_knee(run_dir):
    result = runner.invoke(app, ["pareto", "show", str(run_dir), "--sort", "size", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    sizes = [s["objectives"]["size"] for s in shown["solutions"]]
    assert len(sizes) == 3 and sizes == sorted(sizes)
    front = json.loads((run_dir / "front.json").read_text())
    assert shown["knee"] in {s["id"] for s in front["solutions"]}
    assert all(s["bits"].startswith("W") for s in shown["solutions"])


def test_show_table_marks_knee_and_references(run_dir):
    result = runner.invoke(app, ["pareto", "show", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "knee" in result.stdout and "uniform W8A8" in result.stdout and "fp32" in result.stdout


def test_layer_map_shows_each_policy_s_choice_per_layer_in_graph_order(run_dir):
    result = runner.invoke(app, ["pareto", "show", str(run_dir), "--layers", "--json"])
    assert result.exit_code == 0, result.output
    grid = json.loads(result.stdout)["layers"]
    front = Front.from_dict(json.loads((run_dir / "front.json").read_text()))
    from qevo_cli.model import load_model
    assert list(grid) == [layer.name for layer in load_model(front.model).layers]
    for solution in front.solutions:
        for layer, cells in grid.items():
            assert cells[str(solution.id)].split()[0] == solution.policy.choice(layer).short()
    assert all(cells["fp32"] == "W32fA32f" for cells in grid.values())
    table = runner.invoke(app, ["pareto", "show", str(run_dir), "--layers"])
    assert "which layer got which format" in table.stdout


def test_layer_map_png(run_dir, tmp_path):
    result = runner.invoke(app, ["pareto", "show", str(run_dir), "--layers-png", str(tmp_path / "layers.png")])
    assert result.exit_code == 0, result.output
    width, height = _png_size(tmp_path / "layers.png")
    assert width > height > 200   # policies across, seven layers down
    bad = runner.invoke(app, ["pareto", "show", str(run_dir), "--layers-png", str(tmp_path / "layers.jpg")])
    assert bad.exit_code == 2 and "--layers-png" in bad.output and not (tmp_path / "layers.jpg").exists()


def test_plot_png_has_one_panel_per_pair(run_dir, tmp_path):
    plot = tmp_path / "front.png"
    result = runner.invoke(app, ["pareto", "show", str(run_dir), "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    width, height = _png_size(plot)
    assert (width, height) == (1500, 420)      # three objectives: three panels of 5 x 4.2 inches at 100 dpi
    assert plot.stat().st_size > 20_000


def test_most_recent_run_is_the_default(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir.parent.parent)
    result = runner.invoke(app, ["pareto", "show", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["run_dir"].endswith(run_dir.name)


def test_pick_rules_are_deterministic_and_respected(run_dir):
    front = Front.from_dict(json.loads((run_dir / "front.json").read_text()))
    shuffled = replace(front, solutions=list(reversed(front.solutions)))
    for rule in ("knee", "weights=1,1,1", "weights=0.2,0.6,0.2,0", "max-drop=1.0,min=latency"):
        assert pick(front, rule).id == pick(shuffled, rule).id   # whatever order front.json lists them in
    within = pick(front, "max-drop=1.0,min=size")
    assert within.objectives["metric"] <= 1.0
    assert within.objectives["size"] == min(s.objectives["size"] for s in front.solutions
                                            if s.objectives["metric"] <= 1.0)
    # pseudo-weights: stating metric as the priority never gives a worse metric than stating size
    metric_first, size_first = pick(front, "weights=1,0,0"), pick(front, "weights=0,1,0")
    assert metric_first.objectives["metric"] <= size_first.objectives["metric"]
    assert size_first.objectives["size"] <= metric_first.objectives["size"]
    some = front.solutions[-1]
    assert pick(front, str(some.id)).id == some.id


@pytest.mark.parametrize("rule, message", [
    ("median", "expected knee, weights=..., an id"),
    ("weights=1,x", "expected comma-separated numbers"),
    ("weights=1,1", "expected 3 non-negative weights"),
    ("max-drop=1.0", "a rule needs min=OBJECTIVE"),
    ("max-drop=-5,min=size", "no solution on the front satisfies"),
    ("99999", "no solution with id 99999"),
])
def test_bad_pick_rules(run_dir, tmp_path, rule, message):
    result = runner.invoke(app, ["export", str(run_dir), str(tmp_path / "p.yaml"), "--pick", rule])
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_export_policy_and_measure_it_again(run_dir, tmp_path):
    for suffix in ("yaml", "json"):
        output = tmp_path / f"chosen.{suffix}"
        result = runner.invoke(app, ["export", str(run_dir), str(output), "--pick", "knee", "--json"])
        assert result.exit_code == 0, result.output
        exported = json.loads(result.stdout)
        policy = Policy.load(output)
        front = json.loads((run_dir / "front.json").read_text())
        solution = next(s for s in front["solutions"] if s["id"] == exported["id"])
        assert policy == Policy.from_dict(solution["policy"])
        measured = runner.invoke(app, ["evaluate", "--policy", str(output), "--json"])
        assert measured.exit_code == 0, measured.output
        assert json.loads(measured.stdout)["score"] == pytest.approx(solution["metric"], abs=1e-9)


def test_show_and_export_answer_bad_run_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nothing = runner.invoke(app, ["pareto", "show"])
    assert nothing.exit_code == 2 and "no runs found" in nothing.stderr
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["pareto", "show", "empty"])
    assert empty.exit_code == 2 and "not a qevo run directory" in empty.stderr
    bad_type = runner.invoke(app, ["export", "empty", "out.txt"])
    assert bad_type.exit_code == 2 and "expected .yaml, .json or .onnx" in bad_type.stderr


def _load_and_count(path):
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(path))
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])   # onnxruntime loads it
    types = {t.data_type for t in model.graph.initializer}
    ops = {node.op_type for node in model.graph.node}
    return model, types, ops


@pytest.mark.parametrize("rule", ["knee", "max-drop=3.0,min=size"])
def test_export_onnx_loads_and_measures_what_the_search_did(run_dir, tmp_path, rule):
    output = tmp_path / "chosen.onnx"
    result = runner.invoke(app, ["export", str(run_dir), str(output), "--pick", rule, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["measured_metric"] == report["metric"] and report["within_tolerance"]
    model, types, ops = _load_and_count(output)
    chosen = Policy.from_dict(next(s for s in json.loads((run_dir / "front.json").read_text())["solutions"]
                                   if s["id"] == report["id"])["policy"])
    assert "DequantizeLinear" in ops
    # activations are quantized where the policy puts a tensor (or a layer input) at an integer format
    integer = {"int8", "int16"}
    assert ("QuantizeLinear" in ops) == (bool(integer & set(chosen.tensors.values())) or
                                         any(c.activation in integer for c in chosen.layers.values()))
    weights = {c.weight for c in chosen.layers.values()}
    if "int4" in weights:
        assert 22 in types                      # INT4 initializers
    if "int8" in weights:
        assert 3 in types                       # INT8 initializers
    assert not list(tmp_path.glob(".*tmp"))     # no temporary file left behind


EXPORT_CASES = {
    "W8A8 per-channel": LayerChoice("int8", "int8"),
    "W4A16 per-tensor asymmetric": LayerChoice("int4", "int16", "per-tensor", symmetric=False),
    "W2A8": LayerChoice("int2", "int8"),
    "W4 per-group-32, percentile": LayerChoice("int4", "int8", "per-group-32", "percentile"),
    "W8 per-group-32 asymmetric, dynamic": LayerChoice("int8", "dynamic-int8", "per-group-32", symmetric=False),
    "W16f A16f": LayerChoice("fp16", "fp16"),
    "W4A32 mse range": LayerChoice("int4", "fp32", weight_range="mse"),
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_every_stored_format_exports_what_the_search_measured(tmp_path, case):
    from qevo_cli.export import export_onnx
    from qevo_cli.workspace import open_workspace
    evaluator = open_workspace().evaluator()
    names = [layer.name for layer in evaluator.model.layers]
    policy = Policy.uniform(names, EXPORT_CASES[case])
    expected = evaluator.evaluate(policy)
    report = export_onnx(evaluator, policy, tmp_path / "m.onnx", expected=expected)
    assert report.difference == 0 and not report.simulated_layers and len(report.stored_layers) == len(names)
    ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])   # loads with default options
    # Q/DQ kept as the fake quantization they stand for, as qevo measures (host integer kernels round their own way)
    session = ort.InferenceSession(str(report.path), evaluator.options, providers=["CPUExecutionProvider"])
    batch = next(evaluator.data.batches())
    simulated = ort.InferenceSession(evaluator.variant(policy).SerializeToString(), evaluator.options,
                                     providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, batch)[0], simulated.run(None, batch)[0], rtol=1e-5, atol=1e-5)
    ops = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    if EXPORT_CASES[case].weight == "int4" and EXPORT_CASES[case].granularity == "per-group-32":
        assert "MatMulNBits" in ops        # the MatMul head, in onnxruntime's 4-bit form
    if EXPORT_CASES[case].weight_is_int:   # integers stored, not floats
        initializers = onnx.load(str(report.path)).graph.initializer
        float_bytes = sum(t.ByteSize() for t in initializers if t.data_type == onnx.TensorProto.FLOAT)
        assert float_bytes < 0.5 * sum(t.ByteSize() for t in initializers)


def test_export_refuses_unstorable_formats_unless_simulated(run_dir, tmp_path):
    from qevo_cli.errors import QevoError
    from qevo_cli.export import export_onnx
    from qevo_cli.policy import LayerChoice
    from qevo_cli.workspace import open_workspace
    evaluator = open_workspace().evaluator()
    policy = Policy({"fc": LayerChoice(weight="int3"), "conv5": LayerChoice(weight="int6"),
                     "stem": LayerChoice(weight="int4", granularity="per-group-32")})
    with pytest.raises(QevoError, match="pass --allow-simulated"):
        export_onnx(evaluator, policy, tmp_path / "no.onnx")
    assert not (tmp_path / "no.onnx").exists()
    report = export_onnx(evaluator, policy, tmp_path / "sim.onnx", allow_simulated=True,
                         expected=evaluator.evaluate(policy))
    assert set(report.simulated_layers) == {"fc", "conv5"} and report.stored_layers == ["stem"]
    assert report.difference == 0


def test_export_tolerance_sets_exit_code(run_dir, tmp_path):
    import shutil

    result = runner.invoke(app, ["export", str(run_dir), str(tmp_path / "m.onnx"), "--tolerance", "0", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["difference"] == 0   # the export measures exactly what was searched
    # a front whose recorded metric the file does not reproduce (edited by hand here): exit 4, file kept
    edited = tmp_path / "edited"
    shutil.copytree(run_dir, edited)
    front = json.loads((edited / "front.json").read_text())
    solution = next(s for s in front["solutions"] if s["id"] == report["id"])
    solution["metric"] += 5.0
    (edited / "front.json").write_text(json.dumps(front))
    result = runner.invoke(app, ["export", str(edited), str(tmp_path / "e.onnx"), "--pick", str(report["id"]),
                                 "--tolerance", "0.5", "--json"])
    assert result.exit_code == 4 and json.loads(result.stdout)["difference"] == pytest.approx(-5.0)
    assert (tmp_path / "e.onnx").exists()      # complete either way: the user decides what to do with it


def test_export_of_a_mix_of_formats_measures_the_same():
    from qevo_cli.export import export_onnx
    from qevo_cli.policy import LayerChoice
    from qevo_cli.workspace import open_workspace
    import tempfile
    from pathlib import Path
    evaluator = open_workspace().evaluator()
    policy = Policy({"conv2": LayerChoice("int4", "int16"), "conv5": LayerChoice("int4", "int8"),
                     "depthwise": LayerChoice("int8", "int8"), "fc": LayerChoice("int4", "int16"),
                     "head": LayerChoice("int4", "int16"), "pointwise": LayerChoice("int8", "int16"),
                     "stem": LayerChoice("int8", "int8")})
    with tempfile.TemporaryDirectory() as tmp:
        report = export_onnx(evaluator, policy, Path(tmp) / "mix.onnx", expected=evaluator.evaluate(policy))
        assert report.difference == 0
