"""The search space: which choices each layer may take, and policy <-> integer vector.

Each layer gets the list of choices the user allows and the target offers, sorted
from the fewest bits to the most, so neighbouring integers are similar choices and
SBX / polynomial mutation move through them sensibly. A layer with a single choice
gets no gene.

On a target that quantizes every tensor (scope.py), each activation tensor is a gene of
its own after the layers' genes, over the formats the target keeps a tensor in. A layer
whose inputs are such tensors then chooses its weights only: its activation format is
its input tensor's (the wider one for a MatMul of two activations).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .errors import QevoError
from .layers import Layer
from .policy import (ACTIVATION_FORMATS, CALIBRATIONS, FP32, GRANULARITIES, ROUNDINGS, WEIGHT_FORMATS, WEIGHT_RANGES,
                     LayerChoice, Policy, activation_bits, tensor_order)
from .recovery import corrects_bias, supports as recovers
from .smoothing import smooths
from .sparsity import applies as sparsity_applies, checked as check_sparsity, parse as parse_pattern
from .profiles import Profile, supported_choices
from .scope import TensorGroup, activation_groups, output_tensors
from .structure import KEEP_MULTIPLE, PruneGroup, prune_groups, scaled_layers


@dataclass(frozen=True)
class Allowed:
    """What the user lets the search choose from."""

    weight_formats: tuple[str, ...] = ("int4", "int8")
    activation_formats: tuple[str, ...] = ("int8", "int16")
    granularities: tuple[str, ...] = ("per-channel",)
    calibrations: tuple[str, ...] = ("minmax",)
    roundings: tuple[str, ...] = ("nearest",)
    bias_corrections: tuple[bool, ...] = (False,)
    weight_ranges: tuple[str, ...] = ("minmax",)
    smoothings: tuple[float, ...] = (0.0,)
    sparsities: tuple[str, ...] = ("dense",)   # N:M patterns; offered where the target runs them faster
    prunes: tuple[float, ...] = (0.0,)         # shares of a channel group's output channels removed

    def __post_init__(self) -> None:
        for value in self.sparsities:
            check_sparsity(value, "--sparsity")
        for name, values, known in (("--weight-formats", self.weight_formats, WEIGHT_FORMATS),
                                    ("--act-formats", self.activation_formats, ACTIVATION_FORMATS),
                                    ("--granularity", self.granularities, GRANULARITIES),
                                    ("--calibration", self.calibrations, CALIBRATIONS),
                                    ("--rounding", self.roundings, ROUNDINGS),
                                    ("--weight-range", self.weight_ranges, WEIGHT_RANGES)):
            if not values:
                raise QevoError("needs at least one value", field=name)
            for value in values:
                if value not in known:
                    raise QevoError(f"got {value!r}, expected one of {', '.join(known)}", field=name)


def _order(choice: LayerChoice) -> tuple:
    return (choice.weight_bits, not choice.weight_is_int, choice.activation_bits, choice.activation,
            GRANULARITIES.index(choice.granularity), CALIBRATIONS.index(choice.calibration),
            ROUNDINGS.index(choice.rounding), choice.bias_correction, WEIGHT_RANGES.index(choice.weight_range),
            choice.smoothing, choice.sparsity != "dense", choice.sparsity)


@dataclass(frozen=True)
class TensorGenes:
    """The activation tensors a target quantizes where they are produced, each with its formats."""

    names: tuple[str, ...] = ()
    options: tuple[tuple[str, ...], ...] = ()    # per tensor, fewest bits first
    genes: tuple[int, ...] = ()                  # tensor indices that have a gene
    reads: tuple[tuple[int, ...], ...] = ()      # per layer, the tensors that are its activation inputs
    glue: tuple[int, ...] = ()                   # per tensor, elements the other ops read and write in it
    follows: tuple[int, ...] = ()                # per tensor, the tensor whose format it keeps (itself if none)
    scope: str = "all-tensors"                   # the runtime's rules they follow (policy.TENSOR_SCOPES)
    writes: tuple[tuple[str, str], ...] = ()     # (layer, the tensor its output is quantized as)
    float_accesses: tuple[tuple[int, int], ...] = ()   # per tensor: elements, glue ops that compute in float

    @property
    def traffic(self) -> dict[str, int]:
        return dict(zip(self.names, self.glue))

    @property
    def converted(self) -> dict[str, tuple[int, int]]:
        """Tensor -> (elements, float ops that read or write it): cost.model_cost's `converted`."""
        return {name: access for name, access in zip(self.names, self.float_accesses) if access[1]}

    @property
    def outputs(self) -> dict[str, str]:
        """Layer name -> the tensor its output is quantized as (cost.model_cost's `outputs`)."""
        return dict(self.writes)

    def members(self, root: int) -> list[int]:
        """The tensors that take the format of tensor `root` (itself included)."""
        return [t for t, followed in enumerate(self.follows) if followed == root]


