"""N:M semi-structured sparsity: at most N non-zero weights in every block of M along the input dimension.

NVIDIA's sparse tensor cores run 2:4 weights at twice the dense math rate (Ampere and later, through
TensorRT's sparse kernels); the blocks run along the dimension the layer sums over: a Conv's input
channels at every output channel and kernel position, a MatMul's or Gemm's inner dimension. The weights
stay dense in the file, with the zeros in place: TensorRT finds the pattern and compresses them itself.

Which weights are zeroed: the N largest magnitudes of each block stay ("magnitude"), or, with second-order
rounding (LayerChoice.rounding "gptq"), the same mask with the pruned weights' error moved onto the kept
ones through the inverse Gram matrix of the layer's inputs, as SparseGPT (Frantar & Alistarh, 2023) does:
the layer's output on calibration data moves least.
"""
from __future__ import annotations

import re

import numpy as np

from .layers import KIND_CONV, KIND_GEMM, Layer

DENSE = "dense"
PATTERN = re.compile(r"([1-9][0-9]?):([1-9][0-9]?)")


def from_yaml(value):
    """YAML 1.1 reads an unquoted 2:4 as the base-60 number 124: give such a number back as 'N:M'."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 60:
        return f"{value // 60}:{value % 60}"
    return value


def parse(pattern: str) -> tuple[int, int]:
    """(N, M) of an 'N:M' pattern with 0 < N < M <= 16; ValueError otherwise."""
    match = PATTERN.fullmatch(pattern) if isinstance(pattern, str) else None
    n, m = (int(match[1]), int(match[2])) if match else (0, 0)
    if not 0 < n < m <= 16:
        raise ValueError(f"got {pattern!r}, expected dense or N:M non-zeros per block, such as 2:4")
    return n, m


def checked(value, field: str) -> str:
    """`value` if it is 'dense' or an 'N:M' pattern, else a QevoError naming `field`."""
    from .errors import QevoError

    if value != DENSE:
        try:
            parse(value)
        except ValueError as err:
            raise QevoError(str(err), field=field) from None
    return value


def applies(layer: Layer, pattern: str) -> bool:
    """Whether a layer can hold `pattern`: a Conv (not depthwise), Gemm or MatMul with a constant weight in the
    top graph (the layers second-order rounding reconstructs), whose summed dimension splits into blocks of M."""
    if pattern == DENSE:
        return True
    from .recovery import supports

    _, m = parse(pattern)
    return (layer.kind in (KIND_CONV, KIND_GEMM) and supports(layer) and layer.reduce_axis is not None
            and layer.weight_shape[layer.reduce_axis] % m == 0)


def keep_mask(weight: np.ndarray, reduce_axis: int, pattern: str) -> np.ndarray:
    """True for the N weights of largest magnitude in every block of M along `reduce_axis` (the first of
    equal magnitudes), False for the rest."""
    n, m = parse(pattern)
    moved = np.moveaxis(np.abs(np.asarray(weight, np.float64)), reduce_axis, -1)
    blocks = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    ranks = np.argsort(np.argsort(-blocks, axis=-1, kind="stable"), axis=-1, kind="stable")
    keep = (ranks < n).reshape(moved.shape)
    return np.moveaxis(keep, -1, reduce_axis)


def pruned(weight: np.ndarray, layer: Layer, pattern: str, gram=None) -> np.ndarray:
    """`weight` with the pattern's pruned weights zeroed; given the Gram matrix of the layer's inputs (one
    per group of a grouped Conv), the kept weights compensate for the pruned ones (SparseGPT)."""
    keep = keep_mask(weight, layer.reduce_axis, pattern)
    if gram is None:
        return np.where(keep, weight, 0).astype(np.float32)
    from .recovery import by_input_group, from_weight_matrix, masked_reconstruction, weight_matrix

    rebuilt = by_input_group(gram, lambda part, m, k: masked_reconstruction(m, k, part),
                             weight_matrix(weight, layer.channel_axis), weight_matrix(keep, layer.channel_axis))
    return from_weight_matrix(rebuilt, weight.shape, layer.channel_axis).astype(np.float32)


def holds(weight: np.ndarray, reduce_axis: int, pattern: str) -> bool:
    """Whether every block of M along `reduce_axis` has at most N non-zeros."""
    n, m = parse(pattern)
    moved = np.moveaxis(np.asarray(weight), reduce_axis, -1)
    blocks = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    return bool(np.all(np.count_nonzero(blocks, axis=-1) <= n))
