"""Measuring policies: serially, in worker processes, or on a Dask cluster.

`MeasureTask` is what travels to a worker: the paths and settings to open the
workspace, and one policy. Each process opens the workspace once and keeps its
evaluator. A runner maps the task over policies and yields results in input order
as they finish, so the same seed gives the same front serially, with workers and
on Dask, and the caller can store each result as soon as it exists.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .errors import QevoError
from .evaluate import Evaluator
from .policy import Policy

_EVALUATORS: dict[tuple, Evaluator] = {}   # one per workspace per process


@dataclass(frozen=True)
class WorkspaceSpec:
    """How to open the same workspace in any process."""

    model: str | None
    data: str | None
    calib: str | None
    metric: str | None
    dims: tuple[tuple[str, int], ...] = ()
    threads: int = 1

    @classmethod
    def of(cls, config) -> "WorkspaceSpec":
        """The workspace a SearchConfig names."""
        return cls(config.model, config.data, config.calib, config.metric, tuple(sorted(config.dims.items())),
                   config.threads)

    def evaluator(self) -> Evaluator:
        key = (self.model, self.data, self.calib, self.metric, self.dims, self.threads, _stamps(self))
        evaluator = _EVALUATORS.get(key)
        if evaluator is None:
            from .workspace import open_workspace

            workspace = open_workspace(self.model, self.data, self.calib, self.metric, dict(self.dims))
            evaluator = workspace.evaluator(self.threads)
            _EVALUATORS[key] = evaluator
        return evaluator


def _stamps(spec: WorkspaceSpec) -> tuple:
    """Size and modification time of each file, so a file changed in place opens afresh."""
    stamps = []
    for name in (spec.model, spec.data, spec.calib):
        try:
            stat = os.stat(name) if name else None
        except OSError:
            stat = None
        stamps.append((stat.st_size, stat.st_mtime_ns) if stat else None)
    return tuple(stamps)


@dataclass(frozen=True)
class MeasureTask:
    spec: WorkspaceSpec

    def __call__(self, item: dict[str, Any] | tuple) -> tuple[float | None, float, float | None]:
        """(metric or None, seconds, subset metric or None) of one policy, measured in this process.

        `item` is a policy's dict, or (dict, Race) to measure a subset first (see fidelity.py)."""
        evaluator = self.spec.evaluator()
        start = time.perf_counter()
        if isinstance(item, tuple):
            policy_data, race = item
            value, partial = evaluator.evaluate_staged(Policy.from_dict(policy_data), race.rows, race.worth_full)
            return value, time.perf_counter() - start, partial
        value = evaluator.evaluate(Policy.from_dict(item))
        return value, time.perf_counter() - start, None


Runner = Callable[[Callable, list], Iterable]


def _serial(f, items):
    return (f(item) for item in items)


@contextmanager
def open_runner(workers: int = 1, dask_address: str | None = None) -> Iterator[Runner]:
    """A map function `runner(f, items) -> results` over the chosen executor."""
    if dask_address:
        try:
            from dask.distributed import Client
        except ImportError:
            raise QevoError("needs Dask: pip install 'qevo[dask]'", field="--dask") from None
        try:
            client = Client(dask_address, timeout=20)
        except (OSError, TimeoutError) as err:
            raise QevoError(f"cannot reach the Dask scheduler at {dask_address} ({err})", field="--dask") from None
        try:
            yield lambda f, items: _dask_map(client, f, items)
        finally:
            client.close()
    elif workers > 1:
        # spawn, not fork: onnxruntime's thread pools do not survive a fork
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_die_with_parent,
                                                       initargs=(os.getpid(),)) as pool:
            yield lambda f, items: pool.imap(f, items)
    else:
        yield _serial


def _dask_map(client, f, items) -> Iterator:
    """Results in input order, each as soon as it and those before it are done (so the caller stores them as
    they finish); what is left is cancelled when the caller stops early."""
    futures = client.map(f, list(items), pure=False)
    try:
        for future in futures:
            yield future.result()
    finally:
        client.cancel(futures)


def _die_with_parent(parent: int) -> None:
    """A worker ends with the search that started it: a search killed with SIGKILL leaves no orphan to print a
    BrokenPipeError traceback when it hands back its result (Linux's PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:   # the parent died before the request took effect
        os._exit(1)
