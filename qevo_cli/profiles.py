"""Hardware profiles: what a target computes, how fast, at what energy, and on whose word.

A profile is a YAML file (schema in docs/profiles.md). Loading validates it strictly and
compiles it into a `Profile` whose lookups are plain dicts, so the cost model can ask
thousands of times per second without building anything.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import QevoError
from .layers import KINDS, Layer
from .policy import ACTIVATION_FORMATS, FP32, WEIGHT_FORMATS, LayerChoice, Policy

SCHEMA_VERSION = 1
SOURCE_FLAGS = ("measured", "datasheet", "estimate")
FLOAT_FORMATS = ("fp32", "fp16")
# Activation formats a compute entry can name: dynamic-int8 computes as int8 once quantized.
COMPUTE_ACTIVATIONS = ("fp32", "fp16", "int8", "int16")
BUILTIN_DIR = "hardware_profiles"
# libyaml when present: ten times faster, and a search may load profiles often.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# ---------------------------------------------------------------- quantities with units

@dataclass(frozen=True)
class Quantity:
    """A physical quantity written as '<number> <unit>', such as '136 GB/s'."""

    what: str                      # "a bandwidth"
    example: str                   # "136 GB/s"
    units: dict[str, Decimal]      # accepted unit -> factor to the base unit
    display: tuple[str, ...]       # units considered when writing, largest first
    allow_zero: bool = False
    preferred: str | None = None   # unit written whenever the number stays readable in it

    def parse(self, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"got {value!r} without a unit, expected {self.what} such as '{self.example}'")
        if not isinstance(value, str):
            raise ValueError(f"got {_short(value)}, expected {self.what} such as '{self.example}'")
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise ValueError(f"got {_short(value)}, expected {self.what} such as '{self.example}'")
        unit = match[2]
        if unit not in self.units:
            raise ValueError(f"unknown unit {unit!r} in {_short(value)}, expected one of {', '.join(self.display)}")
        try:
            number = float(Decimal(match[1]) * self.units[unit])
        except (ArithmeticError, InvalidOperation, OverflowError):
            number = math.inf
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.allow_zero):
            bound = "zero or more" if self.allow_zero else "above zero"
            raise ValueError(f"got {_short(value)}, expected {self.what} {bound}, such as '{self.example}'")
        return number

    def format(self, value: float) -> str:
        """Readable text that parses back to exactly `value`."""
        def rank(unit: str) -> int:
            scaled = value / float(self.units[unit])
            if unit == self.preferred and 0.01 <= scaled < 1e5:
                return 0
            return 1 if 1 <= scaled < 1000 else 2

        for unit in sorted(self.display, key=rank):
            scaled = value / float(self.units[unit])
            for number in (f"{scaled:.15g}", _plain(scaled)):
                text = f"{number} {unit}"
                try:
                    if self.parse(text) == value:
                        return text
                except ValueError:
                    pass
        base = next(unit for unit, factor in self.units.items() if factor == 1)
        return f"{value!r} {base}"


_NUMBER_WITH_UNIT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S+)\s*$")


def _plain(number: float) -> str:
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


def _scaled(base: str, prefixes: dict[str, int]) -> dict[str, Decimal]:
    return {prefix + base: Decimal(10) ** power for prefix, power in prefixes.items()}


_BIG = {"P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "": 0}
_SMALL = {"": 0, "m": -3, "u": -6, "µ": -6, "n": -9, "p": -12, "f": -15}

THROUGHPUT = Quantity("a throughput in MAC/s (1 MAC = 2 ops)", "45 TMAC/s", _scaled("MAC/s", _BIG),
                      tuple(p + "MAC/s" for p in _BIG))
BANDWIDTH = Quantity("a bandwidth", "136 GB/s",
                     {**_scaled("B/s", _BIG), **{p + "iB/s": Decimal(1024) ** n
                                                 for n, p in enumerate(("K", "M", "G", "T"), 1)}},
                     tuple(p + "B/s" for p in _BIG))
DURATION = Quantity("a duration", "300 us", _scaled("s", _SMALL), ("s", "ms", "us", "ns"), allow_zero=True)
ENERGY_PER_MAC = Quantity("an energy per MAC", "0.2 pJ/MAC", _scaled("J/MAC", _SMALL),
                          ("J/MAC", "mJ/MAC", "uJ/MAC", "nJ/MAC", "pJ/MAC", "fJ/MAC"), preferred="pJ/MAC")
ENERGY_PER_BYTE = Quantity("an energy per byte", "160 pJ/B", _scaled("J/B", _SMALL),
                           ("J/B", "mJ/B", "uJ/B", "nJ/B", "pJ/B", "fJ/B"), preferred="pJ/B")


def _quantity(quantity: Quantity) -> Any:
    return Annotated[float, BeforeValidator(quantity.parse), PlainSerializer(quantity.format, return_type=str)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"got {_short(value)}, expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"got {_short(value)}, expected a finite number")
    return number


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0 < number <= 1:
        raise ValueError(f"got {_short(value)}, expected a share of peak above 0 and at most 1")
    return number


def _sparsity_pattern(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", value):
        raise ValueError(f"got {_short(value)}, expected N:M nonzeros per block, such as '2:4'")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"got {_short(value)}, expected a whole number")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"got {_short(value)}, expected non-empty text")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
        raise ValueError(f"got {_short(value)}, expected a name of lowercase letters, digits, '.', '_' or '-'")
    return value


def _pair_key(value: Any) -> str:
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValueError(f"got {_short(value)}, expected WEIGHT/ACTIVATION such as 'int8/int8'")
    weight, activation = value.split("/")
    if weight not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weight!r} in {value!r}, expected one of {', '.join(WEIGHT_FORMATS)}")
    if activation not in COMPUTE_ACTIVATIONS:
        raise ValueError(f"unknown activation format {activation!r} in {value!r}, "
                         f"expected one of {', '.join(COMPUTE_ACTIVATIONS)}")
    return value


Fraction = Annotated[float, BeforeValidator(_fraction)]
Count = Annotated[int, BeforeValidator(_integer), Field(ge=1)]
Text = Annotated[str, BeforeValidator(_text)]
Name = Annotated[str, BeforeValidator(_name)]
PairKey = Annotated[str, BeforeValidator(_pair_key)]
WeightFormat = Literal[WEIGHT_FORMATS]  # type: ignore[valid-type]
ActivationFormat = Literal[ACTIVATION_FORMATS]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]


# ---------------------------------------------------------------- the schema

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # Checked here rather than by extra="forbid" so the message can list what is allowed.
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise PydanticCustomError("unknown_key", "unknown key, expected one of {known}",
                                              {"key": str(key), "known": ", ".join(cls.model_fields)})
        return data


class Source(_Strict):
    id: Name
    flag: Literal[SOURCE_FLAGS]  # type: ignore[valid-type]
    what: Text                   # what the source says, in a line
    reference: Text              # where to read it: document, table, address
    used_for: list[str] = []     # profile keys whose values it backs, e.g. memory.bandwidth


class Efficiency(_Strict):
    """Share of the peak throughput each op kind reaches."""

    conv: Fraction
    depthwise: Fraction
    gemm: Fraction
    act_matmul: Fraction


class EfficiencyOverride(_Strict):
    conv: Optional[Fraction] = None
    depthwise: Optional[Fraction] = None
    gemm: Optional[Fraction] = None
    act_matmul: Optional[Fraction] = None


class ComputeEntry(_Strict):
    throughput: _quantity(THROUGHPUT)
    energy_per_mac: _quantity(ENERGY_PER_MAC)
    efficiency: Optional[EfficiencyOverride] = None


class Fallback(_Strict):
    """Formats the target stores but cannot compute, and the format it computes them in."""

    weight: dict[WeightFormat, WeightFormat] = {}
    activation: dict[ActivationFormat, ActivationFormat] = {}


class NotOffered(_Strict):
    weight: list[WeightFormat] = []
    activation: list[ActivationFormat] = []


class Limit(_Strict):
    """The listed formats are offered only for layers that match every condition."""

    weight: list[WeightFormat] = []
    activation: list[ActivationFormat] = []
    kinds: list[Kind]
    conv_kernel_1x1: bool = False        # convolutions only with a 1x1 kernel
    min_output_channels: Count = 1
    why: Optional[Text] = None


class Memory(_Strict):
    bandwidth: _quantity(BANDWIDTH)
    energy_per_byte: _quantity(ENERGY_PER_BYTE)


class Overhead(_Strict):
    per_op: _quantity(DURATION)
    per_graph: _quantity(DURATION)


class Sparsity(_Strict):
    pattern: Annotated[str, BeforeValidator(_sparsity_pattern)]
    speedup: Annotated[float, BeforeValidator(_number), Field(ge=1)]
    compute: list[PairKey] = []


class Fitted(_Strict):
    base: Text
    measurements: Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    rows: Count
    median_relative_error: Annotated[float, BeforeValidator(_number), Field(ge=0)]
    parameters: list[str]


class ProfileSpec(_Strict):
    schema_version: int
    name: Name
    chip: Text
    description: Text
    fitted: Optional[Fitted] = None
    sources: Annotated[list[Source], Field(min_length=1)]
    compute: Annotated[dict[PairKey, ComputeEntry], Field(min_length=1)]
    efficiency: Efficiency
    fallback: Fallback = Fallback()
    not_offered: NotOffered = NotOffered()
    limits: list[Limit] = []
    memory: Memory
    overhead: Overhead
    sparsity: list[Sparsity] = []

    @model_validator(mode="before")
    @classmethod
    def _version_first(cls, data: Any) -> Any:
        # A newer file should say so before any of its keys look wrong.
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise PydanticCustomError("schema_version", "got {got}, expected {want} (this qevo reads profile schema {want})",
                                      {"key": "schema_version", "got": _short(data["schema_version"]),
                                       "want": SCHEMA_VERSION})
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------- the compiled profile

@dataclass(frozen=True, slots=True)
class ComputePath:
    """How a (weight, activation) choice actually runs on a target."""

    label: str                    # compute entry used, e.g. "int8/int8"
    rate: dict[str, float]        # op kind -> MAC/s reached (throughput x efficiency)
    joules_per_mac: float
    native: bool                  # False when stored formats are unpacked or dequantized


class Profile:
    """A validated profile, compiled for fast cost lookups. Treat as immutable."""

    __slots__ = ("spec", "path", "name", "chip", "bandwidth", "joules_per_byte", "per_op_s", "per_graph_s",
                 "has_limits", "builtin", "_runs", "_runs_without_weight", "_reasons", "_limits")

    def __init__(self, spec: ProfileSpec, path: str | None = None, builtin: bool = False):
        self.spec = spec
        self.path = path
        self.builtin = builtin
        self.name = spec.name
        self.chip = spec.chip
        self.bandwidth = spec.memory.bandwidth
        self.joules_per_byte = spec.memory.energy_per_byte
        self.per_op_s = spec.overhead.per_op
        self.per_graph_s = spec.overhead.per_graph
        self._runs, self._reasons = _compile_runs(spec)
        self._runs_without_weight = {a: _run_without_weight(spec, self._runs, a) for a in ACTIVATION_FORMATS}
        self._limits = tuple(spec.limits)
        self.has_limits = bool(self._limits)  # lets the cost model skip the per-layer check

    def compute_path(self, layer: Layer, choice: LayerChoice) -> ComputePath | None:
        """How `choice` runs for `layer`, ignoring per-layer limits; None when not offered."""
        if layer.weight is None:
            return self._runs_without_weight[choice.activation]
        return self._runs[(choice.weight, choice.activation)]

    def compute_path_for(self, weight: str, activation: str, has_weight: bool = True) -> ComputePath | None:
        """Same as `compute_path`, from format names alone."""
        if not has_weight:
            return self._runs_without_weight.get(activation)
        return self._runs.get((weight, activation))

    def reason(self, weight: str, activation: str) -> str | None:
        """Why the target cannot run this pair on any layer, or None when it can run it."""
        return self._reasons.get((weight, activation))

    def why_not(self, layer: Layer, choice: LayerChoice) -> str | None:
        """Why the target cannot run `choice` on `layer`, or None when it can."""
        has_weight = layer.weight is not None
        if has_weight:
            if self._runs[(choice.weight, choice.activation)] is None:
                return self._reasons[(choice.weight, choice.activation)]
        elif self._runs_without_weight[choice.activation] is None:
            return f"{self.name} does not offer {choice.activation} activations for a MatMul of two activations"
        for limit in self._limits:
            limited = (has_weight and choice.weight in limit.weight) or choice.activation in limit.activation
            if limited and not _limit_allows(limit, layer):
                formats = ", ".join([f"{w} weights" for w in limit.weight] + [f"{a} activations" for a in limit.activation])
                return f"{self.name} offers {formats} only for {_describe_limit(limit)}"
        return None

    @property
    def origin(self) -> str:
        """How a user names this profile again: the built-in name or the file path."""
        return self.name if self.builtin or not self.path else self.path

    def offers(self, layer: Layer, choice: LayerChoice) -> bool:
        return self.why_not(layer, choice) is None

    def offered_pairs(self) -> list[tuple[str, str]]:
        """(weight, activation) formats the target runs for some layer, in format order."""
        return [pair for pair in _all_pairs() if self._runs[pair] is not None]

    def offered_formats(self) -> tuple[list[str], list[str]]:
        pairs = self.offered_pairs()
        return ([w for w in WEIGHT_FORMATS if any(p[0] == w for p in pairs)],
                [a for a in ACTIVATION_FORMATS if any(p[1] == a for p in pairs)])

    def run_label(self, weight: str, activation: str) -> str | None:
        run = self._runs[(weight, activation)]
        return None if run is None else run.label

    def to_dict(self) -> dict[str, Any]:
        return self.spec.to_dict()

    def dumps(self) -> str:
        return dump_yaml(self.spec.to_dict())

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, chip={self.chip!r})"


def _all_pairs() -> Iterable[tuple[str, str]]:
    return ((w, a) for w in WEIGHT_FORMATS for a in ACTIVATION_FORMATS)


_PAIR_CHOICES = {(w, a): LayerChoice(weight=w, activation=a) for w, a in _all_pairs()}


def supported_choices(profile: Profile, layer: Layer, candidates: Iterable[LayerChoice]) -> list[LayerChoice]:
    """The candidates the target can run for this layer, in their order."""
    return [choice for choice in candidates if profile.why_not(layer, choice) is None]


def uniform_policy(profile: Profile, layers: Iterable[Layer], choice: LayerChoice,
                   fallbacks: Iterable[LayerChoice] = (LayerChoice(weight="int8", activation="int8"), FP32),
                   ) -> tuple[Policy, list[str]]:
    """`choice` on every layer the target offers it for, else the first offered fallback;
    also the names of the layers that did not get `choice`."""
    fallbacks = tuple(fallbacks)
    chosen: dict[str, LayerChoice] = {}
    behind: list[str] = []
    for layer in layers:
        picked = next((c for c in (choice, *fallbacks) if profile.why_not(layer, c) is None), FP32)
        chosen[layer.name] = picked
        if picked != choice:
            behind.append(layer.name)
    return Policy(chosen), behind


def supported_formats(profile: Profile, layer: Layer) -> list[tuple[str, str]]:
    """(weight, activation) formats the target runs for this layer. A layer without
    weights (a MatMul of two activations) lists each activation format once, with weight fp32."""
    if layer.weight is None:
        return [("fp32", a) for a in ACTIVATION_FORMATS if profile.offers(layer, _PAIR_CHOICES[("fp32", a)])]
    return [(w, a) for w, a in _all_pairs() if profile.offers(layer, _PAIR_CHOICES[(w, a)])]


def _compile_runs(spec: ProfileSpec) -> tuple[dict, dict]:
    entries = {key: _compute_path(spec, key) for key in spec.compute}
    runs: dict[tuple[str, str], ComputePath | None] = {}
    reasons: dict[tuple[str, str], str] = {}
    for weight, activation in _all_pairs():
        reason = None
        if weight in spec.not_offered.weight:
            reason = f"{spec.name} does not offer {weight} weights"
        elif activation in spec.not_offered.activation:
            reason = f"{spec.name} does not offer {activation} activations"
        run = None if reason else _resolve(spec, entries, weight, activation)
        if run is None and reason is None:
            reason = f"{spec.name} cannot run {weight} weights with {activation} activations"
        runs[(weight, activation)] = run
        if reason:
            reasons[(weight, activation)] = reason
    return runs, reasons


def _resolve(spec: ProfileSpec, entries: dict[str, ComputePath], weight: str, activation: str) -> ComputePath | None:
    compute_weight = _follow(spec.fallback.weight, weight)
    compute_activation = _follow(spec.fallback.activation, "int8" if activation == "dynamic-int8" else activation)
    run = entries.get(f"{compute_weight}/{compute_activation}")
    if run is None and compute_activation in FLOAT_FORMATS:
        # Weight-only quantization: weights are dequantized to the activations' float format.
        run = entries.get(f"{compute_activation}/{compute_activation}")
    if run is None:
        return None
    native = run.label == f"{weight}/{activation}"
    return run if native else ComputePath(run.label, run.rate, run.joules_per_mac, native=False)


def _run_without_weight(spec: ProfileSpec, runs: dict, activation: str) -> ComputePath | None:
    # A MatMul of two activations quantizes both sides alike: run it as the matching
    # weight format if there is one, else the entry that shares its activation format.
    if activation in spec.not_offered.activation:
        return None
    twin = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "dynamic-int8": "int8"}.get(activation)
    if twin is not None and runs.get((twin, activation)) is not None:
        return runs[(twin, activation)]
    return next((runs[(w, activation)] for w in reversed(WEIGHT_FORMATS) if runs[(w, activation)] is not None), None)


def _follow(fallback: dict[str, str], fmt: str) -> str:
    seen = {fmt}
    while fmt in fallback:
        fmt = fallback[fmt]
        if fmt in seen:
            break
        seen.add(fmt)
    return fmt


def _compute_path(spec: ProfileSpec, key: str) -> ComputePath:
    entry = spec.compute[key]
    rate = {}
    for kind in KINDS:
        override = getattr(entry.efficiency, kind) if entry.efficiency else None
        rate[kind] = entry.throughput * (override if override is not None else getattr(spec.efficiency, kind))
    return ComputePath(key, rate, entry.energy_per_mac, native=True)


def output_channels(layer: Layer) -> int:
    if not layer.weight_shape:
        return 0
    axis = layer.channel_axis if layer.channel_axis is not None else 0
    return layer.weight_shape[axis]


def _limit_allows(limit: Limit, layer: Layer) -> bool:
    if layer.kind not in limit.kinds:
        return False
    if layer.weight is None:
        return True
    if limit.conv_kernel_1x1 and layer.kind in ("conv", "depthwise") and any(k != 1 for k in layer.weight_shape[2:]):
        return False
    return output_channels(layer) >= limit.min_output_channels


def _describe_limit(limit: Limit) -> str:
    text = "/".join(limit.kinds) + " layers"
    if limit.conv_kernel_1x1:
        text += " (convolutions with a 1x1 kernel)"
    if limit.min_output_channels > 1:
        text += f" with at least {limit.min_output_channels} output channels"
    return text


# ---------------------------------------------------------------- consistency beyond types

def _check_consistency(spec: ProfileSpec) -> None:
    """Rules that span several keys; raise QevoError naming the key."""
    for side in ("weight", "activation"):
        fallback: dict[str, str] = getattr(spec.fallback, side)
        not_offered = getattr(spec.not_offered, side)
        for source, target in fallback.items():
            where = f"fallback.{side}.{source}"
            if source == target:
                raise QevoError(f"{source} falls back to itself, expected another format", field=where)
            if source in not_offered:
                raise QevoError(f"{source} is also listed in not_offered.{side}, expected one or the other", field=where)
            if target == "dynamic-int8":
                raise QevoError("dynamic-int8 cannot be a fallback, expected a format the target computes", field=where)
            if _returns_to(fallback, source):
                raise QevoError(f"fallbacks from {source} go round in a circle, expected a chain that ends", field=where)
    ids = [source.id for source in spec.sources]
    for index, source in enumerate(spec.sources):
        if ids.index(source.id) != index:
            raise QevoError(f"source id {source.id!r} is used twice, expected unique ids", field=f"sources.{index}.id")
    known = set(value_paths(spec))
    for index, source in enumerate(spec.sources):
        for position, key in enumerate(source.used_for):
            if not isinstance(key, str) or not any(path == key or path.startswith(key + ".") for path in known):
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise QevoError(f"got {_short(key)}, expected a key of this profile such as 'memory.bandwidth'{hint}",
                                field=f"sources.{index}.used_for.{position}")
    for index, sparsity in enumerate(spec.sparsity):
        for position, key in enumerate(sparsity.compute):
            if key not in spec.compute:
                raise QevoError(f"got {key!r}, expected one of the compute entries: {', '.join(spec.compute)}",
                                field=f"sparsity.{index}.compute.{position}")


def _returns_to(fallback: dict[str, str], start: str) -> bool:
    # Any chain that never ends runs into a circle whose members are reported themselves.
    seen, fmt = {start}, start
    while fmt in fallback:
        fmt = fallback[fmt]
        if fmt == start:
            return True
        if fmt in seen:
            return False
        seen.add(fmt)
    return False


def value_paths(spec: ProfileSpec) -> dict[str, str]:
    """Every value a source can back, as key path -> value shown to a reader."""
    paths: dict[str, str] = {}
    for key, entry in spec.compute.items():
        paths[f"compute.{key}.throughput"] = THROUGHPUT.format(entry.throughput)
        paths[f"compute.{key}.energy_per_mac"] = ENERGY_PER_MAC.format(entry.energy_per_mac)
        for kind, value in (entry.efficiency.model_dump(exclude_none=True) if entry.efficiency else {}).items():
            paths[f"compute.{key}.efficiency.{kind}"] = f"{value:g}"
    for kind in KINDS:
        paths[f"efficiency.{kind}"] = f"{getattr(spec.efficiency, kind):g}"
    for side in ("weight", "activation"):
        for source, target in getattr(spec.fallback, side).items():
            paths[f"fallback.{side}.{source}"] = target
        if getattr(spec.not_offered, side):
            paths[f"not_offered.{side}"] = ", ".join(getattr(spec.not_offered, side))
    for index, limit in enumerate(spec.limits):
        paths[f"limits.{index}"] = _describe_limit(limit)
    paths["memory.bandwidth"] = BANDWIDTH.format(spec.memory.bandwidth)
    paths["memory.energy_per_byte"] = ENERGY_PER_BYTE.format(spec.memory.energy_per_byte)
    paths["overhead.per_op"] = DURATION.format(spec.overhead.per_op)
    paths["overhead.per_graph"] = DURATION.format(spec.overhead.per_graph)
    for index, sparsity in enumerate(spec.sparsity):
        paths[f"sparsity.{index}"] = f"{sparsity.pattern} x{sparsity.speedup:g}"
    return paths


def sources_for(spec: ProfileSpec, path: str) -> list[Source]:
    """Sources backing one value: exact keys win over keys that name a whole section."""
    exact = [s for s in spec.sources if path in s.used_for]
    if exact:
        return exact
    return [s for s in spec.sources if any(path.startswith(key + ".") for key in s.used_for)]


# ---------------------------------------------------------------- loading and writing

def profile_from_dict(data: Any, path: str | None = None) -> Profile:
    """Validate a parsed YAML document and compile it."""
    if data is None:
        raise QevoError("the file is empty, expected a profile mapping (schema_version, name, chip, ...)", path=path)
    if not isinstance(data, dict):
        raise QevoError(f"got {type(data).__name__}, expected a mapping of profile keys "
                        f"(schema_version, name, chip, ...)", path=path)
    try:
        spec = ProfileSpec.model_validate(data)
    except ValidationError as error:
        raise _as_qevo_error(error, path) from None
    except RecursionError:
        raise QevoError("nested too deeply, expected a profile mapping", path=path) from None
    try:
        _check_consistency(spec)
        profile = Profile(spec, path)
        if profile.run_label("fp32", "fp32") is None:
            raise QevoError("fp32 weights with fp32 activations must run on every target, expected a compute "
                            "entry 'fp32/fp32' or fallbacks leading to one", field="compute")
    except QevoError as error:
        message = str(error)[len(error.field) + 2:] if error.field else str(error)
        raise QevoError(message, path=path, field=error.field) from None
    return profile


def parse_profile(text: str, path: str | None = None) -> Profile:
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise QevoError(f"not valid YAML{where} ({problem})", path=path) from None
    except (RecursionError, ValueError, OverflowError) as error:
        raise QevoError(f"not valid YAML ({type(error).__name__})", path=path) from None
    return profile_from_dict(data, path)


def read_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise QevoError("not valid UTF-8 text, expected a YAML profile", path=path) from None
    except OSError as error:
        raise QevoError(f"cannot read profile file ({error.strerror or error})", path=path) from None
    return parse_profile(text, str(path))


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return list(_builtin_names())


@lru_cache(maxsize=1)
def _builtin_names() -> tuple[str, ...]:
    folder = resources.files("qevo_cli").joinpath(BUILTIN_DIR)
    return tuple(sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".yaml")))


@lru_cache(maxsize=None)
def _builtin(name: str) -> Profile:
    resource = resources.files("qevo_cli").joinpath(BUILTIN_DIR, f"{name}.yaml")
    profile = parse_profile(resource.read_text(encoding="utf-8"), f"{BUILTIN_DIR}/{name}.yaml")
    return Profile(profile.spec, profile.path, builtin=True)


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name (`hexagon`) or a user's profile by path (`mine.yaml`)."""
    text = str(name_or_path)
    builtins = list_profiles()
    if text in builtins:
        return _builtin(text)
    candidate = Path(text)
    if candidate.is_file() or "/" in text or os.sep in text or candidate.suffix in (".yaml", ".yml"):
        return read_profile(candidate)
    close = difflib.get_close_matches(text, builtins, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise QevoError(f"unknown profile {text!r}{hint}, expected one of {', '.join(builtins)} or a path to a .yaml file",
                    field="target")


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True, width=110)


