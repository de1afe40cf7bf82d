"""Search settings: one validated model, read from flags, a YAML file or a run's run.yaml (validated as
profiles are, with pydantic; validation.as_qevo_error words the first problem)."""
from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import QevoError
from .files import load_yaml, read_text
from .genome import Allowed
from .problem import parse_objectives
from .validation import as_qevo_error

DEFAULT_OBJECTIVES = ("metric", "size", "latency")

ALGORITHMS = ("auto", "nsga2", "nsga3")
MAX_POP = 4096   # a population is measured in full every generation: more is a typo, not a search


def _nearest(key: str, known: list[str]) -> list[str]:
    """The valid key a typo most likely meant: a close spelling, or one that starts the other."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close
    return [name for name in known if key.startswith(name) or name.startswith(key)][:1]


def _string(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"got {value!r}, expected a string")
    return value


def _names(value: Any) -> tuple[str, ...]:
    """A list of names, or one comma-separated string of them."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ValueError(f"got {value!r}, expected a list of names")
    return tuple(v.strip() for v in items)


def _objectives(value: Any) -> tuple[str, ...]:
    return parse_objectives(_names(value))


def _patterns(value: Any) -> tuple[str, ...]:
    """N:M patterns: YAML reads an unquoted 2:4 as a base-60 number (sparsity.from_yaml)."""
    from .sparsity import from_yaml

    value = [value] if isinstance(value, int) else value
    return _names([from_yaml(v) for v in value] if isinstance(value, (list, tuple)) else value)


def _numbers(value: Any) -> tuple[str, ...]:
    """Lists YAML may give as numbers (smoothing: 0.5 or [none, 0.5]; prune: 0.25 or [0.25, 0.5]): names like
    any other list, each checked where it is read."""
    value = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if isinstance(value, (list, tuple)):
        value = [v if isinstance(v, (str, bool)) else str(v) for v in value]
    return _names(value)


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share < 1.0:
        raise QevoError(f"got {value!r}, expected shares of channels from 0 to below 1, such as 0.25,0.5",
                        field="--prune")
    return share


def _integer(low: int, high: int | None = None):
    def check(value: Any) -> Any:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low
                                  or (high is not None and value > high)):
            within = f"between {low} and {high}" if high is not None else f"of at least {low}"
            raise ValueError(f"got {value!r}, expected an integer {within}")
        return value
    return check


