"""Quantization policies: what each layer becomes, as plain versioned data.

A policy maps layer names to a `LayerChoice`. Layers the policy does not name stay fp32.
Policies round-trip through YAML and JSON unchanged.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import QevoError, first_line
from .files import load_yaml, read_text

POLICY_VERSION = 1
PRUNED_POLICY_VERSION = 2   # a policy that removes channels: a reader that knows only version 1 must refuse it

WEIGHT_FORMATS = ("fp32", "fp16", "int2", "int3", "int4", "int5", "int6", "int7", "int8")
ACTIVATION_FORMATS = ("fp32", "fp16", "int8", "int16", "dynamic-int8")
GRANULARITIES = ("per-tensor", "per-channel", "per-group-32", "per-group-64", "per-group-128")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")
WEIGHT_RANGES = ("minmax", "mse", "output-mse")
ROUNDINGS = ("nearest", "gptq")   # how integer weights are rounded onto their grid (recovery.py)
TENSOR_FORMATS = ("fp32", "fp16", "int8", "int16")   # an activation tensor quantized where it is produced
TENSOR_SCOPES = ("all-tensors", "qdq-ops")            # the runtimes' rules such tensors follow


def weight_bits(fmt: str) -> int:
    """Stored bits per weight element for a weight format."""
    if fmt == "fp32":
        return 32
    if fmt == "fp16":
        return 16
    return int(fmt[3:])


def activation_bits(fmt: str) -> int:
    """Bits per activation element as the layer consumes it."""
    return {"fp32": 32, "fp16": 16, "int8": 8, "int16": 16, "dynamic-int8": 8}[fmt]


def tensor_order(fmt: str) -> tuple[int, bool]:
    """Activation formats from the fewest bits to the most, an integer before a float of the same width."""
    return activation_bits(fmt), fmt.startswith("fp")


def group_size(granularity: str) -> int | None:
    """Group length along the input dimension, or None when not grouped."""
    if granularity.startswith("per-group-"):
        return int(granularity.rsplit("-", 1)[1])
    return None


def _check(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise QevoError(f"got {value!r}, expected one of {', '.join(allowed)}", field=name)


@dataclass(frozen=True)
class LayerChoice:
    """How one layer is quantized.

    weight:      stored weight format ("fp32" keeps the layer's weights as they are)
    activation:  format of the layer's input activation; int8/int16 are static (ranges
                 from calibration), "dynamic-int8" takes the range of each batch at run time
    granularity: weight scale granularity
    calibration: how static activation ranges are chosen from calibration data
    symmetric:   symmetric weight grid (zero point 0) or asymmetric
    weight_range: "minmax" uses the full range, "mse" searches the clipping that minimises the weights' error,
                 "output-mse" the one that minimises the layer's output error on calibration data
    rounding:    "nearest" rounds each weight to its nearest level; "gptq" chooses levels that keep the
                 layer's output on calibration data closest (recovery.py), on the same grid
    bias_correction: subtract from the layer's bias the mean shift its rounded weights add to its output
                 on calibration data (recovery.py)
    smoothing:   SmoothQuant strength alpha in (0, 1] moving the input's outlier channels into the weights
                 (smoothing.py); 0 is none. Applies to MatMul and Gemm layers with integer weights and a
                 static integer input.
    sparsity:    "dense", or "N:M": at most N non-zero weights in every block of M along the input dimension
                 (sparsity.py); the weights to zero chosen by magnitude, and compensated with rounding "gptq"
    """

    weight: str = "int8"
    activation: str = "int8"
    granularity: str = "per-channel"
    calibration: str = "minmax"
    symmetric: bool = True
    weight_range: str = "minmax"
    rounding: str = "nearest"
    bias_correction: bool = False
    smoothing: float = 0.0
    sparsity: str = "dense"

    def __post_init__(self) -> None:
        _check(self.weight, WEIGHT_FORMATS, "weight")
        _check(self.activation, ACTIVATION_FORMATS, "activation")
        _check(self.granularity, GRANULARITIES, "granularity")
        _check(self.calibration, CALIBRATIONS, "calibration")
        _check(self.weight_range, WEIGHT_RANGES, "weight_range")
        _check(self.rounding, ROUNDINGS, "rounding")
        for name in ("symmetric", "bias_correction"):
            if not isinstance(getattr(self, name), bool):
                raise QevoError(f"got {getattr(self, name)!r}, expected true or false", field=name)
        if self.smoothing in ("none", None):
            object.__setattr__(self, "smoothing", 0.0)
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float)) \
                or not 0.0 <= self.smoothing <= 1.0:
            raise QevoError(f"got {self.smoothing!r}, expected none or a strength between 0 and 1", field="smoothing")
        object.__setattr__(self, "smoothing", float(self.smoothing))
        if self.sparsity != "dense":
            from .sparsity import checked, from_yaml

            object.__setattr__(self, "sparsity", checked(from_yaml(self.sparsity), "sparsity"))

    @property
    def weight_bits(self) -> int:
        return weight_bits(self.weight)

    @property
    def activation_bits(self) -> int:
        return activation_bits(self.activation)

    @property
    def weight_is_int(self) -> bool:
        return self.weight.startswith("int")

    @property
    def activation_is_static_int(self) -> bool:
        return self.activation in ("int8", "int16")

    @property
    def smoothed(self) -> bool:
        """Whether smoothing takes effect: it needs integer weights and a static integer input."""
        return self.smoothing > 0 and self.weight_is_int and self.activation_is_static_int

    def short(self) -> str:
        """Compact label such as 'W4A8' or 'W16fA32f'."""
        w = f"W{self.weight_bits}" + ("" if self.weight_is_int else "f")
        a = f"A{self.activation_bits}" + ("d" if self.activation == "dynamic-int8" else "" if self.activation.startswith("int") else "f")
        return w + a

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # recovery left at its default is left out, so earlier policies keep their keys
        for name, default in (("rounding", "nearest"), ("bias_correction", False), ("smoothing", 0.0),
                              ("sparsity", "dense")):
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> "LayerChoice":
        if not isinstance(data, Mapping):
            raise QevoError(f"expected a mapping of choice fields, got {type(data).__name__}", field=where or None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QevoError(f"unknown key {unknown[0]!r}, expected one of {', '.join(sorted(known))}",
                            field=f"{where}.{unknown[0]}" if where else unknown[0])
        try:
            return cls(**dict(data))
        except QevoError as err:
            raise err.at(field=where or None) from None


FP32 = LayerChoice(weight="fp32", activation="fp32")


@dataclass(frozen=True)
class Policy:
    """Per-layer choices, keyed by layer name (unnamed layers stay fp32), and the formats of activation
    tensors quantized where they are produced, for targets that quantize more than layer inputs
    (see scope.py; unnamed tensors stay float, min-max calibrated when named). `scope` names the
    runtime's rules those tensors follow (fullgraph.py). `prune` maps a Conv layer to the share of its output
    channels removed (structure.py; layers tied by a residual prune the same share), before any quantization."""

    layers: Mapping[str, LayerChoice] = field(default_factory=dict)
    version: int = POLICY_VERSION
    tensors: Mapping[str, str] = field(default_factory=dict)
    scope: str = "all-tensors"
    prune: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, fmt in self.tensors.items():
            _check(fmt, TENSOR_FORMATS, f"tensors.{name}")
        _check(self.scope, TENSOR_SCOPES, "scope")
        shares = {}
        for name, share in self.prune.items():
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share < 1.0:
                raise QevoError(f"got {share!r}, expected a share of channels from 0 to below 1", field=f"prune.{name}")
            if share:   # 0 removes nothing: left out, so equal structures give equal keys
                shares[name] = float(share)
        object.__setattr__(self, "prune", shares)
        object.__setattr__(self, "version", PRUNED_POLICY_VERSION if shares else POLICY_VERSION)

    @classmethod
    def uniform(cls, layer_names: Iterable[str], choice: LayerChoice) -> "Policy":
        return cls({name: choice for name in layer_names})

    def choice(self, layer_name: str) -> LayerChoice:
        return self.layers.get(layer_name, FP32)

    def with_tensors(self, tensors: Mapping[str, str], scope: str | None = None) -> "Policy":
        return replace(self, tensors={**self.tensors, **tensors}, scope=scope or self.scope)

    def with_layer(self, layer_name: str, choice: LayerChoice) -> "Policy":
        return replace(self, layers={**self.layers, layer_name: choice})

    def without_pruning(self) -> "Policy":
        """The same precision choices on the model as it is (applied to an already pruned model)."""
        return replace(self, prune={})

    @property
    def is_recovered(self) -> bool:
        """Whether any layer's weights are recovered (gptq rounding, bias correction, the output-mse range)."""
        return any(c.rounding != "nearest" or c.bias_correction or c.weight_range == "output-mse"
                   for c in self.layers.values())

    def key(self) -> str:
        """Canonical text: equal policies give equal keys (used for caching)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def summary(self) -> str:
        """Bit summary such as 'W4:3 W8:4 A8:7' (an 'f' marks a float format: 'W16f'). With tensors quantized
        where they are produced, their formats replace the layers' activations: 'W8:3 T8:60 T16:19'. Layers
        with recovered weights are counted last: 'gptq:2 bc:3 omse:2', then sparse ones: 'sp2:4:5', then the
        Convs whose channels are pruned: 'pr:6'."""
        counts: dict[str, int] = {}
        def count(tag: str) -> None:
            counts[tag] = counts.get(tag, 0) + 1

        for choice in self.layers.values():
            count(f"W{choice.weight_bits}" + ("" if choice.weight_is_int else "f"))
            if not self.tensors:
                count(f"A{choice.activation_bits}" + ("" if choice.activation.startswith(("int", "dyn")) else "f"))
        for fmt in self.tensors.values():
            count(f"T{activation_bits(fmt)}" + ("" if fmt.startswith("int") else "f"))
        def order(tag: str) -> tuple:
            return ("WAT".index(tag[0]), int(tag[1:].rstrip("f")), tag)

        recovered = {"gptq": sum(c.rounding == "gptq" for c in self.layers.values()),
                     "bc": sum(c.bias_correction for c in self.layers.values()),
                     "omse": sum(c.weight_range == "output-mse" for c in self.layers.values()),
                     "sq": sum(c.smoothed for c in self.layers.values())}
        recovered.update({f"sp{pattern}": sum(c.sparsity == pattern for c in self.layers.values())
                          for pattern in sorted({c.sparsity for c in self.layers.values()} - {"dense"})})
        recovered["pr"] = len(self.prune)
        return " ".join([f"{tag}:{counts[tag]}" for tag in sorted(counts, key=order)] +
                        [f"{tag}:{n}" for tag, n in recovered.items() if n])

    def to_dict(self) -> dict[str, Any]:
        data = {"version": self.version,
                "layers": {name: choice.to_dict() for name, choice in sorted(self.layers.items())}}
        if self.tensors:   # only when present, so earlier policies keep their keys (and cache entries)
            data["tensors"] = dict(sorted(self.tensors.items()))
            if self.scope != "all-tensors":
                data["scope"] = self.scope
        if self.prune:
            data["prune"] = dict(sorted(self.prune.items()))
        return data

    @classmethod
    def from_dict(cls, data: Any, path: str | None = None) -> "Policy":
        try:
            if not isinstance(data, Mapping):
                raise QevoError("expected a mapping with 'version' and 'layers'")
            version = data.get("version")
            if version not in (POLICY_VERSION, PRUNED_POLICY_VERSION) or isinstance(version, bool):   # True == 1
                raise QevoError(f"got {version!r}, expected {POLICY_VERSION}, or {PRUNED_POLICY_VERSION} for a "
                                "policy that prunes channels", field="version")
            layers = data.get("layers")
            if not isinstance(layers, Mapping):
                raise QevoError("expected a mapping of layer name to choice", field="layers")
            extra = sorted(set(data) - {"version", "layers", "tensors", "scope", "prune", "model", "target",
                                        "objectives", "metric"})
            if extra:
                raise QevoError(f"unknown key {extra[0]!r}, expected version, layers, tensors, scope and prune",
                                field=extra[0])
            tensors = data.get("tensors") or {}
            if not isinstance(tensors, Mapping):
                raise QevoError("expected a mapping of tensor name to format", field="tensors")
            prune = data.get("prune") or {}
            if not isinstance(prune, Mapping):
                raise QevoError("expected a mapping of Conv layer name to the share of channels removed",
                                field="prune")
            if prune and version != PRUNED_POLICY_VERSION:
                raise QevoError(f"got {version!r}, expected {PRUNED_POLICY_VERSION}: the policy prunes channels",
                                field="version")
            return cls({str(name): LayerChoice.from_dict(choice, f"layers.{name}")
                        for name, choice in layers.items()},
                       tensors={str(name): fmt for name, fmt in tensors.items()},
                       scope=data.get("scope", "all-tensors"), prune={str(n): v for n, v in prune.items()})
        except QevoError as err:
            if path is None:
                raise
            raise err.at(path=path) from None

    def dumps(self, fmt: str = "yaml") -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        path = Path(path)
        text = read_text(path, "a policy file")
        if path.suffix != ".json":
            return cls.from_dict(load_yaml(text, path), path=str(path))
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise QevoError(f"not valid JSON ({first_line(err)})", path=path) from None
        except QevoError as err:   # a key given twice
            raise QevoError(f"not valid JSON ({err})", path=path) from None
        return cls.from_dict(data, path=str(path))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique (json keeps the last of a repeated key silently)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise QevoError(f"duplicate key {key!r}")
        data[key] = value
    return data
