"""Measured latency: policies timed on this machine (the host target) or by the user's command."""
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qevo_cli.data import load_data
from qevo_cli.evaluate import Evaluator
from qevo_cli.metrics import resolve_metric
from qevo_cli.model import load_model
from qevo_cli.policy import LayerChoice, Policy


def _conv_model(path):
    """Three 3x3 convolutions of 64 channels on 32x32: enough work that integer kernels pay."""
    rng = np.random.default_rng(0)
    nodes, initializers, source = [], [], "x"
    for i in range(3):
        initializers += [numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32), f"w{i}"),
                         numpy_helper.from_array(np.zeros(64, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [source, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        source = f"r{i}"
    nodes.append(helper.make_node("ReduceMean", [source], ["y"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_host_latency_of_uniform_int8_is_below_fp32_where_integer_kernels_apply(tmp_path):
    """onnxruntime fuses the exported Q/DQ around each Conv into an integer kernel: uniform W8A8, timed as
    deployed, runs faster than the float model (each measured twice, interleaved, the faster reading kept)."""
    from qevo_cli.latency import HostTimer
    from qevo_cli.scope import activation_groups

    loaded = load_model(_conv_model(tmp_path / "m.onnx"))
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).standard_normal((8, 64, 32, 32)).astype(np.float32))
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    timer = HostTimer(evaluator)
    assert list(timer.feed["x"].shape) == [1, 64, 32, 32]   # one sample, as deployed
    int8 = Policy({layer.name: LayerChoice("int8", "int8") for layer in loaded.layers},
                  tensors={g.tensor: "int8" for g in activation_groups(loaded, "qdq-ops")}, scope="qdq-ops")
    fp32, quantized = [], []
    for _ in range(2):
        fp32.append(timer(Policy({})))
        quantized.append(timer(int8))
    fastest = lambda timings: min(t.median_ms for t in timings)  # noqa: E731
    assert fastest(quantized) < fastest(fp32), (fp32, quantized)
    assert all(t.runs >= 3 and t.spread >= 0 for t in fp32 + quantized)


def test_host_timings_follow_the_machines_drift_through_the_reference_model(tmp_path):
    """When the machine slows down, the fp32 reference timed again shows it, and the policy's time is scaled
    back to the baseline's speed. The clock is simulated (the reference takes 2 ms, the policy 5 ms, then
    both three times as long): a real one on a shared machine is what this corrects, not a test."""
    import math

    from qevo_cli.latency import HostTimer

    loaded = load_model(_conv_model(tmp_path / "m.onnx"))
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).standard_normal((4, 64, 32, 32)).astype(np.float32))
    timer = HostTimer(Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr")))
    policy = Policy({layer.name: LayerChoice("int8", "fp32") for layer in loaded.layers})
    slowdown = [1.0]
    timer._time = lambda session: [slowdown[0] * (0.002 if session is timer._reference else 0.005)] * 15
    steady = timer(policy)
    assert steady.drift == 1.0 and steady.median_ms == pytest.approx(5.0) and timer.baseline_ms == pytest.approx(2.0)
    slowdown[0] = 3.0
    assert timer(policy).median_ms == pytest.approx(15.0)   # until the reference is due again (REFERENCE_EVERY_S)
    timer._reference_at = -math.inf   # now it is due
    slowed = timer(policy)
    assert slowed.drift == pytest.approx(1 / 3) and slowed.median_ms == pytest.approx(5.0)


SLEEPER = """
import os, sys, time
size = os.path.getsize(sys.argv[1])
ms = size / 1000 * {per_kb}
time.sleep(ms / 1000)
print("loading...")
print(f"{{ms:.6f}}")
"""


def _script(tmp_path, text, name="device.py"):
    path = tmp_path / name
    path.write_text(text)
    return f"{sys.executable} {path} {{model}}"


def test_latency_command_times_each_exported_policy_by_its_file(tmp_path):
    """A command that sleeps in proportion to the model file's size: each policy's latency is what it printed
    for that policy's exported file, and the search's front holds those measurements."""
    from qevo_cli.config import SearchConfig
    from qevo_cli.latency import CommandTimer, stored_model
    from qevo_cli.search import run_search
    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL

    command = _script(tmp_path, SLEEPER.format(per_kb=0.5))
    loaded = load_model(DEFAULT_MODEL)
    evaluator = Evaluator(loaded, load_data(DEFAULT_DATA, loaded), resolve_metric("accuracy"))
    timer = CommandTimer(evaluator, command)
    for policy in (Policy({}), Policy({layer.name: LayerChoice("int4", "int8") for layer in loaded.layers})):
        expected = len(stored_model(evaluator, policy).SerializeToString()) / 1000 * 0.5
        assert timer(policy).median_ms == pytest.approx(expected, rel=1e-3)
    result = run_search(SearchConfig(model=str(DEFAULT_MODEL), data=str(DEFAULT_DATA), calib=str(DEFAULT_CALIB),
                                     target="arm-neon", objectives=("metric", "latency"), evaluations=10, pop=4,
                                     latency_cmd=command, out=str(tmp_path / "run")))
    latencies = result.front.values("latency")
    assert latencies and all(0 < value < 1e6 for value in latencies)
    assert any("latency is measured" in note for note in result.notes)


@pytest.mark.slow
def test_a_failing_or_hanging_latency_command_fails_its_policy_not_the_search(tmp_path, monkeypatch, capsys):
    from qevo_cli.config import SearchConfig
    from qevo_cli.latency import CommandTimer, LatencyFailure
    from qevo_cli.search import run_search
    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL

    loaded = load_model(DEFAULT_MODEL)
    evaluator = Evaluator(loaded, load_data(DEFAULT_DATA, loaded), resolve_metric("accuracy"))
    failing = _script(tmp_path, "import sys\nprint('no device attached', file=sys.stderr)\nsys.exit(3)\n", "fail.py")
    with pytest.raises(LatencyFailure, match="exit code 3: no device attached"):
        CommandTimer(evaluator, failing)(Policy({}))
    hanging = _script(tmp_path, "import time\ntime.sleep(60)\n", "hang.py")
    started = time.perf_counter()
    with pytest.raises(LatencyFailure, match="past its timeout of 1 s"):
        CommandTimer(evaluator, hanging, timeout=1.0)(Policy({}))
    assert time.perf_counter() - started < 20
    # a command that leaves a helper behind holding its output (an ssh master) still ends when it exits
    started = time.perf_counter()
    assert CommandTimer(evaluator, "sh -c 'sleep 5 & echo 1.5' {model}", timeout=3.0)(Policy({})).median_ms == 1.5
    assert time.perf_counter() - started < 3
    chatty = _script(tmp_path, "print('done')\n", "chatty.py")
    with pytest.raises(LatencyFailure, match="expected a latency in ms"):
        CommandTimer(evaluator, chatty)(Policy({}))
    # in a search: every policy fails its timing, the search still ends, with nothing feasible and a note
    result = run_search(SearchConfig(model=str(DEFAULT_MODEL), data=str(DEFAULT_DATA), calib=str(DEFAULT_CALIB),
                                     target="arm-neon", objectives=("metric", "latency"), evaluations=6, pop=4,
                                     latency_cmd=hanging, latency_timeout=0.5, out=str(tmp_path / "run")))
    assert not result.feasible
    assert any("could not be measured" in note and "timeout" in note for note in result.notes)


def test_latency_settings_are_checked(tmp_path):
    from qevo_cli.config import SearchConfig
    from qevo_cli.errors import QevoError
    from qevo_cli.search import Search
    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL

    with pytest.raises(QevoError, match="holding {model}"):
        SearchConfig(target="arm-neon", latency_cmd="adb shell run")
    for bad in (0, float("inf"), float("nan")):
        with pytest.raises(QevoError, match="positive number"):
            SearchConfig(target="arm-neon", latency_timeout=bad)
    with pytest.raises(QevoError, match="--workers 1"):
        Search.new(SearchConfig(model=str(DEFAULT_MODEL), data=str(DEFAULT_DATA), calib=str(DEFAULT_CALIB),
                            target="host", workers=2, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()   # refused before the run folder was made


def test_a_flat_modelled_latency_leaves_the_default_objectives_and_is_reported(tmp_path):
    """On the digits model every hexagon policy costs about 314 us: the default objectives drop latency (with a
    note); named explicitly it stays, and `qevo pareto show` says that it does not separate the policies."""
    from typer.testing import CliRunner

    from qevo_cli.cli import app
    from qevo_cli.config import SearchConfig
    from qevo_cli.search import Search

    search = Search.new(SearchConfig(target="hexagon", out=str(tmp_path / "a")))
    assert search.config.objectives == ("metric", "size")
    assert any("does not separate" in note for note in search.notes)
    search.close()
    kept = Search.new(SearchConfig(target="hexagon", objectives="metric,size,latency", out=str(tmp_path / "b")))
    assert kept.config.objectives == ("metric", "size", "latency")
    kept.close()
    runner = CliRunner()
    done = runner.invoke(app, ["search", "--target", "hexagon", "--objectives", "metric,size,latency",
                               "--evaluations", "8", "--pop", "4", "--out", str(tmp_path / "c"), "--quiet"])
    assert done.exit_code == 0, done.output
    shown = runner.invoke(app, ["pareto", "show", str(tmp_path / "c")], env={"COLUMNS": "200"})
    assert "latency does not separate these policies on this target" in shown.output
    as_json = runner.invoke(app, ["pareto", "show", str(tmp_path / "c"), "--json"])
    import json
    assert "latency" in json.loads(as_json.output)["flat"]
    # a measured latency is never dropped: it cannot be predicted
    host = Search.new(SearchConfig(target="host", out=str(tmp_path / "d")))
    assert "latency" in host.config.objectives
    host.close()


def test_a_profile_fitted_to_whole_model_latencies_predicts_policies_it_has_not_seen(tmp_path):
    """Model latencies made by a known profile (host with other throughputs, bandwidth, overheads and
    conversions): fitted from the shipped host profile on 12 policies, the fit predicts 12 others within 2%
    and ranks them right."""
    import yaml
    from scipy.stats import spearmanr

    from qevo_cli.cost import model_cost
    from qevo_cli.fit_models import ModelMeasurement, fit_to_models
    from qevo_cli.genome import Allowed, build_space
    from qevo_cli.defaults import DEFAULT_MODEL
    from qevo_cli.profiles import load_profile, profile_from_dict

    base = load_profile("host")
    data = yaml.safe_load(base.dumps())
    data["compute"]["fp32/fp32"]["throughput"] = "20 GMAC/s"
    data["compute"]["int8/int8"]["throughput"] = "90 GMAC/s"
    data["memory"]["bandwidth"] = "8 GB/s"
    data["overhead"] = {"per_op": "12 us", "per_graph": "70 us"}
    data["conversion"] = {"weight": "0.5 ns", "activation": "2 ns", "weight_by_format": {"int4": "3 ns"},
                          "dequantized_efficiency": 0.5}
    truth = profile_from_dict(data)
    layers = load_model(DEFAULT_MODEL).layers
    space = build_space(layers, base, Allowed(("int4", "int8", "fp16"), ("int8", "fp32")))
    rng = np.random.default_rng(3)
    policies = [space.decode(rng.integers(0, space.upper + 1)) for _ in range(24)]
    rows = [ModelMeasurement(f"#{i}", p, model_cost(layers, p, truth).latency_s) for i, p in enumerate(policies)]
    result = fit_to_models(base, layers, rows[:12], name="fitted", measurements_label="synthetic", sha256="0" * 64)
    assert result.median_relative_error < result.base_median_relative_error
    measured = [r.latency_s for r in rows[12:]]
    predicted = [model_cost(layers, r.policy, result.profile).latency_s for r in rows[12:]]
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    assert np.median(errors) < 0.02, errors
    assert spearmanr(measured, predicted).statistic > 0.9