@dataclass(frozen=True)
class PruneGenes:
    """The channel groups the search may prune (structure.py), each a gene over its shares."""

    groups: tuple[PruneGroup, ...] = ()
    options: tuple[tuple[float, ...], ...] = ()   # per group: from the most channels removed to none (0.0)

    def shares(self, picks: Sequence[int]) -> dict[str, float]:
        """A policy's prune map for one option index per group."""
        return {name: self.options[g][k] for g, k in enumerate(picks) if self.options[g][k]
                for name in self.groups[g].producers}


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[Layer, ...]
    options: tuple[tuple[LayerChoice, ...], ...]   # per layer, fewest bits first
    genes: tuple[int, ...]                          # layer indices that have a gene
    notes: tuple[str, ...] = field(default=())
    tensors: TensorGenes = field(default_factory=TensorGenes)
    prune: PruneGenes = field(default_factory=PruneGenes)

    @property
    def n_var(self) -> int:
        return len(self.genes) + len(self.tensors.genes) + len(self.prune.groups)

    @property
    def upper(self) -> np.ndarray:
        return np.array([len(self.options[i]) - 1 for i in self.genes] +
                        [len(self.tensors.options[t]) - 1 for t in self.tensors.genes] +
                        [len(options) - 1 for options in self.prune.options], dtype=int)

    @property
    def first_prune_gene(self) -> int:
        return len(self.genes) + len(self.tensors.genes)

    def cost_layers(self, policy: Policy) -> Sequence[Layer]:
        """The layers as the policy's structure leaves them, for costing."""
        return scaled_layers(self.layers, self.prune.groups, policy.prune) if policy.prune else self.layers

    @property
    def size(self) -> int:
        """Number of distinct policies in the space."""
        return math.prod(len(o) for o in self.options) * \
            math.prod(len(self.tensors.options[t]) for t in self.tensors.genes) * \
            math.prod(len(o) for o in self.prune.options)

    def decode(self, x: Sequence[int] | np.ndarray) -> Policy:
        picks = [0] * len(self.layers)
        for gene, layer_index in enumerate(self.genes):
            picks[layer_index] = int(np.clip(round(float(x[gene])), 0, len(self.options[layer_index]) - 1))
        choices = {layer.name: self.options[i][picks[i]] for i, layer in enumerate(self.layers)}
        first = self.first_prune_gene
        prune = self.prune.shares([int(np.clip(round(float(x[first + g])), 0, len(options) - 1))
                                   for g, options in enumerate(self.prune.options)])
        tensors = self.tensors
        if not tensors.names:
            return Policy(choices, prune=prune)
        formats = [options[0] for options in tensors.options]
        for offset, t in enumerate(tensors.genes, start=len(self.genes)):
            formats[t] = tensors.options[t][int(np.clip(round(float(x[offset])), 0, len(tensors.options[t]) - 1))]
        return replace(self._with_formats(choices, [formats[root] for root in tensors.follows]), prune=prune)

    def encode(self, policy: Policy, recovered: bool = False) -> np.ndarray:
        """The row of `policy`. With `recovered`, a layer's recovery (rounding, bias correction, the output-mse
        range) may be one its options lack: the row is then that of the formats it recovers (front_recovery.py)."""
        x = np.zeros(self.n_var, dtype=int)
        for gene, layer_index in enumerate(self.genes):
            layer = self.layers[layer_index]
            choice = policy.choice(layer.name)
            options = self.options[layer_index]
            if self.tensors.reads and self.tensors.reads[layer_index]:   # the activation is the tensors' gene
                choice = replace(choice, activation=options[0].activation, calibration=options[0].calibration)
            if recovered and choice not in options:
                choice = next((option for option in options if _unrecovered(option) == _unrecovered(choice)), choice)
            try:
                x[gene] = options.index(choice)
            except ValueError:
                raise QevoError(f"layer {layer.name!r}: {choice.short()} is not in the search space") from None
        tensors = self.tensors
        for offset, t in enumerate(tensors.genes, start=len(self.genes)):
            fmt = policy.tensors.get(tensors.names[t], "fp32")
            if fmt not in tensors.options[t]:
                raise QevoError(f"tensor {tensors.names[t]!r}: {fmt} is not in the search space")
            x[offset] = tensors.options[t].index(fmt)
        for g, (group, options) in enumerate(zip(self.prune.groups, self.prune.options)):
            share = policy.prune.get(group.producers[0], 0.0)
            if share not in options:
                raise QevoError(f"layer {group.producers[0]!r}: pruning {share:g} of its channels is not in the "
                                "search space")
            x[self.first_prune_gene + g] = options.index(share)
        return x

    def tensor_row(self, fmt: str) -> list[int]:
        """The tensor genes' part of a row with every tensor at the offered format nearest `fmt`."""
        return [self.tensors.options[t].index(_nearest_format(self.tensors.options[t], fmt))
                for t in self.tensors.genes]

    def with_tensors_at(self, policy: Policy, fmt: str) -> Policy:
        """`policy` with every tensor at the offered format nearest `fmt`, and the layers that read them
        at that format."""
        tensors = self.tensors
        if not tensors.names:
            return policy
        return self._with_formats(dict(policy.layers), [_nearest_format(options, fmt) for options in tensors.options])

    def _with_formats(self, choices: dict[str, LayerChoice], formats: list[str]) -> Policy:
        """The policy of `choices` with the tensors at `formats` (one per tensor), each layer that reads tensors
        at their widest format."""
        for layer, read in zip(self.layers, self.tensors.reads):
            if read:
                activation = max((formats[t] for t in read), key=tensor_order)
                choice = choices.get(layer.name, FP32)   # smoothing needs an integer input to take effect
                choices[layer.name] = replace(choice, activation=activation,
                                              smoothing=choice.smoothing if activation == "int8" else 0.0)
        return Policy(choices, tensors=dict(zip(self.tensors.names, formats)), scope=self.tensors.scope)

    def nearest(self, layer_index: int, weight: str, activation: str) -> int:
        """Index of the option closest to (weight, activation) for one layer."""
        want = LayerChoice(weight=weight, activation=activation)
        options = self.options[layer_index]
        return min(range(len(options)), key=lambda i: (abs(options[i].weight_bits - want.weight_bits),
                                                       options[i].weight != weight,
                                                       abs(options[i].activation_bits - want.activation_bits),
                                                       options[i].activation != activation))


