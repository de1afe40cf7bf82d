"""Killed, interrupted and concurrent searches: nothing finished is lost, nothing is corrupted."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from qevo_cli.store import RunStore

SETTINGS = ["--target", "arm-neon", "--weight-formats", "int2,int4,int8", "--act-formats", "int8,int16",
            "--pop", "16", "--generations", "6", "--seed", "11", "--quiet"]


def _start(args, cache, **kwargs):
    env = {**os.environ, "QEVO_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "qevo_cli", "search", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _keys(run_dir):
    with sqlite3.connect(run_dir / "evaluations.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0]: row[1] for row in db.execute("SELECT key, metric FROM evaluation")}


def _front(run_dir):
    front = json.loads((run_dir / "front.json").read_text())
    return {(json.dumps(s["policy"], sort_keys=True), round(s["metric"], 9)) for s in front["solutions"]}


def _kill_and_resume(settings, run_dir, cache, rng, kills, pause):
    """Start a search, SIGKILL it `kills` times at random moments (`pause` seconds apart at most), resuming after
    each kill, and let the last one finish. After every kill the stored evaluations must hold everything
    stored before. Returns the stderr of each killed process."""
    stored: dict = {}
    process = _start([*settings, "--out", str(run_dir)], cache)
    errors = []
    while len(errors) < kills:
        time.sleep(rng.uniform(*pause))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        errors.append(process.communicate(timeout=60)[1])   # returns once every writer of its stderr has gone
        if not (run_dir / "run.yaml").exists():   # killed before the run existed: start it again
            process = _start([*settings, "--out", str(run_dir)], cache)
            continue
        now = _keys(run_dir)
        assert stored.items() <= now.items(), "a stored evaluation was lost or changed"
        stored = now
        process = _start(["--resume", str(run_dir), "--quiet"], cache)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert stored.items() <= _keys(run_dir).items()
    return errors


@pytest.mark.slow
def test_repeated_sigkill_and_resume_loses_nothing(tmp_path):
    run_dir = tmp_path / "killed"
    _kill_and_resume(SETTINGS, run_dir, tmp_path / "cache", random.Random(7), kills=4, pause=(0.8, 2.5))
    final = _keys(run_dir)
    whole = _start([*SETTINGS, "--out", str(tmp_path / "whole")], tmp_path / "cache-whole")
    whole.communicate(timeout=300)
    assert whole.returncode == 0
    assert _front(run_dir) == _front(tmp_path / "whole")
    assert set(final) == set(_keys(tmp_path / "whole"))


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "interrupted"
    # enough generations that a loaded machine cannot finish the run between the first checkpoint and the signal
    # a child of a background job inherits SIGINT ignored; give it the default, as a terminal's process has
    process = _start([*SETTINGS, "--generations", "40", "--out", str(run_dir)], tmp_path / "cache",
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / RunStore.CHECKPOINT_FILE).exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"qevo search --resume {run_dir}" in err and "Traceback" not in err
    assert _keys(run_dir)
    resumed = _start(["--resume", str(run_dir), "--quiet"], tmp_path / "cache")
    resumed.communicate(timeout=300)
    assert resumed.returncode == 0


@pytest.mark.slow
def test_two_searches_share_one_cache_at_once(tmp_path):
    cache = tmp_path / "shared-cache"
    first = _start([*SETTINGS, "--out", str(tmp_path / "a")], cache)
    second = _start([*SETTINGS, "--seed", "12", "--out", str(tmp_path / "b")], cache)
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    with sqlite3.connect(cache / "evaluations.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        cached = db.execute("SELECT COUNT(*) FROM metric").fetchone()[0]
    assert cached >= max(len(_keys(tmp_path / "a")), len(_keys(tmp_path / "b"))) - 2
    again = _start([*SETTINGS, "--out", str(tmp_path / "c"), "--json"], cache)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and json.loads(out)["measured"] == 0


def _no_stray_temporaries(*folders):
    for folder in folders:
        stray = [p.name for p in folder.glob(".*.tmp")]
        assert not stray, f"temporary files left in {folder}: {stray}"


@pytest.mark.slow
def test_sigkill_at_random_points_of_a_two_worker_search_and_of_an_export(tmp_path):
    """Ten SIGKILLs of a `--workers 2` search and ten of an export: every stored evaluation survives each one
    (the store intact), the workers die with the search (no BrokenPipeError tracebacks from orphans), the
    resumed run ends with the front of an uninterrupted one, no temporary file outlives the next write, and
    an export file is always absent or complete."""
    import onnx

    rng = random.Random(3)
    settings = [*SETTINGS, "--workers", "2", "--generations", "5"]
    run_dir = tmp_path / "killed"
    errors = _kill_and_resume(settings, run_dir, tmp_path / "cache", rng, kills=10, pause=(0.3, 2.0))
    assert len(errors) >= 5, "the search ended before it could be killed often enough"
    assert not [err for err in errors if "Traceback" in err], errors
    _no_stray_temporaries(run_dir)
    whole = _start([*settings, "--out", str(tmp_path / "whole")], tmp_path / "cache-whole")
    assert whole.communicate(timeout=300) and whole.returncode == 0
    assert _front(run_dir) == _front(tmp_path / "whole")

    target = tmp_path / "exported" / "model.onnx"
    target.parent.mkdir()
    env = {**os.environ, "QEVO_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(10):
        export = subprocess.Popen([sys.executable, "-m", "qevo_cli", "export", str(run_dir), str(target)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.5, 3.0))
        export.send_signal(signal.SIGKILL)
        export.communicate(timeout=60)
        if target.exists():
            onnx.checker.check_model(str(target))   # complete, never half-written
    finished = subprocess.run([sys.executable, "-m", "qevo_cli", "export", str(run_dir), str(target)], env=env,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    onnx.checker.check_model(str(target))
    _no_stray_temporaries(target.parent, run_dir)
