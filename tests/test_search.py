"""The search: front files, determinism, resume after SIGKILL, workers, Dask, cache, budgets."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from qevo_cli.cli import app
from qevo_cli.config import SearchConfig
from qevo_cli.errors import QevoError
from qevo_cli.front import Front
from qevo_cli.algorithm import make_algorithm
from qevo_cli.resume import resume_search
from qevo_cli.search import run_search
from qevo_cli.store import RunStore

SMALL = dict(target="arm-neon", weight_formats="int2,int4,int8", act_formats="int8", pop=10, generations=3, seed=3)


def _front_set(front):
    """A front as a set of (policy, objectives), independent of row ids."""
    return {(json.dumps(s.policy.to_dict(), sort_keys=True), tuple(round(v, 9) for v in s.objectives.values()))
            for s in front.solutions}


def test_front_files_and_non_domination(tmp_path):
    result = run_search(SearchConfig(out=str(tmp_path / "run"), **SMALL))
    front = json.loads((tmp_path / "run" / "front.json").read_text())
    assert {"version", "model", "target", "metric", "objectives", "references", "solutions"} <= set(front)
    assert [r["name"] for r in front["references"]] == ["fp32", "uniform W8A8"]
    assert front["references"][0]["objectives"]["metric"] == 0.0
    solutions = front["solutions"]
    assert solutions and all(s["feasible"] for s in solutions)
    F = np.array([[s["objectives"][n] for n in front["objectives"]] for s in solutions])
    for i in range(len(F)):
        dominated = np.all(F <= F[i], axis=1) & np.any(F < F[i], axis=1)
        assert not dominated.any()
    store = RunStore(tmp_path / "run", create=False)
    rows = store.evaluations()
    assert len(rows) == front["evaluated"] >= 10
    assert {s["id"] for s in solutions} <= {r["id"] for r in rows}
    config = store.read_config()
    assert config["settings"]["seed"] == 3 and "pymoo" in config["versions"]
    assert result.progress.generation == 3


def test_same_seed_same_front(tmp_path, monkeypatch):
    fronts = []
    for i in range(2):
        monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / f"cache{i}"))   # measured afresh each time
        fronts.append(run_search(SearchConfig(out=str(tmp_path / f"run{i}"), **SMALL)).front)
    assert _front_set(fronts[0]) == _front_set(fronts[1])
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "cache2"))
    run_search(SearchConfig(out=str(tmp_path / "run2"), **{**SMALL, "seed": 4}))
    measured = [{row["key"] for row in RunStore(tmp_path / name, create=False).evaluations()} for name in ("run0", "run2")]
    assert measured[0] != measured[1]   # another seed samples and evolves other policies


def test_repeated_search_is_served_from_the_cache(tmp_path):
    first = run_search(SearchConfig(out=str(tmp_path / "a"), **SMALL))
    second = run_search(SearchConfig(out=str(tmp_path / "b"), **SMALL))
    assert first.progress.measured > 0
    assert second.progress.measured == 0 and second.progress.cache_hits > 0
    assert _front_set(first.front) == _front_set(second.front)
    # measured and taken from the cache add up to what the run stored; policies proposed twice are apart
    for result in (first, second):
        assert result.progress.measured + result.progress.cache_hits == result.front.evaluated
    assert first.progress.repeats == second.progress.repeats


def test_workers_give_the_same_front_as_serial(tmp_path, monkeypatch):
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "serial-cache"))
    serial = run_search(SearchConfig(out=str(tmp_path / "serial"), **SMALL))
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "pool-cache"))
    pooled = run_search(SearchConfig(out=str(tmp_path / "pool"), workers=2, **SMALL))
    assert pooled.progress.measured == serial.progress.measured > 0
    assert _front_set(pooled.front) == _front_set(serial.front)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_front(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "serial-cache"))
    serial = run_search(SearchConfig(out=str(tmp_path / "serial"), **SMALL))
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "dask-cache"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_dask = run_search(SearchConfig(out=str(tmp_path / "dask"), dask=cluster.scheduler_address, **SMALL))
    assert on_dask.progress.measured == serial.progress.measured > 0
    assert _front_set(on_dask.front) == _front_set(serial.front)


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    settings = ["--target", "arm-neon", "--weight-formats", "int2,int4,int8", "--act-formats", "int8,int16",
                "--pop", "16", "--generations", "8", "--seed", "5", "--quiet"]
    env = {**os.environ, "QEVO_CACHE_DIR": str(tmp_path / "cache-killed")}
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "qevo_cli", "search", *settings, "--out", str(killed_dir)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    checkpoint = killed_dir / "checkpoint.pkl"
    while time.time() < deadline and not (checkpoint.exists() and RunStore(killed_dir, create=False).count() > 60):
        time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = RunStore(killed_dir, create=False).count()
    assert stored > 0
    # an empty cache: whatever is not measured again must come from the run's own store
    env["QEVO_CACHE_DIR"] = str(tmp_path / "cache-resumed")
    resumed = subprocess.run([sys.executable, "-m", "qevo_cli", "search", "--resume", str(killed_dir), "--json"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    total = RunStore(killed_dir, create=False).count()
    assert summary["measured_this_session"] == total - stored

    env["QEVO_CACHE_DIR"] = str(tmp_path / "cache-whole")
    whole = subprocess.run([sys.executable, "-m", "qevo_cli", "search", *settings, "--out", str(tmp_path / "whole"),
                            "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert _front_set(Front.from_dict(json.loads((killed_dir / "front.json").read_text()))) == \
        _front_set(Front.from_dict(json.loads((tmp_path / "whole" / "front.json").read_text())))
    assert total == RunStore(tmp_path / "whole", create=False).count()


def test_infeasible_budget_exits_3_and_writes_the_closest(tmp_path):
    out = tmp_path / "tight"
    result = CliRunner().invoke(app, ["search", "--target", "arm-neon", "--weight-formats", "int4,int8",
                                      "--act-formats", "int8", "--pop", "8", "--generations", "2",
                                      "--max-size-mb", "0.0001", "--out", str(out), "--quiet"])
    assert result.exit_code == 3, result.output
    front = json.loads((out / "front.json").read_text())
    assert front["feasible"] is False and front["solutions"]
    assert not any(s["feasible"] for s in front["solutions"])
    violations = [s["violation"] for s in front["solutions"]]
    assert violations == sorted(violations) and violations[0] > 0
    assert f"#{front['solutions'][0]['id']}" in result.stderr and "front.json" in result.stderr


def test_cli_json_config_file_and_flags_win(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text("target: arm-neon\nweight_formats: [int4, int8]\nact_formats: [int8]\npop: 8\ngenerations: 2\n"
                      "objectives: [metric, size, latency, energy]\n")
    result = CliRunner().invoke(app, ["search", "--config", str(config), "--generations", "1",
                                      "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["generations"] == 1 and summary["objectives"] == ["metric", "size", "latency", "energy"]
    assert summary["front_size"] == len(summary["solutions"]) > 0
    saved = RunStore(tmp_path / "run", create=False).read_config()["settings"]
    assert saved["pop"] == 8 and saved["generations"] == 1


@pytest.mark.parametrize("text, message", [
    ("target: arm-neon\ngenerashuns: 3\n", "unknown key 'generashuns'; did you mean 'generations'?"),
    ("target: arm-neon\npop: many\n", "pop: got 'many', expected an integer"),
    ("target: arm-neon\nweight_formats: [int9]\n", "--weight-formats: got 'int9'"),
    ("target: [unclosed\n", "not valid YAML"),
    ("target: arm-neon\nweight_formats: [1, 2]\n", "weight_formats: got [1, 2], expected a list of names"),
    ("target: arm-neon\ndims: {batch: x}\n", "dims: got {'batch': 'x'}, expected a mapping"),
    ("target: arm-neon\nmetric: 5\n", "metric: got 5, expected a string"),
])
def test_bad_config_files(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["search", "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert message in result.stderr and str(config) in result.stderr
    assert not (tmp_path / "run").exists()


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["search", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a qevo run directory" in result.stderr
    with pytest.raises(QevoError):
        resume_search(tmp_path / "missing")


def test_algorithm_factory_builds_fresh_objects():
    sampling = np.zeros((4, 3), dtype=int)
    first, second = make_algorithm("auto", 3, 8, sampling), make_algorithm("auto", 3, 8, sampling)
    assert type(first).__name__ == "NSGA2" and first.mating.crossover is not second.mating.crossover
    assert type(make_algorithm("auto", 4, 40, sampling)).__name__ == "NSGA3"
    assert type(make_algorithm("nsga3", 3, 40, sampling)).__name__ == "NSGA3"


def test_example_configs_are_valid():
    from pathlib import Path
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        settings = SearchConfig.from_file(path)
        assert settings.target and settings.objectives


def test_a_run_directory_is_never_mixed_with_another_run(tmp_path):
    run_search(SearchConfig(out=str(tmp_path / "run"), **{**SMALL, "generations": 1}))
    again = CliRunner().invoke(app, ["search", "--target", "hexagon", "--out", str(tmp_path / "run")])
    assert again.exit_code == 2 and "already holds a run" in again.stderr


def test_default_run_directories_are_unique(tmp_path, monkeypatch):
    from qevo_cli.runs import default_run_dir
    monkeypatch.chdir(tmp_path)
    names = {default_run_dir("model", "hexagon") for _ in range(3)}
    assert len(names) == 3 and all(path.is_dir() for path in names)


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "seed: got -1, expected a non-negative integer"),
    (["--time-limit", "-5"], "time_limit: got -5.0, expected a positive number"),
    (["--objectives", "metric,speed"], "got 'speed', expected a comma-separated list"),
    (["--max-drop", "nan"], "max_drop: got nan, expected a finite number"),
    (["--time-limit", "nan"], "time_limit: got nan, expected a finite number"),
    (["--max-size-mb", "inf"], "max_size_mb: got inf, expected a finite number"),
    (["--pop", "100000"], "pop: got 100000, expected an integer between 4 and 4096"),
])
def test_bad_search_flags(tmp_path, args, message):
    result = CliRunner().invoke(app, ["search", "--target", "arm-neon", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output



def test_ilp_sweep_spans_the_size_range_within_the_budget(default_workspace):
    from qevo_cli.cost import model_cost
    from qevo_cli.genome import Allowed, build_space
    from qevo_cli.profiles import load_profile
    from qevo_cli.seeding import ilp_sweep

    profile = load_profile("arm-neon")
    space = build_space(default_workspace.model.layers, profile, Allowed(("int2", "int4", "int8"), ("int8",)))
    bits = {"int2": 2, "int4": 4, "int8": 8}
    score = lambda i, k: 4.0 ** -bits[space.options[i][k].weight] * (i + 1)  # noqa: E731
    sizes = lambda rows: [model_cost(space.layers, space.decode(r), profile).weight_bytes / 1e6 for r in rows]  # noqa: E731
    rows = ilp_sweep(space, score, profile, "size", {}, budgets=60)
    smallest, largest = min(sizes(rows)), max(sizes(rows))
    assert len(rows) >= 8 and len({tuple(r) for r in rows}) == len(rows)
    assert smallest == pytest.approx(min(sizes([np.zeros(space.n_var, int)])))
    assert largest == pytest.approx(max(sizes([space.upper])))
    budget = (smallest + largest) / 2
    within = ilp_sweep(space, score, profile, "size", {"size": budget}, budgets=60)
    assert within and max(sizes(within)) <= budget + 1e-9


def test_resume_refuses_a_checkpoint_of_another_search_space(tmp_path):
    """A run saved by a qevo that built another space for the same settings (before tensor genes, say) is
    refused with one line rather than decoded into wrong policies."""
    import pickle

    run = tmp_path / "run"
    run_search(SearchConfig(out=str(run), **{**SMALL, "generations": 1}))
    checkpoint = run / "checkpoint.pkl"
    state = pickle.loads(checkpoint.read_bytes())
    state["algorithm"].problem.n_var += 1
    checkpoint.write_bytes(pickle.dumps(state))
    result = CliRunner().invoke(app, ["search", "--resume", str(run), "--generations", "3"])
    assert result.exit_code == 2 and "genes" in result.stderr and "start a new run" in result.stderr
    assert "Traceback" not in result.stderr


def _stopped_run(tmp_path, name="run"):
    """A run of copies of the default model and data, stopped after its first generation."""
    import shutil

    from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL

    for source, target in ((DEFAULT_MODEL, "model.onnx"), (DEFAULT_DATA, "data.npz"), (DEFAULT_CALIB, "calib.npz")):
        if not (tmp_path / target).exists():
            shutil.copy(source, tmp_path / target)
    run = tmp_path / name
    run_search(SearchConfig(out=str(run), model=str(tmp_path / "model.onnx"), data=str(tmp_path / "data.npz"),
                            calib=str(tmp_path / "calib.npz"), **{**SMALL, "generations": 1}))
    return run


def _resume(run):
    return CliRunner().invoke(app, ["search", "--resume", str(run), "--generations", "3"])


@pytest.mark.parametrize("changed", ["model", "data"])
def test_resume_refuses_a_model_or_data_changed_since_the_run_started(tmp_path, changed):
    import onnx
    from onnx import numpy_helper

    run = _stopped_run(tmp_path)
    front = (run / "front.json").read_bytes()
    if changed == "model":
        model = onnx.load(tmp_path / "model.onnx")
        weight = model.graph.initializer[0]
        weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
        onnx.save(model, tmp_path / "model.onnx")
    else:
        data = dict(np.load(tmp_path / "data.npz"))
        labels = next(k for k in data if k != "x" and data[k].ndim == 1)
        data[labels] = np.roll(data[labels], 1)
        np.savez(tmp_path / "data.npz", **data)
    result = _resume(run)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{changed}.npz" in result.stderr or f"{changed}.onnx" in result.stderr
    assert "changed since the run started" in result.stderr
    assert (run / "front.json").read_bytes() == front


@pytest.mark.parametrize("damage", ["deleted", "emptied", "foreign checkpoint"])
def test_resume_refuses_a_store_that_lost_its_evaluations(tmp_path, damage):
    import shutil
    import sqlite3

    run = _stopped_run(tmp_path)
    front = (run / "front.json").read_bytes()
    if damage == "deleted":
        for path in run.glob("evaluations.sqlite*"):
            path.unlink()
        message = "evaluations.sqlite: is missing"
    elif damage == "emptied":
        with sqlite3.connect(run / "evaluations.sqlite") as db:
            db.execute("DELETE FROM evaluation")
        message = "holds no evaluations, but the checkpoint counts"
    else:
        other = _stopped_run(tmp_path, "other")
        shutil.copy(other / "checkpoint.pkl", run / "checkpoint.pkl")
        message = "the checkpoint belongs to another run"
    result = _resume(run)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert (run / "front.json").read_bytes() == front


@pytest.mark.parametrize("out", ["new", "existing folder with a file of the user's", "default"])
def test_a_search_that_fails_to_start_leaves_no_half_made_run(tmp_path, monkeypatch, out):
    """The cache folder is a file: exit 2 with one line, and nothing the search made is left behind (the
    user's own files stay), so the same command works once the cause is fixed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    if out.startswith("existing"):
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    args = ["search", "--target", "arm-neon", "--weight-formats", "int4,int8", "--act-formats", "int8",
            "--pop", "6", "--generations", "1", "--quiet"] + ([] if out == "default" else ["--out", str(run)])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "cannot open the evaluation cache" in result.stderr
    assert "Traceback" not in result.output
    if out == "new":
        assert not run.exists()
    elif out == "default":
        assert not (tmp_path / "qevo-runs").exists() or not any((tmp_path / "qevo-runs").iterdir())
    else:
        assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "cache-dir"))
    assert CliRunner().invoke(app, args).exit_code == 0