def _unrecovered(choice: LayerChoice) -> LayerChoice:
    return replace(choice, rounding="nearest", bias_correction=False, weight_range="minmax")


def _nearest_format(options: Sequence[str], fmt: str) -> str:
    return min(options, key=lambda o: (abs(activation_bits(o) - activation_bits(fmt)), o != fmt))


def space_for(model, profile: Profile, allowed: Allowed) -> "SearchSpace":
    """The search space of a loaded model on `profile`, with a gene per activation tensor where the target
    quantizes more than the layers' inputs, and one per prunable channel group where pruning is allowed."""
    scope = profile.activation_scope
    groups = activation_groups(model, scope) if scope != "layer-inputs" else ()
    space = build_space(model.layers, profile, allowed, groups)
    if any(allowed.prunes):
        space = _without_unpruneable_patterns(replace(space, prune=prune_genes(prune_groups(model), allowed.prunes)))
    if not space.tensors.names:
        return space
    writes = tuple(output_tensors(model, scope, list(groups)).items())
    return replace(space, tensors=replace(space.tensors, writes=writes))


def _without_unpruneable_patterns(space: SearchSpace) -> SearchSpace:
    """A layer reading a prunable group keeps an N:M option only if every kept channel count (a multiple of
    KEEP_MULTIPLE) still splits its input into blocks of M."""
    shrinking = {name for group in space.prune.groups for name in group.readers}
    options = []
    for layer, choices in zip(space.layers, space.options):
        if layer.name in shrinking and layer.weight_shape:
            per_channel = layer.params // (layer.weight_shape[layer.channel_axis] *
                                           layer.weight_shape[layer.reduce_axis])
            choices = tuple(c for c in choices if c.sparsity == "dense" or
                            (KEEP_MULTIPLE * per_channel) % parse_pattern(c.sparsity)[1] == 0) or choices[:1]
        options.append(choices)
    genes = tuple(i for i, opts in enumerate(options) if len(opts) > 1)
    return replace(space, options=tuple(options), genes=genes)


def prune_genes(groups: Sequence[PruneGroup], shares: Sequence[float]) -> PruneGenes:
    """A gene for each group over the allowed shares that keep distinct channel counts (most removed first)."""
    genes, options = [], []
    for group in groups:
        by_kept: dict[int, float] = {}
        for share in sorted(set(shares) | {0.0}):   # the smallest share that keeps a count names it
            by_kept.setdefault(group.kept(share), share)
        if len(by_kept) > 1:
            genes.append(group)
            options.append(tuple(by_kept[kept] for kept in sorted(by_kept)))
    return PruneGenes(tuple(genes), tuple(options))


