"""Continuing a search that stopped: from its last checkpoint, measuring nothing it stored again.

Before anything runs, the run folder must still be the run it was: the model, data and calibration set with
the digests run.yaml records, an evaluation store that holds what the checkpoint counts, and a checkpoint
written by this run (its run_id), not copied from another.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .algorithm import set_running_time
from .config import SearchConfig
from .errors import QevoError
from .search import Progress, Search, SearchResult
from .store import RunStore


def resume_search(run_dir: str | Path, callback: Callable[[Progress], Any] | None = None,
                  overrides: dict[str, Any] | None = None) -> SearchResult:
    """Continue a run that stopped, from its last checkpoint, without measuring stored policies again."""
    search, algorithm = prepare_resume(run_dir, overrides)
    search.callback = callback
    return search.run(algorithm=algorithm)


def prepare_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None):
    """(Search, algorithm or None) for a stopped run: everything checked, nothing run yet."""
    store = RunStore(run_dir, create=False)
    try:
        saved = store.read_config()
        config = SearchConfig.from_run(store, overrides or {})
        checkpoint = store.load_checkpoint()
        _check_store(store, saved, checkpoint)
    finally:
        store.close()
    search = Search.reopen(config, Path(run_dir))
    try:
        _check_inputs(search, saved)
    except QevoError:
        search.close()
        raise
    if checkpoint is None:
        return search, None
    search.progress = checkpoint["progress"]
    search.progress.measured_now = 0
    search.started -= search.progress.elapsed_s
    algorithm = checkpoint["algorithm"]
    genes = getattr(getattr(algorithm, "problem", None), "n_var", search.space.n_var)
    if genes != search.space.n_var:   # a run from a qevo that built another space (say, before tensor genes)
        search.close()
        raise QevoError(f"the run's checkpoint has {genes} genes and this qevo builds {search.space.n_var} for the "
                        "same settings; start a new run", path=Path(run_dir) / RunStore.RUN_FILE, field="genes")
    # --time-limit counts running time only, on the search's own clock (building the evaluator above counts): a
    # limit anchored after that would let generations run that the measurer, past its deadline, leaves empty
    set_running_time(algorithm, time.time() - (time.perf_counter() - search.started))
    return search, algorithm


def _check_store(store: RunStore, saved: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
    """A checkpoint belongs to its run folder and its evaluations: one copied from another run, or a store that
    lost what the checkpoint counts, would resume into a front that silently replaces the good one."""
    if checkpoint is None:
        return
    run_id = saved.get("run_id")
    if run_id is not None and checkpoint.get("run_id") != run_id:
        raise QevoError(f"the checkpoint belongs to another run (run {checkpoint.get('run_id')!r}, this folder's "
                        f"run.yaml says {run_id!r}); start a new run", path=store.dir / RunStore.CHECKPOINT_FILE,
                        field="run_id")
    progress = checkpoint.get("progress")
    counted = (getattr(progress, "measured", 0) or 0) + (getattr(progress, "cache_hits", 0) or 0)
    held = store.count()
    if counted and held == 0:
        raise QevoError(f"holds no evaluations, but the checkpoint counts {counted}: the store was deleted or "
                        f"emptied; the front is left as it was and nothing is resumed", path=store.dir / RunStore.DB_FILE)


def _check_inputs(search: "Search", saved: dict[str, Any]) -> None:
    """The model, data and calibration set must be the ones the run started with: a resume that measured
    another model would mix two models' metrics in one front."""
    resolved = saved.get("resolved") if isinstance(saved.get("resolved"), dict) else {}
    evaluator = search.evaluator
    for name, digest, path in (("model", evaluator.model.digest, evaluator.model.path),
                               ("data", evaluator.data.digest, evaluator.data.path),
                               ("calib", evaluator.calibrator.calib.digest, evaluator.calibrator.calib.path)):
        recorded = resolved.get(f"{name}_digest")
        if recorded is not None and recorded != digest:
            raise QevoError(f"changed since the run started (run.yaml records digest {str(recorded)[:12]}, the file "
                            f"now has {digest[:12]}); restore it or start a new run", path=path, field=name)
