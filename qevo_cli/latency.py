"""Measured latency: each policy's model as its export writes it, timed on this machine or by the user's command.

`HostTimer` builds the stored form (real Q/DQ and integer codes, which onnxruntime fuses into integer
kernels), opens it with the session options a deployment would use (all graph optimizations, a fixed
thread count), feeds one sample of the user's data, and reports the median of repeated runs after a
warm-up, with the interquartile range over the median as its spread. `CommandTimer` writes the same file
and runs the user's command on it (adb to a phone, ssh to a board, a trtexec wrapper), reading a latency in
ms from the last line it prints. Both are cached per policy (`LatencyCache`), keyed by what they measure.
Energy is not measured: it stays the profile's model.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import signal
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .errors import QevoError, first_line
from .policy import Policy
from .defaults import cache_dir
from .store import connect_database

WARMUP_RUNS = 3
MIN_RUNS, MAX_RUNS = 15, 200
MIN_SECONDS, MAX_SECONDS = 0.3, 5.0
COMMAND_TIMEOUT_S = 120.0
REFERENCE_EVERY_S = 20.0   # how often HostTimer times the fp32 model again to follow the machine's drift
REFERENCE_KEY = "the fp32 model, as the drift baseline"


class LatencyFailure(Exception):
    """One policy could not be timed: the search goes on and that policy counts as infeasible."""


@dataclass(frozen=True)
class Timing:
    median_ms: float
    spread: float        # interquartile range over the median (0 for one reading, such as a command's)
    runs: int
    drift: float = 1.0   # the factor the machine's drift correction applied (HostTimer)


def host_name() -> str:
    """The CPU this process runs on, as /proc/cpuinfo or the platform names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stored_model(evaluator, policy: Policy) -> onnx.ModelProto:
    """The policy's model as `qevo export` writes it (weights stored as the runtime keeps them)."""
    from .export import simulated_layers, stored_form

    simulated = simulated_layers(evaluator, policy)
    if simulated:
        raise LatencyFailure(f"layer {simulated[0]!r} uses {policy.choice(simulated[0]).weight} weights, which no "
                             "ONNX type stores, so its model cannot be run as deployed")
    return stored_form(evaluator, policy)[0]


def one_sample(evaluator) -> dict[str, np.ndarray]:
    """The first sample of the data (its whole first batch when the model's batch is fixed)."""
    data = evaluator.data
    feed = next(iter(data.batches()))
    if data.fixed_batch:
        return feed
    rows = max((len(v) for v in feed.values() if np.ndim(v)), default=1)
    return {name: value[:1] if np.ndim(value) and len(value) == rows else value for name, value in feed.items()}


class HostTimer:
    """Times policies on the machine qevo runs on, with onnxruntime's CPU execution provider.

    A shared or virtual machine drifts: the same model timed minutes apart may take twice as long. So
    every REFERENCE_EVERY_S the fp32 model is timed again, and each policy's time is scaled by the
    reference's time then against `baseline_ms` (its first time, or the one the cache kept): policies
    timed at different moments stay comparable."""

    def __init__(self, evaluator, threads: int = 1):
        self.evaluator, self.threads = evaluator, threads
        self.feed = one_sample(evaluator)
        self.baseline_ms: float | None = None
        self._reference = None
        self._reference_ms = 0.0
        self._reference_at = -math.inf

    def identity(self) -> dict:
        shapes = {name: list(np.shape(value)) for name, value in sorted(self.feed.items())}
        from . import __version__

        return {"timer": "host", "cpu": host_name(), "cores": os.cpu_count(), "onnxruntime": ort.__version__,
                "threads": self.threads, "feed": shapes, "qevo": __version__}

    def __call__(self, policy: Policy) -> Timing:
        try:
            session = self._session(stored_model(self.evaluator, policy))
            timing = summarise(self._time(session))
        except LatencyFailure:
            raise
        except Exception as err:  # onnxruntime raises a family of pybind11 error types
            raise LatencyFailure(f"onnxruntime could not run the policy's model: {first_line(err)}") from None
        drift = self._drift()
        return Timing(timing.median_ms * drift, timing.spread, timing.runs, drift)

    def _session(self, model: onnx.ModelProto):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _time(self, session) -> list[float]:
        for _ in range(WARMUP_RUNS):
            session.run(None, self.feed)
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() - started < MIN_SECONDS):
            begin = time.perf_counter()
            session.run(None, self.feed)
            times.append(time.perf_counter() - begin)
            if time.perf_counter() - started > MAX_SECONDS and len(times) >= 3:
                break
        return times

    def _drift(self) -> float:
        """baseline / the reference's time now (timed again when the last timing is old)."""
        if self._reference is None:
            self._reference = self._session(stored_model(self.evaluator, Policy({})))
        if time.perf_counter() - self._reference_at >= REFERENCE_EVERY_S:
            self._reference_ms = summarise(self._time(self._reference)).median_ms
            self._reference_at = time.perf_counter()
            if self.baseline_ms is None:
                self.baseline_ms = self._reference_ms
        return self.baseline_ms / self._reference_ms


