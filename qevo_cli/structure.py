"""A policy's structure: the model without the output channels its `prune` map removes, the layers as that
model holds them, and the editor that quantizes it.

The channel groups come from `pruning.channel_groups`; a group prunes when its producers (Convs tied by
residuals prune together) name one share in the policy. The kept channels are the most important ones by
`pruning.importance`, their count rounded to a multiple of KEEP_MULTIPLE (SIMD lanes and tensor-core tiles
come in fours and eights, and a 3x3 reader of such a count still splits into 2:4 blocks). Each reader of a
pruned group is refitted by least squares on its input's Gram matrix from the calibration data.

The pruned model is a model of its own, quantized by an editor of its own, on the original model's
calibration: activation ranges by tensor name, and the input statistics second-order rounding uses (Gram
matrices, means, column ranges) on the kept columns. After the refit each tensor is the original's (on the kept
channels) up to the refit's error, and calibrating every structure again would cost a pass, or two on a target
that quantizes every tensor, per policy.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from .calibration import ActivationCalibrator
from .errors import QevoError
from .layers import Layer
from .model import LoadedModel, derived_model
from .pruning import ChannelGroup, channel_groups, importance, prune, refit_error
from .recovery import supports

KEEP_MULTIPLE = 4
MIN_CHANNELS = 8          # narrower groups offer no pruning
STRUCTURES_KEPT = 4       # pruned models (and their editors) kept in memory per evaluator


@dataclass(frozen=True)
class PruneGroup:
    """A prunable channel group, by the layers it touches (plain data: it travels to workers)."""

    producers: tuple[str, ...]      # Conv layers writing the channels
    channels: int
    readers: tuple[str, ...]        # layers summing over the channels (their input channels shrink)
    depthwise: tuple[str, ...]      # depthwise Conv layers carrying them (input and output shrink)
    index: int                      # position among pruning.channel_groups(model)

    def kept(self, share: float) -> int:
        return kept_channels(self.channels, share)


def kept_channels(channels: int, share: float) -> int:
    """Output channels left when `share` of `channels` are removed, a multiple of KEEP_MULTIPLE."""
    if not share:
        return channels
    wanted = channels * (1.0 - share)
    return int(min(channels, max(KEEP_MULTIPLE, round(wanted / KEEP_MULTIPLE) * KEEP_MULTIPLE)))


def prune_groups(model: LoadedModel, groups: Sequence[ChannelGroup] | None = None) -> list[PruneGroup]:
    """The model's prunable channel groups of at least MIN_CHANNELS channels, in graph order; `groups` are its
    `pruning.channel_groups` when the caller has them already."""
    by_node = {layer.node_name: layer.name for layer in model.layers if not layer.subgraph}
    found = []
    for index, group in enumerate(channel_groups(model.proto) if groups is None else groups):
        if not group.prunable or group.channels < MIN_CHANNELS:
            continue
        nodes = group.producers + [node for node, _ in group.readers] + \
            [node for node, kind in group.carriers if kind == "depthwise"]
        if any(node not in by_node for node in nodes):   # a Conv, Gemm or MatMul qevo does not list as a layer
            continue
        found.append(PruneGroup(tuple(by_node[n] for n in group.producers), group.channels,
                                tuple(by_node[n] for n, _ in group.readers),
                                tuple(by_node[n] for n, kind in group.carriers if kind == "depthwise"), index))
    return found


def group_shares(groups: Sequence[PruneGroup], shares: Mapping[str, float]) -> dict[int, float]:
    """Group position -> share removed, from a policy's `prune` map (layer -> share). Every producer of a group
    must name the same share."""
    producer_of = {name: g for g, group in enumerate(groups) for name in group.producers}
    for name in shares:
        if name not in producer_of:
            raise QevoError(f"layer {name!r} heads no prunable channel group (see qevo inspect --prune)",
                            field=f"prune.{name}")
    found: dict[int, float] = {}
    for g, group in enumerate(groups):
        named = {shares.get(name, 0.0) for name in group.producers}
        if len(named) > 1:
            raise QevoError(f"layers {', '.join(group.producers)} write channels a residual adds together: give "
                            "each the same share", field=f"prune.{group.producers[0]}")
        share = named.pop()
        if share and group.kept(share) < group.channels:   # a share that keeps every channel changes nothing
            found[g] = share
    return found


def scaled_layers(layers: Sequence[Layer], groups: Sequence[PruneGroup], shares: Mapping[str, float]) -> list[Layer]:
    """`layers` as the pruned model holds them: weights, MACs and activations shrunk by the kept channels
    (for costing without building the model)."""
    if not shares:
        return list(layers)
    out_kept: dict[str, int] = {}
    in_kept: dict[str, int] = {}
    depthwise = {name for group in groups for name in group.depthwise}
    for g, share in group_shares(groups, shares).items():
        group = groups[g]
        kept = group.kept(share)
        for name in group.producers + group.depthwise:
            out_kept[name] = kept
        for name in group.readers + group.depthwise:
            in_kept[name] = kept
    scaled = []
    for layer in layers:
        if layer.name not in out_kept and layer.name not in in_kept:
            scaled.append(layer)
            continue
        shape = list(layer.weight_shape)
        out_share = in_share = 1.0
        if layer.name in out_kept:
            out_share = out_kept[layer.name] / shape[layer.channel_axis]
            shape[layer.channel_axis] = out_kept[layer.name]
        if layer.name in in_kept:
            if layer.name in depthwise:   # [C, 1, k, k]: its input channels are its output's
                in_share = out_share
            else:
                in_share = in_kept[layer.name] / shape[layer.reduce_axis]
                shape[layer.reduce_axis] = in_kept[layer.name]
        params = int(np.prod(shape))
        ratio = params / max(layer.params, 1)
        scaled.append(replace(layer, weight_shape=tuple(shape), params=params, macs=int(round(layer.macs * ratio)),
                              input_elems=int(round(layer.input_elems * in_share)),
                              output_elems=int(round(layer.output_elems * out_share))))
    return scaled


class Structures:
    """The pruned models of one loaded model, built on demand: their channels to keep, their refitted weights,
    their calibrators and editors (the last few kept)."""

    def __init__(self, model: LoadedModel, calibrator: ActivationCalibrator, editor):
        self.model = model
        self.calibrator = calibrator
        self.original_editor = editor   # the loaded model's: its weights, and its computed ones the pruned share
        self._channel_groups: list[ChannelGroup] | None = None
        self._groups: list[PruneGroup] | None = None
        self._keep: dict[tuple[int, int], np.ndarray] = {}   # per group and kept count
        self._errors: dict[tuple[int, int], float] = {}
        self._built: OrderedDict[str, object] = OrderedDict()   # prune map -> the pruned model's editor

    @property
    def groups(self) -> list[PruneGroup]:
        self._find_groups()
        return self._groups

    def channel_group(self, group: PruneGroup) -> ChannelGroup:
        self._find_groups()
        return self._channel_groups[group.index]

    def _find_groups(self) -> None:
        if self._groups is None:
            self._channel_groups = channel_groups(self.model.proto)
            self._groups = prune_groups(self.model, self._channel_groups)

    def keep(self, group: PruneGroup, share: float) -> np.ndarray:
        """The channels `share` keeps: the most important ones, in their order."""
        count = group.kept(share)
        if (group.index, count) not in self._keep:
            score = importance(self.model.proto, self.channel_group(group))
            self._keep[(group.index, count)] = np.sort(np.argsort(-score, kind="stable")[:count])
        return self._keep[(group.index, count)]

    def local_error(self, group: PruneGroup, share: float) -> float:
        """The share of its readers' output energy that pruning `group` by `share` loses after the refit, on the
        calibration data (0 with nothing pruned)."""
        if not share or group.kept(share) == group.channels:
            return 0.0
        key = (group.index, group.kept(share))
        if key not in self._errors:
            lost = total = 0.0
            for name in group.readers:
                layer = self.model.layer(name)
                if not supports(layer):
                    continue
                error, energy = refit_error(self.original_editor.weight_values(layer), self.calibrator.gram(layer)[0],
                                            self.keep(group, share), layer.reduce_axis)
                lost, total = lost + error, total + energy
            self._errors[key] = lost / total if total > 0 else 0.0
        return self._errors[key]

    def editor(self, shares: Mapping[str, float]):
        """The graph editor of the model `shares` (a policy's prune map) leaves."""
        from .graph_edit import GraphEditor

        key = repr(sorted(shares.items()))
        if key not in self._built:
            pruned, columns = self._pruned(shares)
            calibrator = PrunedCalibrator(pruned, self.calibrator, columns)
            self._built[key] = GraphEditor(pruned, calibrator, weights_of=self.original_editor)
            while len(self._built) > STRUCTURES_KEPT:
                self._built.popitem(last=False)
        self._built.move_to_end(key)
        return self._built[key]

    def _pruned(self, shares: Mapping[str, float]) -> tuple[LoadedModel, dict[str, tuple[str, np.ndarray]]]:
        layers = {layer.name: layer for layer in self.model.layers}
        proto = self.model.proto
        columns: dict[str, tuple[str, np.ndarray]] = {}
        for g, share in group_shares(self.groups, shares).items():
            group = self.groups[g]
            keep = self.keep(group, share)
            channel_group = self.channel_group(group)
            grams = {layers[name].node_name: self.calibrator.gram(layers[name])[0]
                     for name in group.readers if supports(layers[name])}
            proto = prune(proto, channel_group, keep, grams)
            columns.update({name: ("dense", keep) for name in group.readers})
            columns.update({name: ("grouped", keep) for name in group.depthwise})
        return derived_model(proto, self.model), columns


class PrunedCalibrator(ActivationCalibrator):
    """The original model's calibration, read for the pruned model: a tensor's range is the original tensor's
    (a pruned tensor's kept channels lie within it, and the refit keeps every other tensor close to the
    original), and the input statistics are the original's on the columns the pruned model keeps. So a
    pruned policy costs no calibration pass of its own."""

    def __init__(self, model: LoadedModel, original: ActivationCalibrator,
                 columns: Mapping[str, tuple[str, np.ndarray]]):
        super().__init__(model, original.calib, original._options)
        self.original = original
        self.columns = dict(columns)

    def range(self, tensor: str, method: str, bits: int) -> tuple[float, float]:
        return self.original.range(tensor, method, bits)

    def tensor_range(self, tensor: str) -> tuple[float, float]:
        return self.original.tensor_range(tensor)

    def _input_stats(self, layer) -> tuple[list[np.ndarray], ...]:
        if layer.name in self._grams:
            return self._grams[layer.name]
        original = self.original.model.layer(layer.name)
        stats = self.original._input_stats(original)
        if layer.name in self.columns:
            kind, keep = self.columns[layer.name]
            if kind == "grouped":   # one matrix per channel
                stats = tuple([values[k] for k in keep] for values in stats)
            else:
                per_channel = stats[1][0].shape[0] // original.weight_shape[original.reduce_axis]
                kept = (keep[:, None] * per_channel + np.arange(per_channel)).reshape(-1)
                stats = (([stats[0][0][np.ix_(kept, kept)]],) +
                         tuple([values[0][kept]] for values in stats[1:]))
        self._grams[layer.name] = stats
        return stats
