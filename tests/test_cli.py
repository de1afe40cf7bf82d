"""The inspect and evaluate commands, and their answers to bad input."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import tiny_models
from qevo_cli.cli import app
from qevo_cli.defaults import DEFAULT_MODEL
from qevo_cli.policy import LayerChoice, Policy

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_default_table():
    result = invoke("inspect")
    assert result.exit_code == 0, result.output
    for name in ("stem", "conv2", "depthwise", "pointwise", "conv5", "fc", "head"):
        assert name in result.stdout
    assert "MACs" in result.stdout


def test_inspect_json_is_pure_json():
    result = invoke("inspect", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["model"].endswith("model.onnx")
    first = report["layers"][0]
    assert {"name", "op_type", "params", "macs", "weight_shape", "size_share"} <= set(first)
    assert sum(layer["params"] for layer in report["layers"]) == report["totals"]["quantizable_params"]


def test_inspect_full_sensitivity_json_then_cached(isolated_cache):
    result = invoke("inspect", "--sensitivity", "--full", "--json")
    assert result.exit_code == 0, result.output
    sensitivity = json.loads(result.stdout)["sensitivity"]
    assert sensitivity["kind"] == "full" and sensitivity["metric"] == "accuracy" and not sensitivity["cached"]
    assert set(sensitivity["drops"]) == {"stem", "conv2", "depthwise", "pointwise", "conv5", "fc", "head"}
    assert list((isolated_cache / "sensitivity").glob("*.json"))
    again = json.loads(invoke("inspect", "--sensitivity", "--full", "--json").stdout)["sensitivity"]
    assert again["cached"] and again["drops"] == sensitivity["drops"]
    table = invoke("inspect", "--sensitivity", "--full")
    assert "W2" in table.stdout and "A16" in table.stdout


def test_inspect_proxy_sensitivity_probes_once():
    first = json.loads(invoke("inspect", "--sensitivity", "--json").stdout)["sensitivity"]
    assert first["kind"] == "proxy" and first["probes"] == 3 * 7 and first["subset"] == 32
    layers = {"stem", "conv2", "depthwise", "pointwise", "conv5", "fc", "head"}
    assert set(first["sqnr_db"]) == layers
    for row in first["sqnr_db"].values():   # more bits, less noise at the output
        assert row["W:int2"] < row["W:int4"] < row["W:int8"] and row["A:int8"] < row["A:int16"]
    again = json.loads(invoke("inspect", "--sensitivity", "--json").stdout)["sensitivity"]
    assert again["probes"] == 0 and again["sqnr_db"] == first["sqnr_db"]
    table = invoke("inspect", "--sensitivity")
    assert "W3" in table.stdout and "predicted" in table.stdout
    assert invoke("inspect", "--full").exit_code == 2


def test_inspect_with_dim(tmp_path):
    model = tiny_models.save(tiny_models.conv_gemm(), tmp_path / "m.onnx")
    one = json.loads(invoke("inspect", model, "--json").stdout)
    four = json.loads(invoke("inspect", model, "--dim", "N=4", "--json").stdout)
    assert four["totals"]["macs"] == 4 * one["totals"]["macs"]


def test_evaluate_policy_file(tmp_path):
    policy = tmp_path / "p.json"
    policy.write_text(Policy({"fc": LayerChoice(weight="int4"), "conv5": LayerChoice(weight="int4")}).dumps("json"))
    result = invoke("evaluate", "--policy", policy, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric"] == "accuracy" and abs(report["drop"]) < 2.0 and report["samples"] == 899
    text = invoke("evaluate", "--policy", policy, "--metric", "sqnr")
    assert text.exit_code == 0 and "sqnr" in text.stdout and "dB" in text.stdout


# -- bad input: exit 2, one line naming the problem, no traceback ---------------------------------

def _data(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _images(n=8, dtype=np.float32, shape=(1, 8, 8)):
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


BAD_INPUTS = {
    "missing model": (lambda t: ["inspect", t / "nope.onnx"], "model file not found"),
    "empty model": (lambda t: ["inspect", _write(t / "e.onnx", b"")], "model file is empty"),
    "not onnx": (lambda t: ["inspect", _write(t / "x.onnx", b"this is plain text, not a model\n" * 20)],
                 "not an ONNX model"),
    "truncated onnx": (lambda t: ["inspect", _write(t / "t.onnx", DEFAULT_MODEL.read_bytes()[:5000])],
                       "not an ONNX model, or truncated"),
    "no quantizable layer": (lambda t: ["inspect", tiny_models.save(tiny_models.no_quantizable_layer(), t / "r.onnx")],
                             "no quantizable layer"),
    "data missing input": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, other=_images())],
                           "key 'other' is not a model input"),
    "data without the input": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, labels=np.zeros(8))],
                               "missing model input 'image'"),
    "wrong dtype": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, image=_images(dtype=np.float64))],
                    "dtype float64, expected float32"),
    "wrong shape": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, image=_images(shape=(1, 9, 8)))],
                    "axis 2 must be 8"),
    "wrong rank": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, image=_images(shape=(8, 8)))],
                   "expected 4"),
    "label count": (lambda t: ["inspect", "--sensitivity", "--data",
                               _data(t, image=_images(), labels=np.zeros(7, np.int64))], "7 labels for 8 samples"),
    "nan in data": (lambda t: ["inspect", "--sensitivity", "--data", _data(t, image=_nan_images())],
                    "NaN or Inf"),
    "no labels for accuracy": (lambda t: ["inspect", "--sensitivity", "--metric", "accuracy", "--data",
                                          _data(t, image=_images())], "needs labels"),
    "unknown metric": (lambda t: ["inspect", "--sensitivity", "--metric", "f1score"], "unknown metric 'f1score'"),
    "metric file missing": (lambda t: ["inspect", "--sensitivity", "--metric", f"{t}/m.py:score"],
                            "metric file not found"),
    "not npz": (lambda t: ["inspect", "--sensitivity", "--data", _write(t / "d.npz", b"garbage")],
                "not a readable .npz"),
    "missing data": (lambda t: ["inspect", "--sensitivity", "--data", t / "none.npz"], "data file not found"),
    "bad dim": (lambda t: ["inspect", "--dim", "batch"], "expected NAME=POSITIVE_INTEGER"),
    "unknown dim": (lambda t: ["inspect", "--dim", "seq=3"], "no dynamic dim of that name"),
    "model needs data": (lambda t: ["evaluate", tiny_models.save(tiny_models.conv_gemm(), t / "m.onnx"),
                                    "--policy", _policy(t)], "evaluation data is needed"),
    "policy for another model": (lambda t: ["evaluate", "--policy", _policy(t, "not_a_layer")],
                                 "policy names layer 'not_a_layer'"),
    "bad policy": (lambda t: ["evaluate", "--policy", _write(t / "p.yaml", b"version: 1\nlayers: {fc: {weight: int9}}")],
                   "layers.fc.weight: got 'int9'"),
}


def _write(path, content):
    path.write_bytes(content)
    return path


def _nan_images():
    images = _images()
    images[3, 0, 2, 2] = np.nan
    return images


def _policy(tmp_path, layer="fc"):
    path = tmp_path / "p.yaml"
    path.write_text(Policy({layer: LayerChoice()}).dumps())
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_exit_2(tmp_path, case):
    make_args, expected = BAD_INPUTS[case]
    result = invoke(*make_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


def test_inspect_with_target_costs_each_layer():
    result = invoke("inspect", "--target", "arm-neon", "--json")
    assert result.exit_code == 0, result.output
    target = json.loads(result.stdout)["target"]
    fp32, w8a8, w4a8 = (target["policies"][k] for k in ("fp32", "W8A8", "W4A8"))
    assert w4a8["size_bytes"] < w8a8["size_bytes"] < fp32["size_bytes"]
    assert w8a8["latency_s"] < fp32["latency_s"] and w8a8["energy_j"] < fp32["energy_j"]
    assert {layer["bound"] for layer in fp32["layers"]} <= {"compute", "memory"}
    assert len(fp32["layers"]) == 7
    table = invoke("inspect", "--target", "hexagon")
    assert table.exit_code == 0 and "W4A8 us" in table.stdout and "model size" in table.stdout
    bad = invoke("inspect", "--target", "no-such-target")
    assert bad.exit_code == 2 and "unknown profile 'no-such-target'" in bad.stderr


METRICS = '''
import numpy as np
def exits(outputs, labels):
    raise SystemExit(0)
def noisy(outputs, labels):
    print("computing my metric")
    return float(np.mean(np.argmax(outputs[0], 1) == labels))
'''


def test_a_custom_metric_that_exits_is_an_error_and_one_that_prints_keeps_json_clean(tmp_path):
    (tmp_path / "mine.py").write_text(METRICS)
    common = ["search", "--target", "arm-neon", "--weight-formats", "int4,int8", "--act-formats", "int8", "--pop", "6",
              "--generations", "1"]
    exits = runner.invoke(app, [*common, "--metric", f"{tmp_path / 'mine.py'}:exits", "--out", str(tmp_path / "a")])
    assert exits.exit_code == 2 and "raised SystemExit" in exits.stderr and not (tmp_path / "a").exists()
    noisy = runner.invoke(app, [*common, "--metric", f"{tmp_path / 'mine.py'}:noisy", "--json",
                                "--out", str(tmp_path / "b")])
    assert noisy.exit_code == 0 and json.loads(noisy.stdout)["front_size"] >= 1
    assert "computing my metric" in noisy.stderr


def test_agreement_refuses_a_one_float_per_sample_output(tmp_path):
    """Top-1 agreement of a regression output would compare exact floats (fp32 100%, every variant 0%)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
                               helper.make_node("Flatten", ["h"], ["f"], axis=0),
                               helper.make_node("Squeeze", ["f"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])], [w])
    model = tiny_models.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "r.onnx")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32))
    (tmp_path / "p.yaml").write_text(Policy({"fc": LayerChoice("int8", "int8")}).dumps())
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(tmp_path / "d.npz"), "--metric", "agreement",
                                 "--policy", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "one float per sample" in result.stderr and "Traceback" not in result.output


def test_an_export_name_of_255_characters_is_written(tmp_path):
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import run_search

    run = run_search(SearchConfig(target="arm-neon", weight_formats="int4,int8", act_formats="int8", pop=6,
                                  generations=1, out=str(tmp_path / "run"))).run_dir
    for suffix in (".yaml", ".onnx"):
        name = tmp_path / ("p" * (255 - len(suffix)) + suffix)
        result = runner.invoke(app, ["export", str(run), str(name)])
        assert result.exit_code == 0, result.output
        assert name.is_file() and not list(tmp_path.glob(".*.tmp"))
