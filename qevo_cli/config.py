"""Search settings: one dataclass, read from flags, a YAML file or a run's run.yaml."""
from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import QevoError
from .files import load_yaml, read_text
from .genome import Allowed
from .problem import parse_objectives

DEFAULT_OBJECTIVES = ("metric", "size", "latency")

ALGORITHMS = ("auto", "nsga2", "nsga3")
MAX_POP = 4096   # a population is measured in full every generation: more is a typo, not a search


def _nearest(key: str, known: list[str]) -> list[str]:
    """The valid key a typo most likely meant: a close spelling, or one that starts the other."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close
    return [name for name in known if key.startswith(name) or name.startswith(key)][:1]


@dataclass
class SearchConfig:
    target: str | None = None
    model: str | None = None
    data: str | None = None
    calib: str | None = None
    metric: str | None = None
    dims: dict[str, int] = field(default_factory=dict)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES   # the default may drop an objective that cannot separate
    max_drop: float | None = None
    max_size_mb: float | None = None
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    weight_formats: tuple[str, ...] = ("int2", "int4", "int8", "fp16")
    act_formats: tuple[str, ...] = ("int8", "int16", "fp16")
    granularity: tuple[str, ...] = ("per-channel",)
    calibration: tuple[str, ...] = ("minmax",)
    rounding: tuple[str, ...] = ("nearest",)
    bias_correction: tuple[str, ...] = ("off",)
    weight_range: tuple[str, ...] = ("minmax",)
    smoothing: tuple[str, ...] = ("none",)
    algorithm: str = "auto"
    pop: int = 32
    generations: int = 30
    evaluations: int | None = None
    time_limit: float | None = None
    latency_cmd: str | None = None     # times each policy's exported model: '{model}' is its path
    latency_timeout: float = 120.0     # seconds one run of latency_cmd may take
    seed: int = 0
    workers: int = 1
    dask: str | None = None
    out: str | None = None
    threads: int = 1
    racing: bool = True       # measure a data subset first; the rest only where a policy could reach the front
    # keep front_recovery.SHARE of the time to measure the front with recovered weights; None: with --time-limit
    recover_front: bool | None = None

    def __post_init__(self) -> None:
        # whether the user named the objectives: only a default set may lose one the target cannot separate
        self.objectives_given = self.objectives is not DEFAULT_OBJECTIVES
        if self.target is None:
            raise QevoError("no target: pass --target NAME or FILE (see qevo profiles list)", field="target")
        for name in ("target", "model", "data", "calib", "metric", "dask", "out", "latency_cmd"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise QevoError(f"got {value!r}, expected a string", field=name)
        for name in ("objectives", "weight_formats", "act_formats", "granularity", "calibration", "rounding",
                     "bias_correction", "weight_range", "smoothing"):
            value = getattr(self, name)
            if name == "smoothing":   # YAML numbers: 0.5 or [none, 0.5]
                value = [value] if isinstance(value, (int, float)) else value
                if isinstance(value, (list, tuple)):
                    value = [v if isinstance(v, (str, bool)) else str(v) for v in value]
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise QevoError(f"got {value!r}, expected a list of names", field=name)
            setattr(self, name, tuple(v.strip() for v in items))
        self.objectives = parse_objectives(self.objectives)
        self.allowed()  # validates the format names
        if self.algorithm not in ALGORITHMS:
            raise QevoError(f"got {self.algorithm!r}, expected one of {', '.join(ALGORITHMS)}", field="algorithm")
        for name, low, high in (("pop", 4, MAX_POP), ("generations", 1, None), ("workers", 1, 1024),
                                ("threads", 1, 1024), ("evaluations", 1, None)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low
                                      or (high is not None and value > high)):
                within = f"between {low} and {high}" if high is not None else f"of at least {low}"
                raise QevoError(f"got {value!r}, expected an integer {within}", field=name)
        for name in ("max_drop", "max_size_mb", "max_latency_ms", "max_energy_mj", "time_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise QevoError(f"got {value!r}, expected a finite number", field=name)
        if self.latency_cmd is not None and "{model}" not in self.latency_cmd:
            raise QevoError(f"got {self.latency_cmd!r}, expected a command holding {{model}}, the exported model's "
                            "path", field="latency_cmd")
        if isinstance(self.latency_timeout, bool) or not isinstance(self.latency_timeout, (int, float)) \
                or not 0 < self.latency_timeout < float("inf"):
            raise QevoError(f"got {self.latency_timeout!r}, expected a positive number of seconds",
                            field="latency_timeout")
        if self.time_limit is not None and self.time_limit <= 0:
            raise QevoError(f"got {self.time_limit!r}, expected a positive number of seconds", field="time_limit")
        for name in ("racing", "recover_front"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "recover_front" and value is None):
                raise QevoError(f"got {value!r}, expected true or false", field=name)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise QevoError(f"got {self.seed!r}, expected a non-negative integer", field="seed")
        if not isinstance(self.dims, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
                for k, v in self.dims.items()):
            raise QevoError(f"got {self.dims!r}, expected a mapping of dim name to positive integer", field="dims")

    @property
    def recovers_front(self) -> bool:
        """Whether the search recovers its front: as set, else when it has a time limit to share (at equal
        time that never lost on the zoo; without one it would only add evaluations)."""
        return self.recover_front if self.recover_front is not None else self.time_limit is not None

    def allowed(self) -> Allowed:
        for value in self.bias_correction:
            if value not in ("off", "on"):
                raise QevoError(f"got {value!r}, expected off, on or both (off,on)", field="--bias-correction")
        return Allowed(self.weight_formats, self.act_formats, self.granularity, self.calibration, self.rounding,
                       tuple(value == "on" for value in self.bias_correction), self.weight_range,
                       tuple(_strength(value) for value in self.smoothing))

    def budgets(self) -> dict[str, float]:
        limits = {"metric": self.max_drop, "size": self.max_size_mb, "latency": self.max_latency_ms,
                  "energy": self.max_energy_mj}
        return {name: float(value) for name, value in limits.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("objectives", "weight_formats", "act_formats", "granularity", "calibration", "rounding",
                     "bias_correction", "weight_range", "smoothing"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_mapping(cls, data: Any, source: str | Path | None = None, overrides: Mapping[str, Any] = ()) -> "SearchConfig":
        """Settings from a mapping (a YAML config), then `overrides` (flags the user gave) on top."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise QevoError("expected a mapping of settings", path=source)
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                near = _nearest(str(key).replace("-", "_"), known)
                hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {', '.join(known)}"
                raise QevoError(f"unknown key {key!r}{hint}", path=source, field=str(key))
        merged = {**dict(data), **dict(overrides)}
        try:
            return cls(**merged)
        except QevoError as err:
            if source is None or err.path:
                raise
            raise err.at(path=source) from None
        except TypeError as err:
            raise QevoError(f"bad settings ({err})", path=source) from None

    @classmethod
    def from_run(cls, store, overrides: Mapping[str, Any] = ()) -> "SearchConfig":
        """The settings a run folder's run.yaml records (`store`: its RunStore), `overrides` on top."""
        saved = store.read_config()
        source = store.dir / store.RUN_FILE
        settings = saved.get("settings") if isinstance(saved, dict) else None
        if not isinstance(settings, dict):
            raise QevoError("run.yaml has no settings", path=source)
        return cls.from_mapping({**settings, **dict(overrides)}, source)

    @classmethod
    def from_file(cls, path: str | Path, overrides: Mapping[str, Any] = ()) -> "SearchConfig":
        path = Path(path)
        data = load_yaml(read_text(path, "a YAML config"), path)
        return cls.from_mapping(data, path, overrides)


def _strength(value: str) -> float:
    """A smoothing strength from its name: none, or a number in (0, 1]."""
    if value == "none":
        return 0.0
    try:
        strength = float(value)
    except ValueError:
        strength = float("nan")
    if not 0.0 < strength <= 1.0:
        raise QevoError(f"got {value!r}, expected none or a strength in (0, 1] such as 0.5", field="--smoothing")
    return strength
