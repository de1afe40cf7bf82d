"""Fake quantization of weights: round to the format's grid, return float32.

The rounded weights are written back into the float graph, so a variant runs in
onnxruntime with exactly the values the target would hold.
"""
from __future__ import annotations

import numpy as np

from .policy import LayerChoice, group_size

# Clipping ratios tried by the MSE-optimal weight range.
MSE_CLIP_RATIOS = np.linspace(0.3, 1.0, 36)


def int_grid(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of a signed integer grid. Symmetric grids drop -2^(b-1) so zero
    sits in the middle, as onnxruntime's symmetric int8 does ([-127, 127])."""
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


def quantize_weight(weight: np.ndarray, choice: LayerChoice, channel_axis: int | None, gram=None) -> np.ndarray:
    """The layer's weight as the target would store it, returned as float32. `gram` is the Gram matrix of
    the layer's inputs (one per group of a grouped Conv), which "gptq" rounding and the "output-mse" weight
    range need (recovery.py)."""
    weight = np.asarray(weight, dtype=np.float32)
    if choice.weight == "fp32":
        return weight
    if choice.weight == "fp16":
        return weight.astype(np.float16).astype(np.float32)
    rows, restore = _rows(weight, choice.granularity, channel_axis)
    codes, scale, zero_point = _row_codes(rows, choice, _output_error(weight, restore, rows, choice, channel_axis, gram))
    if choice.rounding == "gptq":
        scale, zero_point = (restore(np.broadcast_to(v, rows.shape)) for v in (scale, zero_point))
        codes = _second_order(weight, scale, zero_point, choice, channel_axis, gram)
        return ((codes - zero_point) * scale).astype(np.float32)
    return restore(((codes - zero_point) * scale).astype(np.float32))


def weight_codes(weight: np.ndarray, choice: LayerChoice, channel_axis: int | None, gram=None):
    """Integer codes, scales and zero points of an integer weight format.

    Returns (codes shaped like the weight, scale, zero_point) with one scale and zero point per
    row: 1 per-tensor, one per output channel along `channel_axis` per-channel, and per-group
    channel-major (channel 0's groups first), such that (codes - zero_point) * scale is exactly
    `quantize_weight(...)`.
    """
    if not choice.weight_is_int:
        raise ValueError(f"no integer codes for {choice.weight}")
    weight = np.asarray(weight, dtype=np.float32)
    rows, restore = _rows(weight, choice.granularity, channel_axis)
    codes, scale, zero_point = _row_codes(rows, choice, _output_error(weight, restore, rows, choice, channel_axis, gram))
    if choice.rounding == "gptq":
        codes = _second_order(weight, *(restore(np.broadcast_to(v, rows.shape)) for v in (scale, zero_point)),
                              choice, channel_axis, gram)
    else:
        codes = restore(codes)
    return codes.astype(np.int32), scale.reshape(-1), zero_point.reshape(-1).astype(np.int32)


def _output_error(weight: np.ndarray, restore, rows: np.ndarray, choice: LayerChoice, channel_axis: int | None,
                  gram):
    """For the "output-mse" weight range: a function of rounded rows giving each row's error of the layer's
    output on the calibration inputs, (W_q - W) H (W_q - W)ᵀ per output channel (every row of a channel,
    one per group, shares it; per-tensor sums them). None for the other ranges."""
    if choice.weight_range != "output-mse":
        return None
    from .recovery import weight_matrix

    if gram is None or channel_axis is None:
        raise ValueError("the output-mse weight range needs the Gram matrix of the layer's inputs and its output axis")
    grams = gram if isinstance(gram, (list, tuple)) else [gram]
    matrix = weight_matrix(weight, channel_axis).astype(np.float64)
    per_group = len(matrix) // len(grams)

    def errors(rounded_rows: np.ndarray) -> np.ndarray:
        delta = weight_matrix(restore(rounded_rows), channel_axis) - matrix
        channel = np.concatenate([np.einsum("ci,ij,cj->c", delta[g * per_group:(g + 1) * per_group], part,
                                            delta[g * per_group:(g + 1) * per_group], optimize=True)
                                  for g, part in enumerate(grams)])
        if len(rows) == 1:
            return np.array([[channel.sum()]])
        return np.repeat(channel, len(rows) // len(channel)).reshape(-1, 1)
    return errors


def _second_order(weight: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, choice: LayerChoice,
                  channel_axis: int | None, gram) -> np.ndarray:
    """GPTQ codes on the grid of `scale` and `zero_point` (one per weight element), in the weight's layout."""
    from .recovery import by_input_group, from_weight_matrix, gptq_codes, weight_matrix

    if gram is None or channel_axis is None:
        raise ValueError("gptq rounding needs the Gram matrix of the layer's inputs and its output axis")
    qmin, qmax = int_grid(choice.weight_bits, choice.symmetric)
    matrices = [weight_matrix(v, channel_axis) for v in (weight, scale, zero_point)]
    if choice.sparsity != "dense":   # a pruned weight (N:M sparsity) keeps its zero: rounding may not move error onto it
        matrices.append(matrices[0] != 0)
    codes = by_input_group(gram, lambda part, m, s, z, keep=None: gptq_codes(m, s, z, qmin, qmax, part, keep),
                           *matrices)
    return from_weight_matrix(codes, weight.shape, channel_axis).astype(np.float32)


def _row_codes(rows: np.ndarray, choice: LayerChoice, output_error=None):
    """Per row: codes, scale and zero point, the clipping chosen by `choice.weight_range`: the full range,
    or the one with the least error of the weights ("mse") or of the layer's output (`output_error`)."""
    qmin, qmax = int_grid(choice.weight_bits, choice.symmetric)
    ratios = MSE_CLIP_RATIOS[::-1] if choice.weight_range != "minmax" else np.array([1.0])
    best = None
    for ratio in ratios:   # 1.0 first, so ties keep the full range
        scale, zero_point = _scales(rows, qmin, qmax, choice.symmetric, ratio)
        codes = np.clip(np.round(rows / scale) + zero_point, qmin, qmax)
        if output_error is None:
            error = np.sum(((codes - zero_point) * scale - rows) ** 2, axis=1, keepdims=True)
        else:
            error = output_error((codes - zero_point) * scale)
        if best is None:
            best = [codes, scale, zero_point, error]
            continue
        better = error < best[3]
        best[0] = np.where(better, codes, best[0])
        best[1] = np.where(better, scale, best[1])
        best[2] = np.where(better, zero_point, best[2])
        best[3] = np.where(better, error, best[3])
    return best[0], best[1], best[2]


def _rows(weight: np.ndarray, granularity: str, channel_axis: int | None):
    """Reshape so each row shares one scale; return the rows and a function that undoes it."""
    shape = weight.shape
    if granularity == "per-tensor" or channel_axis is None or weight.ndim < 2:
        return weight.reshape(1, -1), lambda rows: rows.reshape(shape)
    moved = np.moveaxis(weight, channel_axis, 0)
    moved_shape = moved.shape
    per_channel = moved.reshape(moved_shape[0], -1)
    size = group_size(granularity)
    if size is None:
        return per_channel, lambda rows: np.moveaxis(rows.reshape(moved_shape), 0, channel_axis)
    channels, length = per_channel.shape
    groups = -(-length // size)
    # Pad the last group with zeros: they change neither its range nor the real weights.
    padded = np.zeros((channels, groups * size), dtype=np.float32)
    padded[:, :length] = per_channel

    def restore(rows: np.ndarray) -> np.ndarray:
        back = rows.reshape(channels, groups * size)[:, :length]
        return np.moveaxis(back.reshape(moved_shape), 0, channel_axis)

    return padded.reshape(channels * groups, size), restore


def _scales(rows: np.ndarray, qmin: int, qmax: int, symmetric: bool, ratio):
    if symmetric:
        amax = np.max(np.abs(rows), axis=1, keepdims=True) * ratio
        scale = np.where(amax > 0, amax / qmax, 1.0)
        return scale.astype(np.float32), np.zeros_like(scale, dtype=np.float32)
    lo = np.minimum(np.min(rows, axis=1, keepdims=True), 0.0) * ratio
    hi = np.maximum(np.max(rows, axis=1, keepdims=True), 0.0) * ratio
    scale = np.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0).astype(np.float32)
    zero_point = np.clip(np.round(qmin - lo / scale), qmin, qmax).astype(np.float32)
    return scale, zero_point


def activation_qparams(rmin: float, rmax: float, bits: int) -> tuple[np.float32, int]:
    """Scale and zero point of an asymmetric unsigned activation grid covering [rmin, rmax] and 0."""
    qmax = 2 ** bits - 1
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax - rmin <= 0:
        return np.float32(1.0), 0
    scale = np.float32((rmax - rmin) / qmax)
    zero_point = int(np.clip(round(-rmin / float(scale)), 0, qmax))
    return scale, zero_point


def mse_activation_range(sample: np.ndarray, bits: int) -> tuple[float, float]:
    """The clipped [min, max] of a value sample with the least quantization MSE at `bits`."""
    lo, hi = float(np.min(sample)), float(np.max(sample))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi <= lo:
        return lo, hi
    best, best_error = (lo, hi), np.inf
    qmax = 2 ** bits - 1
    for ratio in MSE_CLIP_RATIOS:
        rmin, rmax = lo * ratio, hi * ratio
        scale = (rmax - rmin) / qmax
        zero_point = np.round(-rmin / scale)
        q = np.clip(np.round(sample / scale) + zero_point, 0, qmax)
        error = float(np.mean(((q - zero_point) * scale - sample) ** 2))
        if error < best_error:
            best, best_error = (rmin, rmax), error
    return best
