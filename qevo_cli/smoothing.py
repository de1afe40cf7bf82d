"""Activation smoothing (SmoothQuant, Xiao et al., 2022) for MatMul and Gemm layers.

A layer y = x W whose input has a few channels far larger than the rest quantizes badly per tensor: the
outliers set the step. Dividing input channel j by s_j and multiplying the weight's row j by s_j leaves y
unchanged and moves the difficulty into the weights, which are quantized per output channel:

    s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)

alpha is the strength (0.5 in the paper; 0.8 for harder activations). Here the division is a `Mul` by 1/s
in front of the layer, with the layer's own Q/DQ after it, in both the measured variant and the export:
the layer's input may be read by others (a post-norm transformer's residual reads the norm's output),
so folding 1/s into the producer is exact only where nothing else reads it, which in the models this
was written for is never the case. The scaled weight is then quantized like any other (rounding to
nearest or second order, any range), against the Gram matrix of the scaled input.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .recovery import supports

SCALE_LIMITS = (1e-5, 1e5)   # a channel that never fires or a weight row of zeros leaves its scale bounded


def smooths(layer) -> bool:
    """Whether smoothing applies: a MatMul reading x @ W or a Gemm, of the top graph, with a 2-D weight."""
    if layer.op_type not in ("MatMul", "Gemm") or not supports(layer):
        return False
    return layer.op_type == "Gemm" or layer.channel_axis == len(layer.weight_shape) - 1


def smoothing_scales(lows: np.ndarray, highs: np.ndarray, matrix: np.ndarray, alpha: float) -> np.ndarray:
    """s per input channel from the channel's calibrated range and the weight as [outputs, inputs]."""
    peak = np.maximum(np.abs(lows), np.abs(highs)).astype(np.float64)
    weight_peak = np.max(np.abs(matrix), axis=0).astype(np.float64)
    live = (peak > 0) & (weight_peak > 0)
    scales = np.ones_like(peak)
    scales[live] = peak[live] ** alpha / weight_peak[live] ** (1.0 - alpha)
    return np.clip(scales, *SCALE_LIMITS)


def scaled_weight(weight: np.ndarray, channel_axis: int, scales: np.ndarray) -> np.ndarray:
    """The 2-D weight with each input channel's row (x @ W) or column (a Gemm's transposed B) times s."""
    weight = np.asarray(weight)
    shape = (-1, 1) if channel_axis == 1 else (1, -1)
    return (weight.astype(np.float64) * scales.reshape(shape)).astype(weight.dtype)


def scaled_grams(grams: list[np.ndarray], scales: np.ndarray) -> list[np.ndarray]:
    """E[x' x'ᵀ] of the smoothed input x' = x / s."""
    inverse = 1.0 / scales
    return [(gram * np.outer(inverse, inverse)).astype(gram.dtype) for gram in grams]


def smoothed_range(lows: np.ndarray, highs: np.ndarray, scales: np.ndarray) -> tuple[float, float]:
    """Min-max range of x / s over every channel (s > 0 keeps each channel's order)."""
    return float(np.min(lows / scales)), float(np.max(highs / scales))


def activation_error_ratio(lows: np.ndarray, highs: np.ndarray, matrix: np.ndarray, scales: np.ndarray) -> float:
    """How much the output noise of quantizing the input per tensor changes with smoothing: uniform rounding
    noise of step Δ on every input channel reaches the output as Δ² Σ_j ||W_j||²; smoothed, the step follows
    the range of x / s and channel j's weights are s_j times larger."""
    column = np.sum(np.asarray(matrix, np.float64) ** 2, axis=0)
    plain = (max(highs.max(), 0.0) - min(lows.min(), 0.0)) ** 2 * column.sum()
    low, high = smoothed_range(lows, highs, scales)
    smoothed = (max(high, 0.0) - min(low, 0.0)) ** 2 * np.sum(scales ** 2 * column)
    return float(smoothed / plain) if plain > 0 else 1.0


def divide_node(tensor: str, scales: np.ndarray, transposed: bool, prefix: str, float_type: int):
    """A Mul by 1/s of the layer's input (channels last, or first for a Gemm reading Aᵀ) and its constant."""
    inverse = (1.0 / scales).reshape((-1, 1) if transposed else (-1,))
    dtype = np.float16 if float_type == onnx.TensorProto.FLOAT16 else np.float32
    constant = numpy_helper.from_array(inverse.astype(dtype), f"{prefix}.s")
    return helper.make_node("Mul", [tensor, constant.name], [f"{prefix}.x"]), constant
