"""The search space: which choices each layer may take, and policy <-> integer vector.

Each layer gets the list of choices the user allows and the target offers, sorted
from the fewest bits to the most, so neighbouring integers are similar choices and
SBX / polynomial mutation move through them sensibly. A layer with a single choice
gets no gene.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import QevoError
from .layers import Layer
from .policy import (ACTIVATION_FORMATS, CALIBRATIONS, FP32, GRANULARITIES, WEIGHT_FORMATS, LayerChoice,
                     Policy)
from .profiles import Profile, supported_choices


@dataclass(frozen=True)
class Allowed:
    """What the user lets the search choose from."""

    weight_formats: tuple[str, ...] = ("int4", "int8")
    activation_formats: tuple[str, ...] = ("int8", "int16")
    granularities: tuple[str, ...] = ("per-channel",)
    calibrations: tuple[str, ...] = ("minmax",)

    def __post_init__(self) -> None:
        for name, values, known in (("--weight-formats", self.weight_formats, WEIGHT_FORMATS),
                                    ("--act-formats", self.activation_formats, ACTIVATION_FORMATS),
                                    ("--granularity", self.granularities, GRANULARITIES),
                                    ("--calibration", self.calibrations, CALIBRATIONS)):
            if not values:
                raise QevoError("needs at least one value", field=name)
            for value in values:
                if value not in known:
                    raise QevoError(f"got {value!r}, expected one of {', '.join(known)}", field=name)


def _order(choice: LayerChoice) -> tuple:
    return (choice.weight_bits, not choice.weight_is_int, choice.activation_bits, choice.activation,
            GRANULARITIES.index(choice.granularity), CALIBRATIONS.index(choice.calibration))


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[Layer, ...]
    options: tuple[tuple[LayerChoice, ...], ...]   # per layer, fewest bits first
    genes: tuple[int, ...]                          # layer indices that have a gene
    notes: tuple[str, ...] = field(default=())

    @property
    def n_var(self) -> int:
        return len(self.genes)

    @property
    def upper(self) -> np.ndarray:
        return np.array([len(self.options[i]) - 1 for i in self.genes], dtype=int)

    @property
    def size(self) -> int:
        """Number of distinct policies in the space."""
        return math.prod(len(o) for o in self.options)

    def decode(self, x: Sequence[int] | np.ndarray) -> Policy:
        picks = [0] * len(self.layers)
        for gene, layer_index in enumerate(self.genes):
            picks[layer_index] = int(np.clip(round(float(x[gene])), 0, len(self.options[layer_index]) - 1))
        return Policy({layer.name: self.options[i][picks[i]] for i, layer in enumerate(self.layers)})

    def encode(self, policy: Policy) -> np.ndarray:
        x = np.zeros(self.n_var, dtype=int)
        for gene, layer_index in enumerate(self.genes):
            layer = self.layers[layer_index]
            choice = policy.choice(layer.name)
            try:
                x[gene] = self.options[layer_index].index(choice)
            except ValueError:
                raise QevoError(f"layer {layer.name!r}: {choice.short()} is not in the search space") from None
        return x

    def nearest(self, layer_index: int, weight: str, activation: str) -> int:
        """Index of the option closest to (weight, activation) for one layer."""
        want = LayerChoice(weight=weight, activation=activation)
        options = self.options[layer_index]
        return min(range(len(options)), key=lambda i: (abs(options[i].weight_bits - want.weight_bits),
                                                       options[i].weight != weight,
                                                       abs(options[i].activation_bits - want.activation_bits),
                                                       options[i].activation != activation))


def build_space(layers: Sequence[Layer], profile: Profile, allowed: Allowed) -> SearchSpace:
    options, notes = [], []
    for layer in layers:
        weights = allowed.weight_formats if layer.weight is not None else ("fp32",)
        activations = ("fp32",) if layer.weight_only else allowed.activation_formats
        candidates = []
        for weight, activation, granularity, calibration in itertools.product(
                weights, activations, allowed.granularities, allowed.calibrations):
            static = activation in ("int8", "int16")
            grouped = weight.startswith("int")
            candidates.append(LayerChoice(weight=weight, activation=activation,
                                          granularity=granularity if grouped else "per-channel",
                                          calibration=calibration if static else "minmax"))
        offered = sorted(set(supported_choices(profile, layer, candidates)), key=_order)
        if not offered:
            offered = [FP32]
            notes.append(f"{layer.name}: {profile.name} offers none of the allowed formats for this layer; kept fp32")
        options.append(tuple(offered))
    genes = tuple(i for i, opts in enumerate(options) if len(opts) > 1)
    return SearchSpace(tuple(layers), tuple(options), genes, tuple(notes))
