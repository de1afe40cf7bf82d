"""Hardware profiles: what a target computes, how fast, at what energy, and on whose word.

A profile is a YAML file whose schema, units and validation live in `profile_schema` (documented in
docs/profiles.md). Loading validates it strictly and compiles it into a `Profile` whose lookups are
plain dicts, so the cost model can ask thousands of times per second without building anything.
`supported_choices`, `supported_formats` and `uniform_policy` say what a target offers each layer.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from .errors import QevoError
from .files import load_yaml
from .layers import KINDS, Layer
from .policy import ACTIVATION_FORMATS, FP32, TENSOR_FORMATS, WEIGHT_FORMATS, LayerChoice, Policy, tensor_order
from .profile_schema import Limit, ProfileSpec, check_consistency, describe_limit, dump_yaml
from .validation import as_qevo_error

FLOAT_FORMATS = ("fp32", "fp16")
BUILTIN_DIR = "hardware_profiles"


# ---------------------------------------------------------------- the compiled profile

@dataclass(frozen=True, slots=True)
class ComputePath:
    """How a (weight, activation) choice actually runs on a target."""

    label: str                    # compute entry used, e.g. "int8/int8"
    rate: dict[str, float]        # op kind -> MAC/s reached (throughput x efficiency)
    joules_per_mac: float
    native: bool                  # False when stored formats are unpacked or dequantized
    by_kind: dict[str, "ComputePath"] | None = None   # op kind -> how it runs instead (ComputeEntry.kinds)

    def for_kind(self, kind: str) -> "ComputePath":
        return self.by_kind.get(kind, self) if self.by_kind else self

    @property
    def float_weights(self) -> bool:
        """Whether the kernel reads float weights: integer weights are dequantized for it."""
        return self.label.split("/")[0] in FLOAT_FORMATS

    @property
    def float_activations(self) -> bool:
        """Whether the kernel computes on float activations (float weights mean float arithmetic): integer
        activations are converted into and out of it."""
        return self.float_weights or self.label.split("/")[1] in FLOAT_FORMATS


class Profile:
    """A validated profile, compiled for fast cost lookups. Treat as immutable."""

    __slots__ = ("spec", "path", "name", "chip", "activation_scope", "latency_source", "bandwidth", "joules_per_byte", "per_op_s", "per_graph_s",
                 "weight_conversion_s", "weight_conversion_by_format", "activation_conversion_s", "models_conversions",
                 "dequantized_efficiency",
                 "has_limits", "builtin", "_runs", "_runs_without_weight", "_reasons", "_limits")

    def __init__(self, spec: ProfileSpec, path: str | None = None, builtin: bool = False):
        self.spec = spec
        self.path = path
        self.builtin = builtin
        self.name = spec.name
        self.chip = spec.chip
        self.activation_scope = spec.activation_scope
        self.latency_source = spec.latency
        self.bandwidth = spec.memory.bandwidth
        self.joules_per_byte = spec.memory.energy_per_byte
        self.per_op_s = spec.overhead.per_op
        self.per_graph_s = spec.overhead.per_graph
        conversion = spec.conversion
        self.weight_conversion_s = conversion.weight if conversion else 0.0
        self.weight_conversion_by_format = dict(conversion.weight_by_format) if conversion else {}
        self.activation_conversion_s = conversion.activation if conversion else 0.0
        self.models_conversions = conversion is not None
        self.dequantized_efficiency = conversion.dequantized_efficiency if conversion else 1.0
        self._runs, self._reasons = _compile_runs(spec)
        self._runs_without_weight = {a: _run_without_weight(spec, self._runs, a) for a in ACTIVATION_FORMATS}
        self._limits = tuple(spec.limits)
        self.has_limits = bool(self._limits)  # lets the cost model skip the per-layer check

    def compute_path(self, layer: Layer, choice: LayerChoice) -> ComputePath | None:
        """How `choice` runs for `layer`, ignoring per-layer limits; None when not offered."""
        run = self._runs_without_weight[choice.activation] if layer.weight is None \
            else self._runs[(choice.weight, choice.activation)]
        return run.for_kind(layer.kind) if run is not None and run.by_kind else run

    def compute_path_for(self, weight: str, activation: str, has_weight: bool = True,
                         kind: str | None = None) -> ComputePath | None:
        """Same as `compute_path`, from format names (and the op kind, where entries are limited to kinds)."""
        run = self._runs.get((weight, activation)) if has_weight else self._runs_without_weight.get(activation)
        return run.for_kind(kind) if run is not None and kind is not None else run

    def sparse_run(self, pattern: str, compute: str):
        """The profile's sparsity entry (speedup, stored) for `pattern` on the compute entry labelled `compute`,
        or None where the target runs it as dense."""
        return next((entry for entry in self.spec.sparsity if entry.pattern == pattern
                     and (not entry.compute or compute in entry.compute)), None)

    def sparse_patterns(self) -> list[str]:
        """The N:M patterns the target runs faster."""
        return sorted({entry.pattern for entry in self.spec.sparsity})

    def converted_format(self, weight: str) -> str:
        """The integer format a weight stored as `weight` is dequantized from at run time (2-bit codes a
        runtime unpacks to 8-bit at load are dequantized from int8)."""
        compute = _follow(self.spec.fallback.weight, weight)
        return compute if compute.startswith("int") else weight

    def weight_conversion(self, weight: str) -> float:
        """Time per element to dequantize a weight stored as `weight` at every run."""
        return self.weight_conversion_by_format.get(self.converted_format(weight), self.weight_conversion_s)

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
                return f"{self.name} offers {formats} only for {describe_limit(limit)}"
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

    def tensor_formats(self, allowed: Iterable[str]) -> list[str]:
        """The formats this target keeps a whole tensor in for the `allowed` activation formats, fewest bits
        first: each static format as the target runs it (one it falls back from is its fallback's tensor, so
        int16 on a CPU without int16 kernels is a float tensor there)."""
        offered = self.offered_formats()[1]
        kept = {_follow(self.spec.fallback.activation, f) for f in allowed if f in TENSOR_FORMATS}
        return sorted((f for f in kept if f in offered and f in TENSOR_FORMATS), key=tensor_order)

    def stored_activation(self, fmt: str) -> str:
        """The format an activation in `fmt` is held in on this target (fp32 is fp16 on a target without fp32)."""
        return _follow(self.spec.fallback.activation, fmt)

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
    """The entry that runs (weight, activation): the entries for all op kinds, through the fallbacks; then, for
    the kinds an entry of exactly these formats is limited to, that entry."""
    run = _resolve_all_kinds(spec, entries, weight, activation)
    activation = "int8" if activation == "dynamic-int8" else activation
    keys = (f"{weight}/{activation}",
            f"{_follow(spec.fallback.weight, weight)}/{_follow(spec.fallback.activation, activation)}")
    key = next((key for key in keys if key in spec.compute and spec.compute[key].kinds is not None), None)
    if key is None:
        return run
    exact, entry = spec.compute[key], entries[key]
    if run is None:   # the other kinds have no way to run it
        raise QevoError(f"{weight}/{activation} runs only on {', '.join(exact.kinds)} layers and the fallbacks give "
                        "the other kinds no entry, expected a fallback path for them too (or no kinds)",
                        field=f"compute.{weight}/{activation}.kinds")
    return replace(run, by_kind={kind: entry for kind in exact.kinds})


def _resolve_all_kinds(spec: ProfileSpec, entries: dict[str, ComputePath], weight: str,
                       activation: str) -> ComputePath | None:
    entries = {key: path for key, path in entries.items() if spec.compute[key].kinds is None}
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
    if layer.cost_kind not in limit.kinds:
        return False
    if layer.weight is None:
        return True
    if limit.conv_kernel_1x1 and layer.cost_kind in ("conv", "depthwise") and any(k != 1 for k in layer.weight_shape[2:]):
        return False
    return output_channels(layer) >= limit.min_output_channels


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
        raise as_qevo_error(error, path) from None
    except RecursionError:
        raise QevoError("nested too deeply, expected a profile mapping", path=path) from None
    try:
        check_consistency(spec)
        profile = Profile(spec, path)
        if profile.run_label("fp32", "fp32") is None:
            raise QevoError("fp32 weights with fp32 activations must run on every target, expected a compute "
                            "entry 'fp32/fp32' or fallbacks leading to one", field="compute")
    except QevoError as error:
        raise error.at(path=path) from None
    return profile


def parse_profile(text: str, path: str | None = None) -> Profile:
    return profile_from_dict(load_yaml(text, path), path)


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
