"""Better integer weights than rounding to nearest: second-order rounding (GPTQ).

GPTQ (Frantar et al., 2022, after Optimal Brain Quantization) quantizes a layer's weight one input
column at a time and moves each column's rounding error onto the columns not yet quantized, through
the inverse of the Gram matrix H = X Xᵀ of the layer's inputs on calibration data, so that the
layer's *output* moves as little as possible. The grid (scales and zero points) stays the one rounding
to nearest uses, so the codes drop into every stored form (DequantizeLinear, MatMulNBits, packed
2-bit) unchanged. Columns go in order of decreasing H diagonal ("act order"), which only changes
the order errors are pushed, not the grid.

Weights here are matrices [outputs, inputs]; `weight_matrix` maps a layer's weight to and from that
layout, and `input_columns` turns a batch of the layer's inputs into the columns X that layout reads.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

DAMPING = 0.01       # of the mean diagonal, added to H before inverting it (the paper's default)
BLOCK = 128          # columns updated together before the error reaches the rest (lazy batch updates)
MAX_PATCHES = 8192   # input columns one batch adds to a Conv's Gram matrix (a random subset beyond)
MEMO_SIZE = 8        # factored Gram matrices and code arrays kept: a layer's formats are asked for together
MEMO_BYTES = 512e6   # and at most this much of them (a 4096-input layer's factor alone is 134 MB)


class _Memo(OrderedDict):
    """A small least-recently-used memo keyed by array contents: the search simulates a choice, then its
    export stores the same choice's codes, and a layer's formats all factor the same Gram matrix."""

    def fetch(self, key, compute):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = compute()
        while len(self) > 1 and (len(self) > MEMO_SIZE or sum(_nbytes(v) for v in self.values()) > MEMO_BYTES):
            self.popitem(last=False)
        return value


def _nbytes(value) -> int:
    return sum(_nbytes(v) for v in value) if isinstance(value, tuple) else value.nbytes


_FACTORS, _CODES = _Memo(), _Memo()


def _digest(*arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def gptq_codes(matrix: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, qmin: int, qmax: int,
               gram: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Integer codes of `matrix` [rows, cols] on the grid `(codes - zero_point) * scale` (both broadcast to
    the matrix), chosen column by column to keep `matrix @ X` close for inputs whose Gram matrix is `gram`.
    Where `keep` is False the code is the zero point: a pruned weight stays zero."""
    gram_key = _digest(gram)
    shape = np.shape(matrix)
    key = (_digest(matrix, np.broadcast_to(scale, shape), np.broadcast_to(zero_point, shape),
                   *(() if keep is None else (np.asarray(keep, np.uint8),))), gram_key, qmin, qmax)
    scale = np.broadcast_to(np.asarray(scale, np.float64), shape)
    zero_point = np.broadcast_to(np.asarray(zero_point, np.float64), shape)

    def code(column: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        value = np.clip(np.round(column / scale[:, j]) + zero_point[:, j], qmin, qmax)
        value = value if keep is None else np.where(keep[:, j], value, zero_point[:, j])
        return value, (value - zero_point[:, j]) * scale[:, j]

    def compute():
        factor = _FACTORS.fetch(gram_key, lambda: _ordered_factor(gram))
        codes = _sequential(matrix, factor, code)
        return codes.astype(np.int64)
    return _CODES.fetch(key, compute).copy()


def masked_reconstruction(matrix: np.ndarray, keep: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """`matrix` [rows, cols] with the weights where `keep` is False set to zero and their error moved onto the
    kept weights not yet visited, column by column, so that `matrix @ X` moves least for inputs whose Gram
    matrix is `gram` (SparseGPT's reconstruction, for a fixed mask)."""
    gram_key = _digest(gram)
    factor = _FACTORS.fetch(gram_key, lambda: _ordered_factor(gram))
    def prune(column: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        value = np.where(keep[:, j], column, 0.0)
        return value, value
    return _sequential(matrix, factor, prune)


def _ordered_factor(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The column order (decreasing H diagonal) and the inverse factor of H in that order."""
    gram = np.array(gram, dtype=np.float64)
    dead = np.diag(gram) <= 0               # inputs that never vary: their weights change nothing
    gram[dead, dead] = 1.0
    order = np.argsort(-np.diag(gram), kind="stable")
    return order, _upper_inverse_factor(gram[np.ix_(order, order)])


def _sequential(matrix, factor, settle) -> np.ndarray:
    """Optimal Brain Quantization's loop: each column (in the factor's order) is settled by `settle(column,
    original column index)`, which gives what is stored (codes, or pruned weights) and the weights that stands
    for; the difference is moved onto the columns not yet settled through the inverse Gram factor. Returns
    what is stored, in the original column order."""
    weights = np.array(matrix, dtype=np.float64)
    rows, cols = weights.shape
    order, inverse = factor
    weights = weights[:, order]
    settled = np.zeros((rows, cols), dtype=np.float64)
    for start in range(0, cols, BLOCK):
        stop = min(start + BLOCK, cols)
        block = weights[:, start:stop].copy()
        errors = np.zeros_like(block)
        for i in range(stop - start):
            column = start + i
            settled[:, column], value = settle(block[:, i], order[column])
            error = (block[:, i] - value) / inverse[column, column]
            block[:, i:] -= np.outer(error, inverse[column, start + i:stop])
            errors[:, i] = error
        weights[:, stop:] -= errors @ inverse[start:stop, stop:]
    restored = np.empty_like(settled)
    restored[:, order] = settled
    return restored


def _upper_inverse_factor(gram: np.ndarray) -> np.ndarray:
    """U with H⁻¹ = Uᵀ U, H damped; more damping when H is too ill-conditioned to factor."""
    mean = float(np.mean(np.diag(gram))) or 1.0
    damping = DAMPING
    while True:
        damped = gram + damping * mean * np.eye(len(gram))
        try:
            lower = scipy.linalg.cholesky(damped, lower=True)
            inverse, info = scipy.linalg.lapack.dpotri(lower, lower=True)   # H⁻¹ from the factor, one triangle
            if info != 0:
                raise np.linalg.LinAlgError("singular")
            inverse = np.tril(inverse) + np.tril(inverse, -1).T
            return scipy.linalg.cholesky(inverse, lower=False)
        except np.linalg.LinAlgError:
            if damping >= 1e3:
                raise
            damping *= 10


def output_error(matrix: np.ndarray, quantized: np.ndarray, gram: np.ndarray) -> float:
    """Sum over inputs of ||(quantized - matrix) x||², from the Gram matrix: trace(D H Dᵀ)."""
    delta = np.asarray(quantized, np.float64) - np.asarray(matrix, np.float64)
    return float(np.einsum("ij,jk,ik->", delta, gram, delta))


def weight_matrix(weight: np.ndarray, channel_axis: int) -> np.ndarray:
    """The weight as [outputs, inputs]: output channels first, everything a channel sums over flattened in
    storage order (a Conv's (input channel, kernel row, kernel column), the im2col order), the layout
    quantize.py groups per-group scales in."""
    moved = np.moveaxis(np.asarray(weight), channel_axis, 0)
    return moved.reshape(moved.shape[0], -1)


def from_weight_matrix(matrix: np.ndarray, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
    """The inverse of `weight_matrix`: [outputs, inputs] back to a weight of `shape`."""
    axis = channel_axis % len(shape)
    moved = (shape[axis], *shape[:axis], *shape[axis + 1:])
    return np.moveaxis(np.asarray(matrix).reshape(moved), 0, axis)


def by_input_group(grams, solve, *matrices: np.ndarray) -> np.ndarray:
    """`solve(gram, *rows)` for each group of output channels that reads its own inputs (a grouped Conv has one
    Gram matrix per group, any other layer one), on those rows of each [outputs, inputs] matrix; the results
    stacked back in row order."""
    grams = grams if isinstance(grams, (list, tuple)) else [grams]
    rows = len(matrices[0]) // len(grams)
    return np.concatenate([solve(gram, *(m[g * rows:(g + 1) * rows] for m in matrices))
                           for g, gram in enumerate(grams)])


def input_columns(op_type: str, inputs: np.ndarray, attributes: dict, weight_shape: tuple[int, ...],
                  channel_axis: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """The columns X [inputs, samples] a batch of layer inputs gives, in `weight_matrix`'s column order:
    one array per group of output channels that reads the same inputs (a grouped Conv has one per group)."""
    x = np.asarray(inputs, dtype=np.float64)
    if op_type == "Conv":
        return _conv_columns(x, attributes, weight_shape, rng or np.random.default_rng(0))
    if op_type == "Gemm":
        return [x if attributes.get("transA", 0) else x.T]
    if op_type == "MatMul":
        if channel_axis == len(weight_shape) - 1:       # x @ W: x's last axis is the inputs
            return [x.reshape(-1, weight_shape[0]).T]
        return [np.moveaxis(x, -2, 0).reshape(weight_shape[-1], -1)]   # W @ x
    raise ValueError(f"no input columns for {op_type}")


def _conv_columns(x: np.ndarray, attributes: dict, weight_shape: tuple[int, ...],
                  rng: np.random.Generator) -> list[np.ndarray]:
    """im2col of a 1-D or 2-D Conv's input (explicit or SAME pads, strides, dilations), split per group,
    at most MAX_PATCHES output positions per batch (a random subset: the Gram matrix is an average)."""
    spatial = len(weight_shape) - 2
    if spatial not in (1, 2):
        raise ValueError(f"no input columns for a {spatial}-D Conv")
    x = x.reshape(x.shape[0], x.shape[1], *([1] * (2 - spatial)), *x.shape[2:])
    kernel = (1,) * (2 - spatial) + tuple(weight_shape[2:])
    strides = (1,) * (2 - spatial) + tuple(attributes.get("strides", [1] * spatial))
    dilations = (1,) * (2 - spatial) + tuple(attributes.get("dilations", [1] * spatial))
    pads = list(attributes.get("pads", [0] * 2 * spatial))
    begin, end = [0] * (2 - spatial) + pads[:spatial], [0] * (2 - spatial) + pads[spatial:]
    auto = attributes.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
    padded = np.pad(x, [(0, 0), (0, 0), *zip(begin, end)])
    out = [(padded.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(2)]
    positions = x.shape[0] * out[0] * out[1]
    # the output positions whose patches are kept, drawn before any patch is built (a large image has many)
    chosen = np.sort(rng.choice(positions, MAX_PATCHES, replace=False)) if positions > MAX_PATCHES \
        else np.arange(positions)
    n, rest = np.divmod(chosen, out[0] * out[1])
    row, col = np.divmod(rest, out[1])
    patches = np.empty((x.shape[1], kernel[0], kernel[1], len(chosen)))
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            patches[:, i, j] = padded[n, :, row * strides[0] + i * dilations[0], col * strides[1] + j * dilations[1]].T
    columns = patches.reshape(x.shape[1] * kernel[0] * kernel[1], -1)
    groups = int(attributes.get("group", 1))
    per_group = columns.shape[0] // groups
    return [columns[g * per_group:(g + 1) * per_group] for g in range(groups)]


SUPPORTED = ("Conv", "MatMul", "Gemm")


def supports(layer) -> bool:
    """Whether second-order rounding applies: a Conv (1-D or 2-D), MatMul or Gemm of the top graph with a
    2-D (or Conv) weight."""
    if layer.op_type not in SUPPORTED or layer.weight is None or layer.subgraph is not None \
            or layer.channel_axis is None:
        return False
    return len(layer.weight_shape) in ((3, 4) if layer.op_type == "Conv" else (2,))


def local_error(weight: np.ndarray, rounded: np.ndarray, channel_axis: int, grams: list[np.ndarray],
                means: list[np.ndarray] | None = None) -> float:
    """Mean squared change of the layer's output over its calibration inputs, E||(W_q - W) x||², from the
    Gram matrices E[x xᵀ]; with `means`, after bias correction, which removes the mean part ||(W_q - W) E[x]||²."""
    delta = weight_matrix(np.asarray(rounded, np.float64) - np.asarray(weight, np.float64), channel_axis)
    rows = len(delta) // len(grams)
    total = 0.0
    for g, gram in enumerate(grams):
        part = delta[g * rows:(g + 1) * rows]
        total += output_error(part, np.zeros_like(part), gram)
        if means is not None:
            total -= float(np.sum((part @ means[g]) ** 2))
    return max(total, 0.0)


RECIPES = ("all", "output-mse")   # what recovered_choice can apply: everything, or the output-aware range alone


def recovered_choice(layer, choice, recipe: str = "all"):
    """`choice` with the recovery `recipe` applied where it applies to `layer`. "all": gptq rounding and the
    output-mse range where second-order rounding applies, bias correction where there is a bias to correct;
    "output-mse": the output-aware range alone (the cheapest, and ahead of "all" on some models)."""
    from dataclasses import replace

    if not supports(layer):
        return choice
    if not choice.weight_is_int:   # float weights: only pruned ones have anything to recover (their pruning)
        return replace(choice, rounding="gptq") if choice.sparsity != "dense" and recipe == "all" else choice
    if recipe == "output-mse":
        return replace(choice, weight_range="output-mse")
    return replace(choice, rounding="gptq", weight_range="output-mse", bias_correction=corrects_bias(layer))


def corrects_bias(layer) -> bool:
    """Whether bias correction applies: a layer second-order rounding applies to whose output has a bias to
    correct (a Conv without one gets one)."""
    return supports(layer) and (layer.op_type == "Conv" or layer.bias is not None)


def output_shift(quantized: np.ndarray, weight: np.ndarray, channel_axis: int, means: list[np.ndarray]) -> np.ndarray:
    """E[(W_q - W) x] per output channel on the calibration inputs: what the rounded weight adds to the
    layer's output on average, which bias correction subtracts from its bias (as AIMET's and NNCF's do)."""
    delta = weight_matrix(np.asarray(quantized, np.float64) - np.asarray(weight, np.float64), channel_axis)
    rows = len(delta) // len(means)
    return np.concatenate([delta[g * rows:(g + 1) * rows] @ mean for g, mean in enumerate(means)])