def summarise(times_s: list[float]) -> Timing:
    values = np.asarray(times_s) * 1e3
    median = float(np.median(values))
    q1, q3 = np.percentile(values, [25, 75])
    return Timing(median, float((q3 - q1) / median) if median > 0 else 0.0, len(values))


class CommandTimer:
    """Times policies with the user's command: `{model}` in it becomes the path of the policy's exported model,
    and the last line it prints is the latency in ms."""

    def __init__(self, evaluator, command: str, timeout: float = COMMAND_TIMEOUT_S):
        if not isinstance(command, str) or "{model}" not in command:
            raise QevoError(f"got {command!r}, expected a command holding {{model}}, the exported model's path",
                            field="--latency-cmd")
        self.evaluator, self.command, self.timeout = evaluator, command, timeout

    def identity(self) -> dict:
        from . import __version__

        return {"timer": "command", "command": self.command, "qevo": __version__}

    def __call__(self, policy: Policy) -> Timing:
        import shlex

        model = stored_model(self.evaluator, policy)
        with tempfile.TemporaryDirectory(prefix="qevo-latency-") as folder:
            path = Path(folder) / "model.onnx"
            onnx.save(model, str(path))
            command = self.command.replace("{model}", shlex.quote(str(path)))
            # output to files, not pipes: a helper the command leaves behind (an ssh master) may hold a pipe open
            with open(Path(folder) / "out", "w+b") as out_file, open(Path(folder) / "err", "w+b") as err_file:
                process = subprocess.Popen(command, shell=True, stdout=out_file, stderr=err_file,
                                           start_new_session=True)   # its own group: a timeout ends it all
                try:
                    process.wait(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    raise LatencyFailure(f"the latency command ran past its timeout of {self.timeout:g} s") from None
                finally:
                    if process.poll() is None:   # timed out, or interrupted (Ctrl-C)
                        try:
                            os.killpg(process.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        try:
                            process.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
                out_file.seek(0)
                err_file.seek(0)
                out = out_file.read().decode("utf-8", errors="replace")
                err = err_file.read().decode("utf-8", errors="replace")
        if process.returncode != 0:
            detail = next((line for line in reversed(err.splitlines()) if line.strip()), "no message")
            raise LatencyFailure(f"the latency command failed with exit code {process.returncode}: {detail.strip()}")
        last = next((line.strip() for line in reversed(out.splitlines()) if line.strip()), "")
        try:
            value = float(last)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise LatencyFailure(f"the latency command's last line of output is {last[:60]!r}, expected a latency "
                                 "in ms (a positive number)")
        return Timing(value, 0.0, 1)


class LatencyCache:
    """Measured latencies of policies, shared by every run on this machine, keyed by the timer's identity
    (host, onnxruntime version, threads, input shapes, or the command) and the model's content."""

    def __init__(self, identity: dict, model_digest: str, path: Path | None = None):
        self.path = path or cache_dir() / "evaluations.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect_database(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS latency "
                             "(key TEXT PRIMARY KEY, median_ms REAL, spread REAL, runs INTEGER)")
        except (OSError, sqlite3.Error) as err:
            raise QevoError(f"cannot open the evaluation cache ({err})", path=self.path) from None
        self._prefix = json.dumps({**identity, "model": model_digest}, sort_keys=True)

    def _key(self, policy_key: str) -> str:
        return hashlib.sha256((self._prefix + policy_key).encode()).hexdigest()

    def get(self, policy_key: str) -> Timing | None:
        row = self._db.execute("SELECT median_ms, spread, runs FROM latency WHERE key = ?",
                               (self._key(policy_key),)).fetchone()
        return Timing(*row) if row else None

    def put(self, policy_key: str, timing: Timing) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?)",
                             (self._key(policy_key), timing.median_ms, timing.spread, timing.runs))


