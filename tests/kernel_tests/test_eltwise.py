"""Quantize/dequantize, LayerNorm, softmax and GELU against numpy, on every ISA path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from graphopt.runtime import kernels as gk

from . import refs

PROFILE = settings.get_profile("kernels")
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=40)


@PROFILE
@given(shape=SHAPES, dtype=st.sampled_from(["u8", "s8"]), per_channel=st.booleans(), seed=st.integers(0, 2**31 - 1),
       spread=st.sampled_from([0.1, 10.0, 1e4]))
def test_quantize_dequantize(eltwise_isa: str, shape: tuple[int, ...], dtype: str, per_channel: bool, seed: int,
                             spread: float) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * spread).astype(np.float32)
    lo, hi = (0, 255) if dtype == "u8" else (-128, 127)
    if per_channel:
        axis = int(rng.integers(-len(shape), len(shape)))
        C = shape[axis]
        scale = (rng.random(C) * 0.5 + 0.01).astype(np.float32)
        zp = rng.integers(lo, hi + 1, C).astype(np.int32)
        bshape = [1] * len(shape)
        bshape[axis] = C
        s_b, z_b = scale.reshape(bshape), zp.reshape(bshape)
    else:
        axis = None
        scale = np.float32(rng.random() * 0.5 + 0.01)
        zp = int(rng.integers(lo, hi + 1))
        s_b, z_b = scale, zp
    q = gk.quantize(x, scale, zp, dtype=dtype, axis=axis)
    want = np.clip(np.round(x / s_b) + z_b, lo, hi).astype(np.uint8 if dtype == "u8" else np.int8)
    np.testing.assert_array_equal(q, want)
    y = gk.dequantize(q, scale, zp, axis=axis)
    np.testing.assert_array_equal(y, ((q.astype(np.int32) - z_b).astype(np.float32) * s_b).astype(np.float32))


@PROFILE
@given(shape=SHAPES, dtype=st.sampled_from(["u8", "s8"]), per_channel=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_requantize(eltwise_isa: str, shape: tuple[int, ...], dtype: str, per_channel: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**31, 2**31 - 1, shape, dtype=np.int64).astype(np.int32) >> int(rng.integers(0, 31))
    lo, hi = (0, 255) if dtype == "u8" else (-128, 127)
    axis = -1 if per_channel else None
    n = shape[-1] if per_channel else 1
    scale = (rng.random(n) * 1e-3 + 1e-6).astype(np.float32)
    zp = rng.integers(lo, hi + 1, n).astype(np.int32)
    got = gk.requantize(x, scale, zp, dtype=dtype, axis=axis)
    want = np.clip(np.round(x.astype(np.float32) * scale) + zp, lo, hi)
    np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_quantize_rounds_half_to_even(eltwise_isa: str) -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 254.5, 1e9, -1e9, 3.4e38], np.float32)
    np.testing.assert_array_equal(gk.quantize(x, 1.0, 0, "u8"), [0, 2, 2, 0, 0, 254, 255, 0, 255])
    np.testing.assert_array_equal(gk.quantize(x, 1.0, 0, "s8"), [0, 2, 2, 0, -2, 127, 127, -128, 127])


@PROFILE
@given(rows=st.integers(1, 30), N=st.one_of(st.sampled_from([1, 2, 15, 16, 17, 768]), st.integers(1, 200)),
       residual=st.booleans(), with_beta=st.booleans(), return_sum=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_layernorm(eltwise_isa: str, rows: int, N: int, residual: bool, with_beta: bool, return_sum: bool,
                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, N)) * 3 + 1).astype(np.float32)
    r = rng.standard_normal((rows, N)).astype(np.float32) if residual else None
    g = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32) if with_beta else None
    res = gk.layernorm(x, g, b, 1e-5, r, return_sum and residual)
    y = res[0] if (return_sum and residual) else res
    s = x.astype(np.float64) + (r if residual else 0)
    mu = s.mean(-1, keepdims=True)
    want = (s - mu) / np.sqrt(s.var(-1, keepdims=True) + 1e-5) * g + (b if with_beta else 0)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    if return_sum and residual:
        np.testing.assert_array_equal(res[1], (x + r).astype(np.float32))


@PROFILE
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=33), mask_kind=st.sampled_from(
    ["none", "full", "last", "prefix", "middle"]), seed=st.integers(0, 2**31 - 1))
def test_softmax(eltwise_isa: str, shape: tuple[int, ...], mask_kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    mask = None
    if mask_kind == "full":
        mask = rng.standard_normal(shape).astype(np.float32)
    elif mask_kind == "last":
        mask = rng.standard_normal(shape[-1:]).astype(np.float32)
    elif mask_kind == "prefix":  # e.g. [B, 1, 1, S]
        mask = rng.standard_normal(shape[:1] + (1,) * (len(shape) - 2) + shape[-1:] if len(shape) > 1 else shape)
        mask = mask.astype(np.float32)
    elif mask_kind == "middle" and len(shape) >= 3:  # not a prefix: the wrapper expands it
        mask = rng.standard_normal((1,) + shape[1:]).astype(np.float32)
    got = gk.softmax(x, mask)
    want = refs.softmax(x.astype(np.float64) + (0 if mask is None else mask))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_minus_inf_mask(eltwise_isa: str) -> None:
    x = np.zeros((3, 4), np.float32)
    mask = np.array([[0, -np.inf, 0, -np.inf], [-np.inf] * 4, [0, 0, 0, 0]], np.float32)
    got = gk.softmax(x, mask)
    np.testing.assert_allclose(got, [[0.5, 0, 0.5, 0], [0, 0, 0, 0], [0.25] * 4])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(eltwise_isa: str, approximate: str) -> None:
    x = np.concatenate([np.linspace(-12, 12, 4001), [0.0, -0.0, 1e-8, -1e-8, 50, -50, 1e30, -1e30]]).astype(np.float32)
    got = gk.gelu(x, approximate)
    want = refs.gelu(x, approximate)
    # erf/tanh abs error <= 6.4e-8, times |x|/2 where 1 + erf cancels (x < -3)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=5e-7)


# Dense grid over the whole range where erf/tanh are not exactly +-1, plus subnormals,
# huge values, signed zeros, infinities and NaN.
def _grid(top: float) -> np.ndarray:
    lin = np.linspace(0, top, 1_000_001, dtype=np.float64)
    geo = np.geomspace(1e-45, top, 200_001)
    pos = np.concatenate([lin, geo, [1e-38, 3.4e38, np.inf]]).astype(np.float32)
    return np.concatenate([pos, -pos, np.float32([np.nan])])


@pytest.mark.parametrize("fn", ["erf", "tanh"])
def test_erf_tanh_max_abs_error(eltwise_isa: str, fn: str) -> None:
    x = _grid(4.5 if fn == "erf" else 10.0)
    got = getattr(gk, fn)(x).astype(np.float64)
    if fn == "erf":
        want = np.array([math.erf(v) if np.isfinite(v) else np.sign(v) if np.isinf(v) else np.nan for v in x.tolist()])
    else:
        want = np.tanh(x.astype(np.float64))
    ok = np.isfinite(x)
    err = np.abs(got[ok] - want[ok])
    assert err.max() <= 8e-8, (err.max(), x[ok][err.argmax()])  # all floats (tools/check_vmath.py): 6.4e-8, 5.6e-8
    assert np.isnan(got[-1])
    np.testing.assert_array_equal(got[np.isinf(x)], np.sign(x[np.isinf(x)]))
    assert np.signbit(getattr(gk, fn)(np.float32([-0.0]))[0])
    half = x.size // 2  # x = [pos, -pos, nan]
    np.testing.assert_array_equal(got[half: 2 * half], -got[:half])  # odd


@PROFILE
@given(rows=st.integers(1, 40), N=st.one_of(st.sampled_from([1, 15, 16, 17, 384]), st.integers(1, 200)),
       residual=st.booleans(), return_sum=st.booleans(), zp=st.integers(0, 255), seed=st.integers(0, 2**31 - 1))
def test_layernorm_quantize_matches_quantize(eltwise_isa: str, rows: int, N: int, residual: bool, return_sum: bool,
                                             zp: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, N)) * 3 + 1).astype(np.float32)
    r = rng.standard_normal((rows, N)).astype(np.float32) if residual else None
    g = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    scale = float(rng.random() * 0.05 + 1e-3)
    out = gk.layernorm_quantize(x, g, b, 1e-5, r, return_sum and residual, scale=scale, zero_point=zp)
    ref = gk.layernorm(x, g, b, 1e-5, r, return_sum and residual)
    y_ref = ref[0] if isinstance(ref, tuple) else ref
    np.testing.assert_array_equal(out[0], y_ref)
    np.testing.assert_array_equal(out[1], gk.quantize(out[0], scale, zp, "u8"))
    if return_sum and residual:
        np.testing.assert_array_equal(out[2], (x + r).astype(np.float32))


@PROFILE
@given(n=st.one_of(st.integers(0, 300), st.sampled_from([49152, 70001])), shift=st.floats(-5, 5),
       seed=st.integers(0, 2**31 - 1))
def test_minmax_and_quantize_dynamic(eltwise_isa: str, n: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 2 + shift).astype(np.float32)
    lo, hi = gk.minmax(x)
    assert lo == min(0.0, float(x.min(initial=0))) and hi == max(0.0, float(x.max(initial=0)))
    q, scale, zp = gk.quantize_dynamic(x)
    want_scale = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(255))
    if not want_scale > 0:
        want_scale = np.float32(1)
    assert scale == want_scale
    assert zp == int(np.clip(np.round(-np.float32(lo) / want_scale), 0, 255))
    np.testing.assert_array_equal(q, gk.quantize(x, scale, zp, "u8"))


def _rows_dynamic_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row dynamic u8 grid (quantize_dynamic's) and q = clip(rint(x * (1 / scale)) + zp)."""
    r = x.reshape(-1, x.shape[-1]) if x.size else np.zeros((x.size and x.shape[0], x.shape[-1]), np.float32)
    lo = np.minimum(0, r.min(axis=1, initial=0)).astype(np.float32)
    hi = np.maximum(0, r.max(axis=1, initial=0)).astype(np.float32)
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    scale[~(scale > 0)] = 1
    zp = np.clip(np.round(-lo / scale), 0, 255).astype(np.int32)
    inv = (np.float32(1) / scale).astype(np.float32)
    q = np.clip(np.round(r * inv[:, None]) + zp[:, None], 0, 255).astype(np.uint8)
    return q.reshape(x.shape), scale, zp


