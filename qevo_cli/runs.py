"""Finding and reading finished runs."""
from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from datetime import datetime
from pathlib import Path

from .errors import QevoError
from .files import read_text
from .front import Front
from .store import RunStore, read_only_uri

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
    """The sensitivity the run's proxy found (sensitivity.json), or None when there is none: a run whose space was
    small enough to measure whole needs no proxy, and a run made by an earlier qevo has none. A file that is there
    but damaged is a QevoError naming the field."""
    path = Path(directory) / RunStore.SENSITIVITY_FILE
    if not path.is_file():
        return None
    text = read_text(path, "a qevo sensitivity.json")
    try:
        table = json.loads(text)
    except ValueError as err:
        raise QevoError(f"cannot read the sensitivity table ({err})", path=path) from None

    def fail(field: str, expected: str):
        raise QevoError(f"expected {expected}", path=path, field=field)

    if not isinstance(table, dict):
        fail("", "a JSON object")
    for key in ("columns", "tensor_columns"):
        columns = table.get(key, [])
        if not isinstance(columns, list) or not all(_column(c) for c in columns):
            fail(key, "a list of columns such as W:int4 or A:int8")
    for key in ("sqnr_db", "tensors"):
        rows = table.get(key, {})
        if not isinstance(rows, dict):
            fail(key, "an object: name -> column -> SQNR in dB")
        for name, row in rows.items():
            if not isinstance(row, dict) or not all(_finite(v) for v in row.values()):
                fail(f"{key}.{name}", "an object: column -> SQNR in dB")
    if "sqnr_db" not in table:
        fail("sqnr_db", "an object: layer -> column -> SQNR in dB")
    measured = table.get("measured", {})
    if not isinstance(measured, dict) or not all(isinstance(v, list) for v in measured.values()):
        fail("measured", "an object: layer -> the columns probed")
    if "subset" in table and not (isinstance(table["subset"], int) and not isinstance(table["subset"], bool)):
        fail("subset", "an integer")
    return table


def _column(column) -> bool:
    """A sensitivity column: "W:int4", "W:int4+r" (recovered) or "A:int8", of formats a policy may hold."""
    from .policy import ACTIVATION_FORMATS, WEIGHT_FORMATS

    if not isinstance(column, str):
        return False
    side, _, fmt = column.partition(":")
    return (side == "W" and fmt.removesuffix("+r") in WEIGHT_FORMATS) or (side == "A" and fmt in ACTIVATION_FORMATS)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


NO_CONVERGENCE = "made by an earlier qevo, or stopped before its first generation"   # why a run has none


def load_convergence(directory: Path) -> list[dict]:
    """The run's front after each generation (RunStore.convergence), read without writing to the run; none for a
    run made by an earlier qevo, or with no evaluation store."""
    database = Path(directory) / RunStore.DB_FILE
    if not database.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(database), uri=True)) as db:
            return RunStore.convergence_rows(db)
    except sqlite3.Error as err:
        if "no such table" in str(err):   # made before convergence was recorded
            return []
        raise QevoError(f"cannot read the run's evaluations ({err})", path=database) from None


def convergence_steps(rows: list[dict]) -> list[tuple[str, dict]]:
    """Each convergence row with its step as a person reads it: "generation 3", "recovery batch 2", marked
    "(resumed)" where a new process took over."""
    steps = []
    for index, row in enumerate(rows):
        step = f"{'generation' if row['phase'] == 'search' else 'recovery batch'} {row['generation']}"
        if index and row["process_started"] != rows[index - 1]["process_started"]:
            step += " (resumed)"
        steps.append((step, row))
    return steps


def read_run_config(directory: Path) -> dict:
    """run.yaml of a run, read without opening its store; {} when the run has none."""
    path = Path(directory) / RunStore.RUN_FILE
    return RunStore.read_config_file(path) if path.is_file() else {}


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