class MeasuredLatency:
    """A timer with its cache and a record of the policies it could not time."""

    def __init__(self, timer, model_digest: str):
        self.timer = timer
        self.cache = LatencyCache(timer.identity(), model_digest)
        self.memory: dict[str, Timing] = {}
        self.failures: dict[str, str] = {}
        self.timed = 0
        if hasattr(timer, "baseline_ms"):   # timings cached by earlier runs were scaled to this baseline
            baseline = self.cache.get(REFERENCE_KEY)
            timer.baseline_ms = baseline.median_ms if baseline else None

    def known(self, policy: Policy) -> Timing | None:
        """The policy's timing if it was taken before (this run or the cache), without timing it."""
        key = policy.key()
        if key not in self.memory:
            found = self.cache.get(key)
            if found is None:
                return None
            self.memory[key] = found
        return self.memory[key]

    def __call__(self, policy: Policy) -> Timing | None:
        """The policy's timing, or None when it could not be timed (the reason is in `failures`)."""
        key = policy.key()
        if key in self.memory:
            return self.memory[key]
        if key in self.failures:
            return None
        timing = self.cache.get(key)
        if timing is None:
            try:
                timing = self.timer(policy)
            except LatencyFailure as failure:
                self.failures[key] = str(failure)
                return None
            except Exception as err:   # building or writing this policy's model: it fails, not the search
                self.failures[key] = f"its model could not be built for timing: {first_line(err)}"
                return None
            self.cache.put(key, timing)
            if getattr(self.timer, "baseline_ms", None) is not None and self.cache.get(REFERENCE_KEY) is None:
                self.cache.put(REFERENCE_KEY, Timing(self.timer.baseline_ms, 0.0, 1))
            self.timed += 1
        self.memory[key] = timing
        return timing


def measured_latency(config, profile, evaluator) -> tuple[MeasuredLatency | None, str | None]:
    """The measured latency a search's settings ask for (--latency-cmd, or a profile timed on this machine)
    and a note saying so; (None, None) when latency stays the profile's model."""
    if "latency" not in config.objectives and "latency" not in config.budgets():
        return None, None   # nothing asks for it: the front's latency stays the profile's model
    if config.latency_cmd:
        timer = CommandTimer(evaluator, config.latency_cmd, config.latency_timeout)
    elif profile.latency_source == "host":
        if config.workers > 1 or config.dask:
            raise QevoError(f"{profile.name} times each policy on this machine, which evaluations running "
                            "beside it would disturb: run it with --workers 1 and without --dask", field="--workers")
        timer = HostTimer(evaluator)
    else:
        return None, None
    where = "by --latency-cmd" if config.latency_cmd else f"on this machine: {timer.identity()['cpu']}"
    note = f"latency is measured ({where}); energy stays the profile's model"
    return MeasuredLatency(timer, evaluator.model.digest), note