@PROFILE
@given(rows=st.integers(0, 40), n=st.one_of(st.integers(1, 300), st.sampled_from([768, 3072, 20000])),
       shift=st.floats(-5, 5), seed=st.integers(0, 2**31 - 1))
def test_quantize_rows_dynamic(eltwise_isa: str, rows: int, n: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * rng.uniform(0.1, 10, (rows, 1)) + shift).astype(np.float32)
    q, scale, zp = gk.quantize_rows_dynamic(x)
    wq, wscale, wzp = _rows_dynamic_ref(x)
    np.testing.assert_array_equal(scale, wscale)
    np.testing.assert_array_equal(zp, wzp)
    np.testing.assert_array_equal(q, wq)
    for r in range(min(rows, 3)):  # each row's grid is the per-tensor dynamic grid of that row
        _, s1, z1 = gk.quantize_dynamic(x[r])
        assert (s1, z1) == (scale[r], zp[r])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_rows_dynamic_flags_nonfinite_rows(eltwise_isa: str, bad: float) -> None:
    """A row holding a NaN or an infinity (anywhere, tail included) gets scale NaN; the others are untouched."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 37)).astype(np.float32)
    x[1, 3], x[4, 36] = bad, bad
    _, scale, _ = gk.quantize_rows_dynamic(x)
    assert np.isnan(scale[[1, 4]]).all() and np.isfinite(scale[[0, 2, 3, 5]]).all()
    q, s2, z2 = gk.quantize_rows_dynamic(x[[0, 2, 3, 5]])
    np.testing.assert_array_equal(s2, scale[[0, 2, 3, 5]])


@PROFILE
@given(rows=st.integers(1, 20), n=st.sampled_from([1, 7, 64, 384, 768, 1000]), residual=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_layernorm_quantize_dynamic_equals_quantizing_after(eltwise_isa: str, rows: int, n: int, residual: bool,
                                                            seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    r = rng.standard_normal((rows, n)).astype(np.float32) if residual else None
    g, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y, q, scale, zp = gk.layernorm_quantize_dynamic(x, g, b, 1e-5, r)
    np.testing.assert_array_equal(y, gk.layernorm(x, g, b, 1e-5, r))
    wq, wscale, wzp = gk.quantize_rows_dynamic(y)
    np.testing.assert_array_equal(q, wq)
    np.testing.assert_array_equal(scale, wscale)
    np.testing.assert_array_equal(zp, wzp)


@pytest.mark.parametrize("n", [65536 + 17, 300_000])
def test_parallel_sizes_match_serial(eltwise_isa: str, n: int) -> None:
    """Inputs above the parallel threshold (split into tasks) equal the per-row results."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    np.testing.assert_array_equal(gk.gelu(x), np.concatenate([gk.gelu(x[:1000]), gk.gelu(x[1000:])]))
    q = gk.quantize(x, 0.05, 128, "u8")
    np.testing.assert_array_equal(q, np.clip(np.round(x / np.float32(0.05)) + 128, 0, 255).astype(np.uint8))
    rows = x[: n // 128 * 128].reshape(-1, 128)
    g = np.ones(128, np.float32)
    np.testing.assert_array_equal(gk.layernorm(rows, g), np.concatenate([gk.layernorm(rows[:3], g), gk.layernorm(rows[3:], g)]))
    np.testing.assert_array_equal(gk.softmax(rows), np.concatenate([gk.softmax(rows[:5]), gk.softmax(rows[5:])]))
    np.testing.assert_array_equal(gk.from_bf16(gk.to_bf16(x)), refs.bf16_to_f32(refs.bf16_round(x)))
