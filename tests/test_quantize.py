"""Weight fake quantization and activation grids, checked against their definitions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qevo_cli.policy import LayerChoice
from qevo_cli.quantize import activation_qparams, int_grid, mse_activation_range, quantize_weight

RNG = np.random.default_rng(0)


def _choice(**kwargs):
    return LayerChoice(**{"activation": "fp32", **kwargs})


def test_int8_symmetric_per_channel_matches_definition():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([0.1, 1, 10, 100])[:, None, None, None]
    q = quantize_weight(w, _choice(weight="int8"), channel_axis=0)
    scale = np.abs(w).reshape(4, -1).max(axis=1) / 127
    expected = np.clip(np.round(w / scale[:, None, None, None]), -127, 127) * scale[:, None, None, None]
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    # every output channel uses at most 255 levels and its own scale
    assert all(len(np.unique(q[c])) <= 255 for c in range(4))


def test_per_channel_axis_is_respected():
    w = RNG.standard_normal((6, 5)).astype(np.float32) * np.arange(1, 6)[None, :] ** 3  # columns differ in scale
    per_column = quantize_weight(w, _choice(weight="int4"), channel_axis=1)
    per_row = quantize_weight(w, _choice(weight="int4"), channel_axis=0)
    # small columns lose almost everything when the scale is shared along the row
    assert np.abs(per_column - w)[:, 0].max() < np.abs(per_row - w)[:, 0].max()


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_level_count_and_error_bound(bits):
    w = RNG.standard_normal((8, 64)).astype(np.float32)
    for symmetric in (True, False):
        q = quantize_weight(w, _choice(weight=f"int{bits}", symmetric=symmetric), channel_axis=0)
        qmin, qmax = int_grid(bits, symmetric)
        for row, qrow in zip(w, q):
            assert len(np.unique(qrow)) <= qmax - qmin + 1
            step = (np.abs(row).max() / qmax) if symmetric else (max(row.max(), 0) - min(row.min(), 0)) / (qmax - qmin)
            assert np.abs(qrow - row).max() <= step / 2 + 1e-6


def test_fewer_bits_more_error():
    w = RNG.standard_normal((16, 128)).astype(np.float32)
    errors = [np.mean((quantize_weight(w, _choice(weight=f"int{b}"), 0) - w) ** 2) for b in range(2, 9)]
    assert errors == sorted(errors, reverse=True)


def test_per_group_scales_along_the_input_dimension():
    w = RNG.standard_normal((4, 256)).astype(np.float32)
    w[:, :32] *= 100  # one loud group per channel
    grouped = quantize_weight(w, _choice(weight="int4", granularity="per-group-32"), channel_axis=0)
    per_channel = quantize_weight(w, _choice(weight="int4"), channel_axis=0)
    quiet = slice(32, None)
    assert np.mean((grouped[:, quiet] - w[:, quiet]) ** 2) < 0.01 * np.mean((per_channel[:, quiet] - w[:, quiet]) ** 2)
    # a length that is not a multiple of the group still round-trips in shape
    odd = RNG.standard_normal((3, 50)).astype(np.float32)
    assert quantize_weight(odd, _choice(weight="int4", granularity="per-group-32"), 0).shape == odd.shape


def test_mse_range_never_worse_than_minmax():
    w = RNG.standard_t(df=2, size=(8, 256)).astype(np.float32)  # heavy tails: clipping pays
    minmax = quantize_weight(w, _choice(weight="int3"), 0)
    mse = quantize_weight(w, _choice(weight="int3", weight_range="mse"), 0)
    assert np.sum((mse - w) ** 2) < np.sum((minmax - w) ** 2)


def test_fp16_and_fp32():
    w = RNG.standard_normal((3, 3)).astype(np.float32)
    assert np.array_equal(quantize_weight(w, _choice(weight="fp32"), 0), w)
    np.testing.assert_array_equal(quantize_weight(w, _choice(weight="fp16"), 0), w.astype(np.float16).astype(np.float32))


def test_activation_qparams_cover_zero_and_range():
    scale, zero_point = activation_qparams(-1.0, 3.0, 8)
    assert scale == pytest.approx(4 / 255) and zero_point == round(1 / (4 / 255))
    scale, zero_point = activation_qparams(0.5, 2.0, 16)   # range extended to include zero
    assert zero_point == 0 and scale == pytest.approx(2 / 65535)
    assert activation_qparams(0.0, 0.0, 8) == (1.0, 0)


def test_mse_activation_range_clips_outliers():
    sample = np.concatenate([RNG.uniform(0, 1, 100_000), [50.0]]).astype(np.float32)
    lo, hi = mse_activation_range(sample, 8)
    assert lo == 0.0 and hi < 50.0


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), symmetric=st.booleans(), scale=st.floats(1e-4, 1e4),
       granularity=st.sampled_from(["per-tensor", "per-channel", "per-group-32"]))
def test_quantized_weights_finite_and_same_shape(bits, symmetric, scale, granularity):
    w = (RNG.standard_normal((5, 40)) * scale).astype(np.float32)
    q = quantize_weight(w, _choice(weight=f"int{bits}", symmetric=symmetric, granularity=granularity), 0)
    assert q.shape == w.shape and q.dtype == np.float32 and np.all(np.isfinite(q))
    assert np.abs(q).max() <= np.abs(w).max() * (1 + 1e-5) + 1e-12 or not symmetric
