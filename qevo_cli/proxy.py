"""Cheap per-layer sensitivity: a few probe passes on a small subset instead of a full pass per layer and format.

The full table (`sensitivity.py`) runs the whole evaluation set once per layer and format. On a real model that
is hours. The proxy measures much less and predicts the rest:

1. Probes. For each layer, one variant with only that layer's weights at a probe format (int4 where allowed) and
   one with only its input activations at int8, each run on a small, evenly spread subset of the evaluation data.
   What is recorded is the *output distortion*: the normalised squared error of the model's float outputs against
   the fp32 outputs on that subset. Unlike a metric such as accuracy, it does not vanish on a small subset.
2. Extrapolation. Within a layer, distortion scales with the layer's own quantization noise: for weights the
   relative squared error of the quantized weight (computed from the weight alone, for every format and
   granularity), for activations the step size squared of the activation grid. So
   cost(layer, format) = distortion at the probe x noise(format) / noise(probe).
3. Refinement. With time left, the weight formats below the probe (int2, int3) are probed directly, since at
   so few levels distortion no longer grows in step with the noise; measured values replace predicted ones.

On a target that quantizes every tensor, each activation tensor is probed alone at int8 instead of the layers'
inputs (a layer reading such a tensor takes its activation format from it), and predicted for its other
formats by the same step-size rule.

Recovered weights (gptq rounding, the output-mse range, bias correction) are predicted from the same layer's
plain weights, scaled by how much less the recovery moves the layer's own output on the calibration inputs
(recovery.local_error, from the Gram matrices the recovery itself uses); no probe of their own.

Every probe is stored as soon as it is measured (in the shared evaluation cache and, during a search, in the
run's own store), so an interrupted search or a second run never repeats one. A deadline stops probing; layers left unprobed borrow the median gain of the
probed ones, and the table says it is incomplete.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
from onnx import numpy_helper

from .evaluate import Evaluator
from .layers import Layer
from .policy import LayerChoice, Policy, activation_bits, weight_bits
from .quantize import quantize_weight
from .recovery import corrects_bias, local_error, recovered_choice, supports, weight_matrix
from .smoothing import activation_error_ratio
from . import sparsity

PROXY_VERSION = 1
WEIGHT_PROBE = "int4"       # in the range where distortion grows smoothly with noise
ACTIVATION_PROBE = "int8"
MIN_SUBSET, MAX_SUBSET = 8, 32
TENSOR_REFINE_ABOVE = 1e-3  # int8 distortion beyond which a tensor's other formats are probed, not predicted
WORST = 1e6                 # distortion of a variant whose outputs are not finite
FP16_RELATIVE_NOISE = (2.0 ** -11) ** 2 / 3.0   # round-to-nearest fp16: uniform error of half an ulp


def output_distortion(outputs: Sequence, reference: Sequence) -> float:
    """Mean over float outputs of sum((y_q - y)^2) / sum(y^2)."""
    ratios = []
    for got, want in zip(outputs, reference):
        want = np.asarray(want)
        if want.dtype.kind != "f" or want.size == 0:
            continue
        got = np.asarray(got, np.float64)
        if not np.all(np.isfinite(got)):
            return WORST
        want = want.astype(np.float64)
        ratios.append(float(np.sum((got - want) ** 2)) / max(float(np.sum(want ** 2)), 1e-30))
    return min(WORST, float(np.mean(ratios))) if ratios else 0.0


def weight_noise(layer: Layer, weight: np.ndarray, choice: LayerChoice) -> float:
    """Relative squared error of the layer's weight under the choice's weight format (and N:M sparsity, the
    weights pruned by magnitude)."""
    if layer.weight is None or (choice.weight == "fp32" and choice.sparsity == "dense"):
        return 0.0
    kept = weight if choice.sparsity == "dense" else sparsity.pruned(weight, layer, choice.sparsity)
    quantized = quantize_weight(kept, choice, layer.channel_axis)
    return float(np.sum((quantized - weight) ** 2)) / max(float(np.sum(weight.astype(np.float64) ** 2)), 1e-30)


def activation_noise(activation: str) -> float:
    """Noise power of an activation format relative to int8 at the same range (the step size squared)."""
    if activation == "fp32":
        return 0.0
    if activation == "fp16":
        # int8 noise relative to a signal spanning the range is about (1/255)^2 / 12 / (1/16)
        return FP16_RELATIVE_NOISE / ((1 / 255) ** 2 / 12 * 16)
    return ((2 ** 8 - 1) / (2 ** activation_bits(activation) - 1)) ** 2


@dataclass
class ProxyTable:
    """Predicted output distortion of each layer alone at each format, and how it was obtained."""

    subset: int
    weight_gain: dict[str, float]          # layer -> distortion per unit of relative weight noise
    activation_gain: dict[str, float]      # layer -> distortion per unit of activation noise (int8 = 1)
    measured: dict[str, dict[str, float]]  # layer -> probe column ("W:int4", "A:int8", ...) -> distortion
    probes: int = 0                        # probes measured by this call (the rest came from the cache)
    seconds: float = 0.0
    complete: bool = True
    tensor_gain: dict[str, float] = field(default_factory=dict)   # tensor -> distortion per unit of noise
    covered: frozenset = frozenset()       # layers whose activations are tensors' (costed there, not here)
    editor: Any = None                     # the evaluator's graph editor: recovered weights and input statistics
    # time.perf_counter() after which recovered options are no longer computed (gptq takes up to seconds a layer)
    # but take the median ratio of those of their kind computed before
    deadline: float | None = None
    covered_readers: dict = field(default_factory=dict)   # tensor -> covered layers reading it
    structures: Any = None                 # the evaluator's pruned structures: the refit's error of a group
    _noise: dict = field(default_factory=dict, repr=False)
    _weights: dict = field(default_factory=dict, repr=False)
    _ratios: dict = field(default_factory=dict, repr=False)
    _estimates: dict = field(default_factory=dict, repr=False)
    _estimated_keys: set = field(default_factory=set, repr=False)

    @property
    def estimated_ratios(self) -> int:
        """Options of layers whose ratio the deadline left uncomputed."""
        return len(self._estimated_keys)

    def cost(self, layer: Layer, choice: LayerChoice) -> float:
        """Predicted distortion of this layer alone at `choice` (weights and input activations)."""
        measured = self.measured.get(layer.name, {})
        weight_part = 0.0
        if layer.weight is not None and (choice.weight != "fp32" or choice.sparsity != "dense"):
            column = f"W:{choice.weight}"
            if column in measured and _probe_choice(column) == _weight_only(choice):
                weight_part = measured[column]
            else:
                weight_part = self.weight_gain.get(layer.name, 0.0) * self._weight_noise(layer, _weight_only(choice))
            if weight_part and recovered(choice) and self.editor is not None and supports(layer):
                weight_part *= self._recovery_ratio(layer, choice)
        activation_part = 0.0
        if not layer.weight_only and choice.activation != "fp32" and layer.name not in self.covered:
            column = f"A:{choice.activation}"
            activation_part = measured[column] if column in measured else \
                self.activation_gain.get(layer.name, 0.0) * activation_noise(choice.activation)
            if choice.smoothed and self.editor is not None:
                activation_part *= self._smoothing_ratio(layer, choice.smoothing)
        elif choice.smoothed and self.editor is not None and layer.name in self.covered:
            # the layer reads its own smoothed copy of a tensor costed as a whole: its share of that tensor's
            # cost changes by the smoothing ratio
            share = self.tensor_cost(layer.input, choice.activation) / max(self.covered_readers.get(layer.input, 1), 1)
            activation_part = share * (self._smoothing_ratio(layer, choice.smoothing) - 1.0)
        return max(weight_part + activation_part, 0.0)

    def prune_cost(self, group, share: float) -> float:
        """Predicted distortion of one channel group alone pruned by `share`: its probe's, scaled by the refit's
        local error at `share` over that at the probe's share."""
        if not share:
            return 0.0
        measured = self.measured.get(f"P:{group.producers[0]}", {})
        if f"P:{share}" in measured:
            return measured[f"P:{share}"]
        local = self.structures.local_error(group, share)
        if not measured:   # left unprobed by the deadline: the median distortion per unit of local error
            return local * self._median_prune_gain()
        column, value = next(iter(measured.items()))
        probe = self.structures.local_error(group, float(column[2:]))
        return value * local / probe if probe > 0 else value

    def _median_prune_gain(self) -> float:
        if "prune" not in self._estimates:
            groups = {group.producers[0]: group for group in self.structures.groups}
            gains = [value / self.structures.local_error(groups[row[2:]], float(column[2:]))
                     for row, columns in self.measured.items() if row.startswith("P:") and row[2:] in groups
                     for column, value in columns.items()
                     if self.structures.local_error(groups[row[2:]], float(column[2:])) > 0]
            self._estimates["prune"] = float(np.median(gains)) if gains else 0.0
        return self._estimates["prune"]

    def _smoothing_ratio(self, layer: Layer, alpha: float) -> float:
        """The layer's input quantization noise at its output, smoothed over plain (smoothing.py)."""
        key = (layer.name, "smoothing", alpha)
        if key not in self._ratios and self._late():
            return self._estimated(key)
        if key not in self._ratios:
            lows, highs = self.editor.calibrator.input_range(layer)
            scales = self.editor.smoothing_scales(layer, alpha)
            self._ratios[key] = activation_error_ratio(lows[0], highs[0], weight_matrix(
                self._weights[layer.name], layer.channel_axis), scales)
        return self._ratios[key]

    def tensor_cost(self, tensor: str, fmt: str) -> float:
        """Predicted distortion of one activation tensor alone at `fmt`."""
        measured = self.measured.get(f"T:{tensor}", {})
        if f"A:{fmt}" in measured:
            return measured[f"A:{fmt}"]
        return self.tensor_gain.get(tensor, 0.0) * activation_noise(fmt)

    def _weight_noise(self, layer: Layer, choice: LayerChoice) -> float:
        key = (layer.name, choice.weight, choice.granularity, choice.symmetric, choice.weight_range, choice.sparsity)
        if key not in self._noise:
            self._noise[key] = weight_noise(layer, self._weights[layer.name], choice)
        return self._noise[key]

    def _recovery_ratio(self, layer: Layer, choice: LayerChoice) -> float:
        """The layer's own output error with its weights recovered, over that with them plain."""
        key = (layer.name, choice.weight, choice.granularity, choice.symmetric, choice.weight_range, choice.rounding,
               choice.bias_correction, choice.smoothed and choice.smoothing, choice.sparsity)
        if key not in self._ratios and self._late():
            return self._estimated(key)
        if key not in self._ratios:
            def error(c: LayerChoice, means: bool = False) -> float:
                # smoothed weights err against the smoothed input: the same output error
                grams, mean = self.editor.input_statistics(layer, c)
                rounded = numpy_helper.to_array(self.editor.simulated_weight(layer, c)).astype(np.float32)
                # against the dense weight: a pruned weight's error counts too
                return local_error(self.editor.layer_weight(layer, replace(c, sparsity="dense")), rounded,
                                   layer.channel_axis, grams, mean if means else None)
            plain = error(_weight_only(choice))
            better = replace(_weight_only(choice), rounding=choice.rounding, weight_range=choice.weight_range,
                             activation=choice.activation if choice.smoothed else "fp32",
                             smoothing=choice.smoothing if choice.smoothed else 0.0)
            self._ratios[key] = error(better, choice.bias_correction and corrects_bias(layer)) / plain \
                if plain > 0 else 1.0
        return self._ratios[key]

    def _late(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _estimated(self, key: tuple) -> float:
        """The median ratio of the layers whose option of this kind (the key less its layer) was computed (1, no
        gain, for none)."""
        kind = key[1:]
        if kind not in self._estimates:
            same = [ratio for known, ratio in self._ratios.items() if known[1:] == kind]
            self._estimates[kind] = float(np.median(same)) if same else 1.0
        self._estimated_keys.add(key)
        return self._estimates[kind]

    def column(self, layers: Sequence[Layer], label: str) -> dict[str, float]:
        """cost of every layer at one table column ("W:int2", "W:int2+r", "A:int16", ...), measured or
        predicted."""
        choice = _probe_choice(label)
        return {layer.name: self.cost(layer, recovered_choice(layer, choice) if label.endswith("+r") else choice)
                for layer in layers}


def _weight_only(choice: LayerChoice) -> LayerChoice:
    """The choice's weights alone, rounded to nearest (a recovered range stands for the full one)."""
    return LayerChoice(weight=choice.weight, activation="fp32", granularity=choice.granularity,
                       symmetric=choice.symmetric,
                       weight_range="minmax" if choice.weight_range == "output-mse" else choice.weight_range,
                       sparsity=choice.sparsity)


def recovered(choice: LayerChoice) -> bool:
    """Whether the choice's integer weights are recovered beyond rounding to nearest (recovery.py), or its
    pruned weights compensated (gptq on N:M sparse weights of any format: sparsity.py)."""
    if choice.sparsity != "dense" and choice.rounding == "gptq":
        return True
    return choice.weight_is_int and (choice.rounding != "nearest" or choice.weight_range == "output-mse"
                                     or choice.bias_correction or choice.smoothed)


def _probe_choice(column: str) -> LayerChoice:
    """The choice of a table column: "W:int4" (weights alone), "W:int4+r" (recovered), "A:int8"."""
    kind, fmt = column.split(":")
    if kind == "A":
        return LayerChoice(weight="fp32", activation=fmt)
    if fmt.endswith("+r"):
        return LayerChoice(weight=fmt[:-2], activation="fp32", rounding="gptq", weight_range="output-mse",
                           bias_correction=True)
    return LayerChoice(weight=fmt, activation="fp32")


class ProbeStore:
    """Where probes are kept: any objects with get_many / put_many (the shared evaluation cache, a run's
    store), read in order and all written to as each probe is measured."""

    def __init__(self, *backends):
        self.backends = [b for b in backends if b is not None]
        self.memory: dict[str, tuple[float, float]] = {}

    def get(self, key: str):
        if key in self.memory:
            return self.memory[key]
        for backend in self.backends:
            found = backend.get_many([key])
            if key in found:
                self.memory[key] = found[key]
                return found[key]
        return None

    def put(self, key: str, value: float, seconds: float) -> None:
        self.memory[key] = (value, seconds)
        for backend in self.backends:
            backend.put_many([(key, value, seconds)])


def probed_formats(weight_formats: Sequence[str], activation_formats: Sequence[str]) -> tuple[tuple, tuple]:
    """The formats a search's proxy probes: integer ones, on a side with more than one allowed format (a side
    with one format is the same in every policy: nothing to rank there)."""
    weights = tuple(f for f in weight_formats if f.startswith("int")) if len(weight_formats) > 1 else ()
    activations = tuple(f for f in activation_formats if f in ("int8", "int16", "dynamic-int8")) \
        if len(activation_formats) > 1 else ()
    return weights, activations


def default_subset(size: int) -> int:
    """Samples per probe: a tenth of the evaluation set, between MIN_SUBSET and MAX_SUBSET. It depends on the
    data alone (not on timing), so a resumed or repeated search finds its probes in the cache."""
    return int(min(size, max(MIN_SUBSET, min(MAX_SUBSET, round(size / 10)))))


def measure_proxy(evaluator: Evaluator, weight_formats: Sequence[str] = ("int2", "int4", "int8"),
                  activation_formats: Sequence[str] = ("int8",), store: ProbeStore | None = None,
                  deadline: float | None = None, subset: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  tensors: Sequence[str] = (), covered: Collection[str] = (),
                  tensor_formats: Sequence[str] = (), members: Mapping[str, Sequence[str]] = {},
                  scope: str = "all-tensors", prune: Sequence[tuple[Any, float]] = ()) -> ProxyTable:
    """Probe every layer (weights at WEIGHT_PROBE, activations at ACTIVATION_PROBE), every one of `tensors`
    (a target's activation tensors, at ACTIVATION_PROBE), then the weight formats below the probe, while time
    allows. The activations of `covered` layers are their input tensors' and get no probe of their own;
    `tensor_formats` are the formats the tensors may take; `members` names the tensors that take a probed
    tensor's format with it (outputs of ops that only move values); `scope` names the runtime's rules the
    tensors follow. Each of `prune`'s (structure.PruneGroup, share) is probed as that group alone pruned by that
    share, before the weight formats below the probe.
    `deadline` is a time.perf_counter() value."""
    started = time.perf_counter()
    store = store or ProbeStore()
    model = evaluator.model
    layers = list(model.layers)
    int_weights = [f for f in weight_formats if f.startswith("int")]
    weight_probe = WEIGHT_PROBE if WEIGHT_PROBE in int_weights else (min(int_weights, key=weight_bits) if int_weights
                                                                     else None)
    act_ints = [f for f in activation_formats if f in ("int8", "int16", "dynamic-int8")]
    act_probe = ACTIVATION_PROBE if act_ints else None
    if subset is None:
        subset = default_subset(evaluator.data.size)
    data = evaluator.data.subset(subset)
    reference = evaluator.outputs(Policy({}), data)

    covered = frozenset(covered)
    first: list[tuple[Layer | str, str]] = []
    for layer in layers:
        if weight_probe and layer.weight is not None:
            first.append((layer, f"W:{weight_probe}"))
        if act_probe and not layer.weight_only and layer.name not in covered:
            first.append((layer, f"A:{act_probe}"))
    first.extend((tensor, f"A:{ACTIVATION_PROBE}") for tensor in tensors)
    first.extend((group, f"P:{share}") for group, share in prune)   # str(float) reads back exactly
    # then the formats below the probe, where distortion stops growing smoothly with noise
    last = [(layer, f"W:{fmt}")
            for fmt in sorted((f for f in int_weights if weight_probe and weight_bits(f) < weight_bits(weight_probe)),
                              key=weight_bits)
            for layer in layers if layer.weight is not None]

    measured: dict[str, dict[str, float]] = {layer.name: {} for layer in layers}
    measured.update({f"T:{tensor}": {} for tensor in tensors})
    measured.update({f"P:{group.producers[0]}": {} for group, _ in prune})
    counts = {"probes": 0, "done": 0, "total": len(first) + len(last)}
    prefix = f"proxy/v{PROXY_VERSION}/rows{data.size}/"

    def run(plan) -> bool:
        """Measure (or find) each probe of `plan`; False when the deadline stopped it."""
        for what, column in plan:
            if isinstance(what, Layer):
                row, probe = what.name, Policy({what.name: _probe_choice(column)})
            elif column.startswith("P:"):   # a channel group pruned
                row, probe = f"P:{what.producers[0]}", Policy({}, prune={name: float(column[2:])
                                                                      for name in what.producers})
            else:   # an activation tensor
                row, probe = f"T:{what}", Policy({}, tensors={t: column[2:] for t in members.get(what, (what,))},
                                                 scope=scope)
            # a tensor probed under other rules measures something else (earlier keys are all-tensors')
            key = prefix + ("" if scope == "all-tensors" or not isinstance(what, str) else f"{scope}/") + \
                f"{row}/{column}"
            found = store.get(key)
            if found is None:
                if deadline is not None and time.perf_counter() >= deadline:
                    return False
                start = time.perf_counter()
                value = output_distortion(evaluator.outputs(probe, data), reference)
                store.put(key, value, time.perf_counter() - start)
                counts["probes"] += 1
            else:
                value = found[0]
            measured[row][column] = value
            counts["done"] += 1
            if progress:
                progress(counts["done"], counts["total"])
        return True

    complete = run(first)
    if complete:
        # A tensor that int8 already distorts far (a norm's variance rounding to zero, a huge range) is measured at
        # its other formats too: there the step-size rule is no longer safe to extrapolate with.
        again = [(tensor, f"A:{fmt}") for tensor in tensors for fmt in tensor_formats if fmt != ACTIVATION_PROBE
                 and measured[f"T:{tensor}"].get(f"A:{ACTIVATION_PROBE}", 0.0) > TENSOR_REFINE_ABOVE]
        counts["total"] += len(again)
        complete = run(again) and run(last)
    probes = counts["probes"]

    weights = {layer.name: _weight_array(evaluator, layer) for layer in layers if layer.weight is not None}
    readers = Counter(layer.input for layer in evaluator.model.layers if layer.name in covered)
    table = ProxyTable(data.size, {}, {}, measured, probes, 0.0, complete, covered=covered, editor=evaluator.editor,
                       covered_readers=dict(readers), structures=evaluator.structures,
                       _weights=weights)
    for layer in layers:
        row = measured[layer.name]
        if weight_probe and f"W:{weight_probe}" in row:
            noise = table._weight_noise(layer, _probe_choice(f"W:{weight_probe}"))
            table.weight_gain[layer.name] = row[f"W:{weight_probe}"] / max(noise, 1e-30)
        if act_probe and f"A:{act_probe}" in row:
            table.activation_gain[layer.name] = row[f"A:{act_probe}"] / activation_noise(act_probe)
    for tensor in tensors:
        probe = measured[f"T:{tensor}"].get(f"A:{ACTIVATION_PROBE}")
        if probe is not None:
            table.tensor_gain[tensor] = probe / activation_noise(ACTIVATION_PROBE)
    _fill_missing(table, layers, tensors)
    table.seconds = time.perf_counter() - started
    return table


def _fill_missing(table: ProxyTable, layers: Sequence[Layer], tensors: Sequence[str]) -> None:
    """Layers and tensors the deadline left unprobed take the median gain of the probed ones (0, no ranking,
    when none was probed on that side)."""
    for gains, names in ((table.weight_gain, [l.name for l in layers if l.weight is not None]),
                         (table.activation_gain, [l.name for l in layers
                                                  if not l.weight_only and l.name not in table.covered]),
                         (table.tensor_gain, list(tensors))):
        median = float(np.median(list(gains.values()))) if gains else 0.0
        for name in names:
            gains.setdefault(name, median)


def _weight_array(evaluator: Evaluator, layer: Layer) -> np.ndarray:
    return evaluator.editor.weight_values(layer)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if value is not None and math.isfinite(value) else float("nan")
