"""The hardware profile file format: its schema and YAML output (quantities with units: quantities.py).

A profile is a YAML file (schema in docs/profiles.md). `ProfileSpec` validates one strictly: quantities
such as '136 GB/s' are parsed to base units and written back as text that parses to the same value.
Rules that span several keys are checked by `check_consistency`, and validation.as_qevo_error turns a
validation error into one line naming the key. `value_paths` and `sources_for` tie values to sources.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator
from pydantic_core import PydanticCustomError

from .errors import QevoError
from .quantities import BANDWIDTH, DURATION, ENERGY_PER_BYTE, ENERGY_PER_MAC, THROUGHPUT, Quantity
from .quantities import short as _short
from .layers import ENTRY_KINDS, KINDS
from .policy import ACTIVATION_FORMATS, WEIGHT_FORMATS

SCHEMA_VERSION = 1
SOURCE_FLAGS = ("measured", "datasheet", "estimate")
# Activation formats a compute entry can name: dynamic-int8 computes as int8 once quantized.
COMPUTE_ACTIVATIONS = ("fp32", "fp16", "int8", "int16")
# libyaml's dumper when present, else the pure-Python one.
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _quantity(quantity: Quantity) -> Any:
    return Annotated[float, BeforeValidator(quantity.parse), PlainSerializer(quantity.format, return_type=str)]


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


def _expect(test, expected: str):
    """A validator: the value itself if `test(value)`, else 'got VALUE, expected `expected`'."""
    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(f"got {_short(value)}, expected {expected}")
        return value
    return check


_sparsity_pattern = _expect(lambda v: isinstance(v, str) and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", v),
                            "N:M nonzeros per block, such as '2:4'")
_integer = _expect(lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number")
_text = _expect(lambda v: isinstance(v, str) and bool(v.strip()), "non-empty text")
_name = _expect(lambda v: isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", v),
                "a name of lowercase letters, digits, '.', '_' or '-'")


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
EntryKind = Literal[ENTRY_KINDS]  # type: ignore[valid-type]


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
    # the op kinds the target has kernels of this entry for (all when absent); the others run as the
    # format's fallback does (a CPU with a weight-only int4 MatMul kernel and no such Conv, or no integer
    # Gather of an embedding table)
    kinds: Optional[list[EntryKind]] = None


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


class Conversion(_Strict):
    """Time per element the roofline does not see: converting between integer and float where a float kernel
    meets integer data (a runtime that dequantizes weights at every run, Quantize / DequantizeLinear between
    a float op and quantized tensors). Each conversion also counts one op of overhead."""

    weight: _quantity(DURATION)       # per weight element an integer weight is dequantized, at every run
    activation: _quantity(DURATION)   # per activation element converted into or out of a float kernel
    # per weight element, for the stored formats whose dequantization differs from `weight` (4-bit codes
    # are unpacked from nibbles)
    weight_by_format: dict[WeightFormat, _quantity(DURATION)] = {}
    # share of its rate a float kernel reaches on weights dequantized at every run rather than constant
    # (a runtime pre-packs constant weights into its preferred layout, and cannot pack these)
    dequantized_efficiency: Fraction = 1.0


class Sparsity(_Strict):
    """An N:M pattern the target runs faster: `speedup` on the math of the listed compute entries."""

    pattern: Annotated[str, BeforeValidator(_sparsity_pattern)]
    speedup: Annotated[float, BeforeValidator(_number), Field(ge=1)]
    compute: list[PairKey] = []
    # how the runtime keeps such weights: dense (zeros in place) or compressed (the N kept values of every
    # block of M, each with an index of log2(M) bits)
    stored: Literal["dense", "compressed"] = "dense"


class Fitted(_Strict):
    base: Text
    measurements: Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    rows: Count
    median_relative_error: Annotated[float, BeforeValidator(_number), Field(ge=0)]
    parameters: list[str]


ACTIVATION_SCOPES = ("layer-inputs", "qdq-ops", "all-tensors")


class ProfileSpec(_Strict):
    schema_version: int
    name: Name
    chip: Text
    description: Text
    # Which activations the target's runtime quantizes: the inputs of weight layers, with float elsewhere (a CPU
    # execution provider running QDQ), or every float tensor of the graph (an NPU running a fully quantized graph).
    activation_scope: Literal[ACTIVATION_SCOPES] = "layer-inputs"  # type: ignore[valid-type]
    # Where a policy's latency comes from: this roofline ("model"), or timing its exported model on the machine
    # qevo runs on ("host"), the roofline then only predicting it.
    latency: Literal["model", "host"] = "model"
    fitted: Optional[Fitted] = None
    sources: Annotated[list[Source], Field(min_length=1)]
    compute: Annotated[dict[PairKey, ComputeEntry], Field(min_length=1)]
    efficiency: Efficiency
    fallback: Fallback = Fallback()
    not_offered: NotOffered = NotOffered()
    limits: list[Limit] = []
    memory: Memory
    overhead: Overhead
    conversion: Optional[Conversion] = None
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


# ---------------------------------------------------------------- consistency beyond types

def check_consistency(spec: ProfileSpec) -> None:
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


def describe_limit(limit: Limit) -> str:
    text = "/".join(limit.kinds) + " layers"
    if limit.conv_kernel_1x1:
        text += " (convolutions with a 1x1 kernel)"
    if limit.min_output_channels > 1:
        text += f" with at least {limit.min_output_channels} output channels"
    return text


def value_paths(spec: ProfileSpec) -> dict[str, str]:
    """Every value a source can back, as key path -> value shown to a reader."""
    paths: dict[str, str] = {"activation_scope": spec.activation_scope}
    if spec.latency != "model":   # a measured latency says how it is measured
        paths["latency"] = spec.latency
    for key, entry in spec.compute.items():
        paths[f"compute.{key}.throughput"] = THROUGHPUT.format(entry.throughput)
        paths[f"compute.{key}.energy_per_mac"] = ENERGY_PER_MAC.format(entry.energy_per_mac)
        for kind, value in (entry.efficiency.model_dump(exclude_none=True) if entry.efficiency else {}).items():
            paths[f"compute.{key}.efficiency.{kind}"] = f"{value:g}"
        if entry.kinds is not None:
            paths[f"compute.{key}.kinds"] = ", ".join(entry.kinds)
    for kind in KINDS:
        paths[f"efficiency.{kind}"] = f"{getattr(spec.efficiency, kind):g}"
    for side in ("weight", "activation"):
        for source, target in getattr(spec.fallback, side).items():
            paths[f"fallback.{side}.{source}"] = target
        if getattr(spec.not_offered, side):
            paths[f"not_offered.{side}"] = ", ".join(getattr(spec.not_offered, side))
    for index, limit in enumerate(spec.limits):
        paths[f"limits.{index}"] = describe_limit(limit)
    paths["memory.bandwidth"] = BANDWIDTH.format(spec.memory.bandwidth)
    paths["memory.energy_per_byte"] = ENERGY_PER_BYTE.format(spec.memory.energy_per_byte)
    paths["overhead.per_op"] = DURATION.format(spec.overhead.per_op)
    paths["overhead.per_graph"] = DURATION.format(spec.overhead.per_graph)
    if spec.conversion is not None:
        paths["conversion.weight"] = DURATION.format(spec.conversion.weight)
        paths["conversion.activation"] = DURATION.format(spec.conversion.activation)
        paths["conversion.dequantized_efficiency"] = f"{spec.conversion.dequantized_efficiency:g}"
        for fmt, value in spec.conversion.weight_by_format.items():
            paths[f"conversion.weight_by_format.{fmt}"] = DURATION.format(value)
    for index, sparsity in enumerate(spec.sparsity):
        paths[f"sparsity.{index}"] = f"{sparsity.pattern} x{sparsity.speedup:g}"
    return paths


def sources_for(spec: ProfileSpec, path: str) -> list[Source]:
    """Sources backing one value: exact keys win over keys that name a whole section."""
    exact = [s for s in spec.sources if path in s.used_for]
    if exact:
        return exact
    return [s for s in spec.sources if any(path.startswith(key + ".") for key in s.used_for)]


# ---------------------------------------------------------------- writing

def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True, width=110)