def build_space(layers: Sequence[Layer], profile: Profile, allowed: Allowed,
                groups: Sequence[TensorGroup] = ()) -> SearchSpace:
    """The space of `layers` on `profile`; `groups` are the tensors a target that quantizes more than layer
    inputs holds (scope.activation_groups), each a gene of its own."""
    formats = tuple(profile.tensor_formats(allowed.activation_formats)) if groups else ()
    notes = []
    if groups and not formats:
        notes.append(f"{profile.name} keeps tensors in none of the allowed activation formats "
                     f"({', '.join(allowed.activation_formats)}); tensors beyond the layers' inputs stay float")
        groups = ()
    if any(allowed.smoothings) and profile.activation_scope == "all-tensors":
        notes.append(f"{profile.name} quantizes every tensor: smoothing (a float Mul in front of a layer) is not "
                     "offered there")
    patterns = tuple(p for p in allowed.sparsities if p != "dense" and p in profile.sparse_patterns())
    unsped = [p for p in allowed.sparsities if p != "dense" and p not in patterns]
    if unsped:
        notes.append(f"{profile.name} runs no {', '.join(unsped)} weights faster (its profile lists "
                     f"{', '.join(profile.sparse_patterns()) or 'no sparsity'}): not offered, it would only cost "
                     "accuracy")
    index = {group.tensor: t for t, group in enumerate(groups)}
    options, reads = [], []
    for layer in layers:
        read = () if layer.weight_only or layer.subgraph or not all(name in index for name in layer.activation_inputs) \
            else tuple(index[name] for name in layer.activation_inputs)
        reads.append(read)
        weights = allowed.weight_formats if layer.weight is not None else ("fp32",)
        activations = ("fp32",) if layer.weight_only else formats[:1] if read else allowed.activation_formats
        candidates = []
        roundings = allowed.roundings if recovers(layer) else ("nearest",)
        corrections = allowed.bias_corrections if corrects_bias(layer) else (False,)
        # the output-mse range needs the layer's input statistics, which only recoverable layers have
        ranges = allowed.weight_ranges if recovers(layer) else \
            tuple(dict.fromkeys(r if r != "output-mse" else "minmax" for r in allowed.weight_ranges))
        # smoothing runs a float Mul in front of the layer: not on a target that quantizes every tensor
        smoothings = allowed.smoothings if smooths(layer) and profile.activation_scope != "all-tensors" else (0.0,)
        sparsities = ("dense",) + tuple(p for p in patterns if sparsity_applies(layer, p))
        for weight, activation, granularity, calibration, rounding, correction, weight_range, smoothing, sparse in \
                itertools.product(weights, activations, allowed.granularities, allowed.calibrations, roundings,
                                  corrections, ranges, smoothings, sparsities):
            static = activation in ("int8", "int16") and not read   # tensors are min-max calibrated
            grouped = weight.startswith("int")
            smoothing = smoothing if grouped and activation == "int8" else 0.0
            candidates.append(LayerChoice(weight=weight, activation=activation,
                                          granularity=granularity if grouped else "per-channel",
                                          calibration=calibration if static and not smoothing else "minmax",
                                          # on sparse float weights gptq compensates the pruning
                                          rounding=rounding if grouped or sparse != "dense" else "nearest",
                                          bias_correction=correction and grouped,
                                          weight_range=weight_range if grouped else "minmax",
                                          smoothing=smoothing, sparsity=sparse))
        offered = sorted(set(supported_choices(profile, layer, candidates)), key=_order)
        if read:   # the weights must run with every format its input tensor may take
            offered = [c for c in offered
                       if all(profile.offers(layer, replace(c, activation=f)) for f in formats)]
        if not offered:
            offered = [FP32]
            notes.append(f"{layer.name}: {profile.name} offers none of the allowed formats for this layer; kept fp32")
        options.append(tuple(offered))
    genes = tuple(i for i, opts in enumerate(options) if len(opts) > 1)
    tensors = TensorGenes()
    if groups:
        follows: list[int] = []
        for t, group in enumerate(groups):   # a tensor named after the one it shares with: chains resolve in order
            follows.append(follows[index[group.shares]] if group.shares in index else t)
        roots = tuple(t for t in range(len(groups)) if follows[t] == t)
        tensors = TensorGenes(tuple(group.tensor for group in groups), tuple(formats for _ in groups),
                              roots if len(formats) > 1 else (), tuple(reads),
                              tuple(group.elements * group.glue_accesses for group in groups), tuple(follows),
                              profile.activation_scope,
                              float_accesses=tuple((group.elements, group.float_accesses) for group in groups))
    return SearchSpace(tuple(layers), tuple(options), genes, tuple(notes), tensors)
