"""Finding and reading finished runs."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .errors import QevoError
from .front import Front
from .store import RunStore

RUNS_DIR = Path("qevo-runs")


def latest_run(root: Path = RUNS_DIR) -> Path:
    """The run under `root` whose front was written last."""
    fronts = sorted(root.glob(f"*/{RunStore.FRONT_FILE}"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not fronts:
        raise QevoError(f"no runs found under ./{root}; run qevo search first or name a run directory", path=root)
    return fronts[-1].parent


def load_front(run_dir: str | Path | None) -> tuple[Path, Front]:
    """(run directory, its front.json) for a named run, or the most recent one."""
    directory = Path(run_dir) if run_dir is not None else latest_run()
    if not directory.is_dir():
        raise QevoError("not a directory; expected a qevo run directory", path=directory)
    path = directory / RunStore.FRONT_FILE
    if not path.is_file():
        raise QevoError(f"not a qevo run directory (no {RunStore.FRONT_FILE})", path=directory)
    return directory, Front.from_dict(RunStore.read_front_file(path), path)


def load_sensitivity(directory: Path) -> dict | None:
    """The sensitivity the run's proxy found (sensitivity.json), or None: a run whose space was small enough to
    measure whole needs no proxy, and a run made by an earlier qevo has none."""
    import json

    path = Path(directory) / RunStore.SENSITIVITY_FILE
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return table if isinstance(table, dict) and isinstance(table.get("sqnr_db"), dict) else None


def load_convergence(directory: Path) -> list[dict]:
    """The run's front after each generation (RunStore.convergence), read without writing to the run; none for a
    run made by an earlier qevo."""
    import contextlib
    import sqlite3

    database = Path(directory) / RunStore.DB_FILE
    if not database.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return RunStore.convergence_rows(db)
    except sqlite3.Error:   # no such table: made before convergence was recorded
        return []


def default_run_dir(model_name: str, target: str) -> Path:
    """qevo-runs/<model>-<target>-<time>, with a suffix when that name is taken (claimed with mkdir,
    so searches started in the same second each get their own)."""
    base = RUNS_DIR / f"{model_name}-{Path(target).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise QevoError("cannot find a free run directory name", path=base)