def test_a_search_killed_before_it_measured_anything_can_be_started_again(tmp_path):
    """SIGKILL between creating the store and writing the first front leaves run.yaml and an empty store:
    nothing is lost by starting over, so the same command works (a run with a front or a checkpoint is kept)."""
    run = tmp_path / "run"
    RunStore(run).write_config({"qevo_run": 1, "settings": {}})   # what such a kill leaves
    result = CliRunner().invoke(app, ["search", "--target", "arm-neon", "--weight-formats", "int4,int8",
                                      "--act-formats", "int8", "--pop", "6", "--generations", "1", "--quiet",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert RunStore(run, create=False).count() > 0


def _wait_for_file(item):
    """Return the item's name once its file exists (at most 60 s, then say it never came)."""
    import os.path
    import time as clock

    name, path = item
    deadline = clock.monotonic() + 60
    while path and not os.path.exists(path):
        if clock.monotonic() > deadline:
            return f"{name}: handed over only when every job was done"
        clock.sleep(0.02)
    return name


def test_dask_results_come_in_input_order_as_soon_as_each_is_done(tmp_path):
    """The first result is handed over while a later job still runs (so the search stores it at once): the
    second job finishes only after the test has received the first. Order is the input's."""
    distributed = pytest.importorskip("distributed")
    from qevo_cli.runners import _dask_map

    signal_file = tmp_path / "first-received"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        results = _dask_map(client, _wait_for_file, [("a", ""), ("b", str(signal_file)), ("c", "")])
        assert next(results) == "a"
        signal_file.write_text("")
        assert list(results) == ["b", "c"]
