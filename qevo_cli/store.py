"""Where a search keeps what it learns.

`RunStore`: a run directory with `run.yaml` (resolved configuration), `front.json`,
`checkpoint.pkl` (algorithm state after each generation) and `evaluations.sqlite`
(every evaluated policy). `EvaluationCache`: a SQLite cache shared by all runs under
QEVO_CACHE_DIR, keyed by model, data and metric content and the policy.
SQLite in WAL mode keeps both intact through a SIGKILL and lets several searches
share the cache at once.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from .defaults import cache_dir
from .errors import QevoError
from .files import atomic_write_bytes, atomic_write_text, load_yaml, read_text

EVALUATION_VERSION = 2   # bump when a change to the simulator changes measured metrics


def _rows_in(db: sqlite3.Connection, columns: str, table: str, keys: list[str]) -> Iterable[tuple]:
    """SELECT columns FROM table WHERE key IN keys, in chunks SQLite's parameter limit allows."""
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        yield from db.execute(f"SELECT {columns} FROM {table} WHERE key IN ({','.join('?' * len(chunk))})", chunk)


def read_only_uri(database: Path) -> str:
    """An SQLite URI opening `database` read-only, whatever characters (#, ?, %) its path holds."""
    return Path(database).resolve().as_uri() + "?mode=ro"