def write_atomically(path: str | Path, text: str) -> None:
    """Write `text` so readers see the old file or the new one, never half of one."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise QevoError(f"cannot write here ({error.strerror or error})", path=path) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise QevoError(f"cannot write here ({error.strerror or error})", path=path) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _file_mode(path: Path) -> int:
    # mkstemp makes private files; keep an existing file's mode, else what the umask allows.
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_profile(profile: Profile, path: str | Path) -> None:
    write_atomically(path, profile.dumps())


# ---------------------------------------------------------------- validation messages

def _as_qevo_error(error: ValidationError, path: str | None) -> QevoError:
    """The first validation problem as one line: the key path and what was expected."""
    problem = error.errors(include_url=False)[0]
    location = [_key_text(part) for part in problem["loc"]]
    kind = problem["type"]
    context = problem.get("ctx") or {}
    message = problem["msg"]
    if "[key]" in location:
        location.remove("[key]")
    if kind == "unknown_key":
        location.append(_key_text(context["key"]))
        close = difflib.get_close_matches(context["key"], context["known"].split(", "), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        message = f"unknown key{hint}, expected one of {context['known']}"
    elif kind == "schema_version":
        location = ["schema_version"]
    elif kind == "missing":
        message = "missing, expected a value for this required key"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"got {_short(problem['input'])}, expected a mapping"
    elif kind == "list_type":
        message = f"got {_short(problem['input'])}, expected a list"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif message.startswith("Input should be "):
        message = f"got {_short(problem['input'])}, expected {message[len('Input should be '):]}"
    elif message.startswith("String should match pattern"):
        message = f"got {_short(problem['input'])}, expected text matching {context.get('pattern', '')}"
    elif message.startswith(("List should have", "Dictionary should have")):
        message = f"expected {message.split('should have ', 1)[1].split(' after', 1)[0]}"
    field = ".".join(location) or None
    return QevoError(" ".join(message.split()), path=path, field=field)


def _key_text(part: Any) -> str:
    # Keys are shown bare unless they hold spaces or control characters, which would hide them.
    text = str(part)
    return text if text and text.isprintable() and " " not in text else repr(text)