def _finite(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise ValueError(f"got {value!r}, expected a finite number")
    return value


def _positive_seconds(value: Any) -> Any:
    if value is not None and _finite(value) <= 0:
        raise ValueError(f"got {value!r}, expected a positive number of seconds")
    return value


def _timeout(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"got {value!r}, expected a positive number of seconds")
    return value


def _flag(optional: bool = False):
    def check(value: Any) -> Any:
        if not isinstance(value, bool) and not (optional and value is None):
            raise ValueError(f"got {value!r}, expected true or false")
        return value
    return check


def _seed(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"got {value!r}, expected a non-negative integer")
    return value


def _dims(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                              and v > 0 for k, v in value.items()):
        raise ValueError(f"got {value!r}, expected a mapping of dim name to positive integer")
    return value


def _target(value: Any) -> str:
    if value is None:
        raise ValueError("no target: pass --target NAME or FILE (see qevo profiles list)")
    return _string(value)


def _algorithm(value: Any) -> str:
    if value not in ALGORITHMS:
        raise ValueError(f"got {value!r}, expected one of {', '.join(ALGORITHMS)}")
    return value


def _latency_cmd(value: Any) -> Any:
    if _string(value) is not None and "{model}" not in value:
        raise ValueError(f"got {value!r}, expected a command holding {{model}}, the exported model's path")
    return value


def _checked(check, kind=Any):
    return Annotated[kind, BeforeValidator(check)]


Text = _checked(_string, Optional[str])
Names = _checked(_names, tuple[str, ...])
Budget = _checked(_finite, Optional[float])


class SearchConfig(BaseModel):
    """Every setting of a search. Validated on construction: a bad value is one QevoError naming the field."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    target: _checked(_target, str) = None
    model: Text = None
    data: Text = None
    calib: Text = None
    metric: Text = None
    dims: _checked(_dims, dict[str, int]) = Field(default_factory=dict)
    objectives: _checked(_objectives, tuple[str, ...]) = DEFAULT_OBJECTIVES   # the default may drop one
    max_drop: Budget = None
    max_size_mb: Budget = None
    max_latency_ms: Budget = None
    max_energy_mj: Budget = None
    weight_formats: Names = ("int2", "int4", "int8", "fp16")
    act_formats: Names = ("int8", "int16", "fp16")
    granularity: Names = ("per-channel",)
    calibration: Names = ("minmax",)
    rounding: Names = ("nearest",)
    bias_correction: Names = ("off",)
    weight_range: Names = ("minmax",)
    smoothing: _checked(_numbers, tuple[str, ...]) = ("none",)
    sparsity: _checked(_patterns, tuple[str, ...]) = ("dense",)   # N:M patterns besides dense, where faster
    prune: _checked(_numbers, tuple[str, ...]) = ("0",)   # shares of a Conv group's output channels to remove
    algorithm: _checked(_algorithm, str) = "auto"
    pop: _checked(_integer(4, MAX_POP), int) = 32
    generations: _checked(_integer(1), int) = 30
    evaluations: _checked(_integer(1), Optional[int]) = None
    time_limit: _checked(_positive_seconds, Optional[float]) = None
    latency_cmd: _checked(_latency_cmd, Optional[str]) = None   # times each policy's exported model at '{model}'
    latency_timeout: _checked(_timeout, float) = 120.0   # seconds one run of latency_cmd may take
    seed: _checked(_seed, int) = 0
    workers: _checked(_integer(1, 1024), int) = 1
    dask: Text = None
    out: Text = None
    threads: _checked(_integer(1, 1024), int) = 1
    racing: _checked(_flag(), bool) = True   # measure a data subset first; the rest only where a policy could reach the front
    # keep front_recovery.SHARE of the time to measure the front with recovered weights; None: with --time-limit
    recover_front: _checked(_flag(optional=True), Optional[bool]) = None

    def __init__(self, **settings: Any) -> None:
        try:
            super().__init__(**settings)
        except ValidationError as error:
            raise as_qevo_error(error, None) from None

    def model_post_init(self, context: Any) -> None:
        self.allowed()  # validates the format names

    @property
    def objectives_given(self) -> bool:
        """Whether the user named the objectives: only a default set may lose one the target cannot separate."""
        return "objectives" in self.model_fields_set

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
                       tuple(_strength(value) for value in self.smoothing),
                       ("dense",) + tuple(p for p in self.sparsity if p != "dense"),
                       tuple(sorted({0.0, *(_share(value) for value in self.prune)})))

    def budgets(self) -> dict[str, float]:
        limits = {"metric": self.max_drop, "size": self.max_size_mb, "latency": self.max_latency_ms,
                  "energy": self.max_energy_mj}
        return {name: float(value) for name, value in limits.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        return {name: list(value) if isinstance(value, tuple) else value for name, value in data.items()}

    @classmethod
    def from_mapping(cls, data: Any, source: str | Path | None = None, overrides: Mapping[str, Any] = ()) -> "SearchConfig":
        """Settings from a mapping (a YAML config), then `overrides` (flags the user gave) on top."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise QevoError("expected a mapping of settings", path=source)
        known = list(cls.model_fields)
        for key in data:
            if key not in known:
                near = _nearest(str(key).replace("-", "_"), known)
                hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {', '.join(known)}"
                raise QevoError(f"unknown key {key!r}{hint}", path=source, field=str(key))
        merged = {str(key): value for key, value in {**dict(data), **dict(overrides)}.items()}
        try:
            return cls(**merged)
        except QevoError as err:
            if source is None or err.path:
                raise
            raise err.at(path=source) from None

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