def connect_database(path: Path) -> sqlite3.Connection:
    # Switching a new database to WAL takes an exclusive lock that SQLite's busy timeout does not wait for:
    # two searches opening one fresh cache at once would see "database is locked". Retry for a while.
    deadline = time.monotonic() + 60.0
    while True:
        connection = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        except sqlite3.OperationalError as err:
            connection.close()
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class EvaluationCache:
    """Measured metrics of policies, shared by every run on this machine."""

    def __init__(self, context: dict[str, str], path: Path | None = None):
        self.path = path or cache_dir() / "evaluations.sqlite"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect_database(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS metric (key TEXT PRIMARY KEY, value REAL, seconds REAL)")
        except (OSError, sqlite3.Error) as err:
            raise QevoError(f"cannot open the evaluation cache ({err})", path=self.path) from None
        self._prefix = json.dumps({**context, "version": EVALUATION_VERSION}, sort_keys=True)

    @classmethod
    def for_evaluator(cls, evaluator) -> "EvaluationCache":
        """The cache entries of one model, data set, calibration set and metric."""
        import onnxruntime

        return cls({"model": evaluator.model.digest, "data": evaluator.data.digest,
                    "calib": evaluator.calibrator.calib.digest, "metric": evaluator.metric.identity,
                    "onnxruntime": onnxruntime.__version__})

    def key(self, policy_key: str) -> str:
        return hashlib.sha256((self._prefix + policy_key).encode()).hexdigest()

    def get_many(self, policy_keys: list[str]) -> dict[str, tuple[float, float]]:
        keys = {self.key(k): k for k in policy_keys}
        return {keys[key]: (value, seconds) for key, value, seconds in
                list(_rows_in(self._db, "key, value, seconds", "metric", list(keys)))}

    def put_many(self, items: Iterable[tuple[str, float, float]]) -> None:
        rows = [(self.key(k), value, seconds) for k, value, seconds in items]
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO metric VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


class RunStore:
    """One search's run directory."""

    RUN_FILE = "run.yaml"
    FRONT_FILE = "front.json"
    CHECKPOINT_FILE = "checkpoint.pkl"
    DB_FILE = "evaluations.sqlite"
    SENSITIVITY_FILE = "sensitivity.json"

    def __init__(self, directory: str | Path, create: bool = True):
        self.dir = Path(directory)
        if create:
            try:
                if self.dir.exists() and not self.dir.is_dir():
                    raise QevoError("exists and is not a directory", path=self.dir)
                if self._holds_a_run():
                    raise QevoError("already holds a run; continue it with --resume or choose another --out",
                                    path=self.dir)
            except OSError as err:   # a name too long for the file system, say
                raise QevoError(f"cannot use this run directory ({err.strerror})", path=self.dir) from None
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                probe = self.dir / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as err:
                raise QevoError(f"cannot write the run directory ({err.strerror})", path=self.dir) from None
        elif not (self.dir / self.RUN_FILE).is_file():
            raise QevoError(f"not a qevo run directory (no {self.RUN_FILE})", path=self.dir)
        elif not (self.dir / self.DB_FILE).is_file() and self._measured_something():
            raise QevoError("is missing: the run's evaluations are gone; nothing is changed",
                            path=self.dir / self.DB_FILE)
        try:
            self._db = connect_database(self.dir / self.DB_FILE)
            self._db.execute("""CREATE TABLE IF NOT EXISTS evaluation (
                id INTEGER PRIMARY KEY, key TEXT UNIQUE, policy TEXT, metric REAL, objectives TEXT,
                violation REAL, seconds REAL, generation INTEGER, cached INTEGER, created REAL)""")
            # racing's subset metrics, kept with the run so a resume decides as the uninterrupted run did
            self._db.execute("CREATE TABLE IF NOT EXISTS subset (key TEXT PRIMARY KEY, value REAL, generation INTEGER)")
            # sensitivity probes, kept with the run too: a resume repeats none, whatever became of the cache
            self._db.execute("CREATE TABLE IF NOT EXISTS probe (key TEXT PRIMARY KEY, value REAL, seconds REAL)")
            # how the search converged: one row per generation (and per batch of the front's recovery)
            self._db.execute("""CREATE TABLE IF NOT EXISTS convergence (
                phase TEXT, generation INTEGER, evaluations INTEGER, front_size INTEGER, hypervolume REAL,
                elapsed_s REAL, wall_time REAL, process_started REAL, PRIMARY KEY (phase, generation))""")
            self._db.execute("SELECT COUNT(*) FROM evaluation").fetchone()
        except sqlite3.Error as err:
            raise QevoError(f"cannot open the evaluation store ({err})", path=self.dir / self.DB_FILE) from None

    def _measured_something(self) -> bool:
        """Whether a run got as far as a front or a checkpoint (a search killed before that has nothing to lose,
        and its folder may be started again or resumed)."""
        return (self.dir / self.FRONT_FILE).exists() or (self.dir / self.CHECKPOINT_FILE).exists()

    def _holds_a_run(self) -> bool:
        if self._measured_something():
            return True
        database = self.dir / self.DB_FILE
        if not database.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(read_only_uri(database), uri=True)) as db:
                return db.execute("SELECT COUNT(*) FROM evaluation").fetchone()[0] > 0
        except sqlite3.Error as err:   # a store without the table was never written to
            return "no such table" not in str(err)

    # -- configuration, front, checkpoint -----------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.dir / self.RUN_FILE, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        return self.read_config_file(self.dir / self.RUN_FILE)

    @staticmethod
    def read_config_file(path: Path) -> dict[str, Any]:
        """A run.yaml: a mapping whose settings, resolved inputs and versions are mappings too."""
        data = load_yaml(read_text(path, "a qevo run.yaml"), path)
        if not isinstance(data, dict):
            raise QevoError("expected a mapping", path=path)
        for key in ("settings", "resolved", "versions"):
            if not isinstance(data.get(key, {}), dict):
                raise QevoError(f"got {type(data[key]).__name__}, expected a mapping", path=path, field=key)
        return data

    def write_front(self, front: dict[str, Any]) -> None:
        atomic_write_text(self.dir / self.FRONT_FILE, json.dumps(front, indent=1) + "\n")

    @staticmethod
    def read_front_file(path: Path) -> dict[str, Any]:
        text = read_text(path, "a qevo front.json")
        try:
            front = json.loads(text)
        except ValueError as err:
            raise QevoError(f"cannot read the front ({err})", path=path) from None
        if not isinstance(front, dict):
            raise QevoError("expected a JSON object", path=path)
        return front

    def write_sensitivity(self, table: dict[str, Any]) -> None:
        atomic_write_text(self.dir / self.SENSITIVITY_FILE, json.dumps(table, indent=1) + "\n")

    def save_checkpoint(self, state: Any) -> None:
        atomic_write_bytes(self.dir / self.CHECKPOINT_FILE, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    def load_checkpoint(self) -> Any | None:
        path = self.dir / self.CHECKPOINT_FILE
        if not path.exists():
            return None
        try:
            return pickle.loads(path.read_bytes())
        except Exception as err:  # a checkpoint from another version of qevo or pymoo
            raise QevoError(f"cannot read the checkpoint ({type(err).__name__}: {err})", path=path) from None

    # -- evaluations ---------------------------------------------------------------------------
    def record(self, rows: list[dict[str, Any]], generation: int, subsets: dict[str, float] | None = None) -> None:
        """Store evaluated policies and, in the same transaction, racing's subset metrics (`subsets`, key ->
        value): a process killed between the two would leave a policy measured in full without the subset
        metric that calibrates racing, and a resumed run would then race later policies differently."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO evaluation (key, policy, metric, objectives, violation, seconds, generation,"
                " cached, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r["key"], json.dumps(r["policy"]), r["metric"], json.dumps(r["objectives"]), r["violation"],
                  r["seconds"], generation, int(r["cached"]), now) for r in rows])
            if subsets:
                self._db.executemany("INSERT OR IGNORE INTO subset (key, value, generation) VALUES (?, ?, ?)",
                                     [(key, value, generation) for key, value in subsets.items()])

    def get_many(self, keys: list[str]) -> dict[str, tuple[float, float]]:
        """Stored sensitivity probes (the same interface as the evaluation cache)."""
        return {key: (value, seconds) for key, value, seconds in
                _rows_in(self._db, "key, value, seconds", "probe", keys)}

    def put_many(self, items) -> None:
        rows = list(items)
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO probe VALUES (?, ?, ?)", rows)

    def record_subset(self, values: dict[str, float], generation: int) -> None:
        if values:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR IGNORE INTO subset (key, value, generation) VALUES (?, ?, ?)",
                                     [(key, value, generation) for key, value in values.items()])

    def subset_values(self, keys: list[str]) -> dict[str, float]:
        return dict(_rows_in(self._db, "key, value", "subset", keys))

    def measured_before(self, generation: int) -> list[dict[str, Any]]:
        """Full measurements of earlier generations, each with its subset metric when it was raced."""
        return [{"key": key, "objectives": json.loads(objectives), "violation": violation, "metric": metric,
                 "subset": subset}
                for key, objectives, violation, metric, subset in self._db.execute(
                    "SELECT e.key, e.objectives, e.violation, e.metric, s.value FROM evaluation e "
                    "LEFT JOIN subset s ON s.key = e.key WHERE e.generation < ?", (generation,))]

    def known(self, keys: list[str]) -> dict[str, tuple[float, float]]:
        """Metric and seconds of policies this run already measured."""
        return {key: (metric, seconds) for key, metric, seconds in
                _rows_in(self._db, "key, metric, seconds", "evaluation", keys)}

    def evaluations(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Stored evaluations in the order they were made; only those after `after_id` if given."""
        rows = self._db.execute("SELECT id, key, policy, metric, objectives, violation, seconds, generation, cached "
                                "FROM evaluation WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [{"id": r[0], "key": r[1], "policy": json.loads(r[2]), "metric": r[3], "objectives": json.loads(r[4]),
                 "violation": r[5], "seconds": r[6], "generation": r[7], "cached": bool(r[8])} for r in rows]

    def record_convergence(self, phase: str, generation: int, front_size: int, hypervolume: float,
                           elapsed_s: float, process_started: float) -> None:
        """The front after a generation, or after a batch of the front's recovery (a resumed run that repeats one
        replaces its row)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO convergence VALUES (?, ?, (SELECT COUNT(*) FROM evaluation), "
                             "?, ?, ?, ?, ?)", (phase, generation, front_size, hypervolume, elapsed_s, time.time(),
                                                process_started))

    def clear_convergence(self, phase: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM convergence WHERE phase = ?", (phase,))

    def convergence(self) -> list[dict[str, Any]]:
        return self.convergence_rows(self._db)

    @staticmethod
    def convergence_rows(db: sqlite3.Connection) -> list[dict[str, Any]]:
        """The recorded generations in the order they ran: the search's, then the recovery's batches."""
        rows = db.execute("SELECT phase, generation, evaluations, front_size, hypervolume, elapsed_s, wall_time, "
                          "process_started FROM convergence ORDER BY phase = 'recovery', generation").fetchall()
        names = ("phase", "generation", "evaluations", "front_size", "hypervolume", "elapsed_s", "wall_time",
                 "process_started")
        return [dict(zip(names, row)) for row in rows]

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM evaluation").fetchone()[0]

    def close(self) -> None:
        self._db.close()
