"""bf16 and fp32 GEMMs against float64 numpy references, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphopt import _C
from graphopt.runtime import kernels as gk

from . import refs

PROFILE = settings.get_profile("kernels")
DIMS = st.one_of(st.sampled_from([1, 2, 5, 6, 7, 13, 16, 17, 31, 64, 65, 97, 129]), st.integers(1, 130))
ACTS = ["none", "relu", "gelu", "gelu_tanh"]


def accumulation_bound(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Worst-case fp32 summation error of a @ b in any order: K * 2^-24 * (|a| @ |b|) (+ tiny)."""
    k = a.shape[-1]
    return (k + 2) * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))) + 1e-30


def check(got: np.ndarray, a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, act: str, out: str) -> None:
    z = a.astype(np.float64) @ b.astype(np.float64)
    bound = accumulation_bound(a, b)
    if bias is not None:
        z = z + bias
    if act == "relu":
        z = np.maximum(z, 0)  # relu is 1-Lipschitz: the bound carries over
    elif act != "none":
        z = refs.gelu(z, "tanh" if act == "gelu_tanh" else "none")
        bound = 1.2 * bound + 1e-6 * (1 + np.abs(z))  # GELU slope <= 1.13, plus approximation error
    if out == "bf16":
        g = refs.bf16_to_f32(got).astype(np.float64)
        bound = bound + np.abs(z) * 2.0**-8
    else:
        g = got.astype(np.float64)
    bound = bound + np.abs(z) * 2.0**-23  # final rounding of bias add / activation
    err = np.abs(g - z)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}, max err {np.max(err)}"


@PROFILE
@given(M=DIMS, K=DIMS, N=DIMS, act=st.sampled_from(ACTS), out=st.sampled_from(["f32", "bf16"]),
       with_bias=st.booleans(), transposed=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_bf16_gemm(bf16_isa: str, M: int, K: int, N: int, act: str, out: str, with_bias: bool,
                   transposed: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = gk.to_bf16(rng.standard_normal((M, K)).astype(np.float32))
    b = gk.to_bf16(rng.standard_normal((K, N)).astype(np.float32))
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    w = gk.pack_bf16(np.ascontiguousarray(b.T), transposed=True) if transposed else gk.pack_bf16(b)
    got = gk.gemm_bf16(a, w, bias=bias, activation=act, out_dtype=out)
    assert got.shape == (M, N) and got.dtype == (np.uint16 if out == "bf16" else np.float32)
    check(got, refs.bf16_to_f32(a), refs.bf16_to_f32(b), bias, act, out)


@PROFILE
@given(M=DIMS, K=DIMS, N=DIMS, act=st.sampled_from(ACTS), out=st.sampled_from(["f32", "bf16"]),
       with_bias=st.booleans(), transposed=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_f32_gemm(f32_isa: str, M: int, K: int, N: int, act: str, out: str, with_bias: bool, transposed: bool,
                  seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    w = gk.pack_f32(np.ascontiguousarray(b.T), transposed=True) if transposed else gk.pack_f32(b)
    got = gk.gemm_f32(a, w, bias=bias, activation=act, out_dtype=out)
    check(got, a, b, bias, act, out)


@pytest.mark.parametrize("out", ["u8", "s8"])
def test_float_gemm_requantized_output(f32_isa: str, out: str) -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((9, 33)).astype(np.float32)
    b = rng.standard_normal((33, 70)).astype(np.float32)
    got = gk.gemm_f32(a, gk.pack_f32(b), out_dtype=out, out_scale=0.1, out_zero_point=3)
    want = refs.requant((a.astype(np.float64) @ b).astype(np.float32), 0.1, 3, out)
    assert np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))) <= 1


def test_bf16_pack_from_f32_rounds_to_nearest_even() -> None:
    b = np.array([[1.0, 1.00390625, 1.01171875, -3.3e38, np.inf]], np.float32)  # ties, overflow-ish, inf
    w = gk.pack_bf16(b)
    np.testing.assert_array_equal(w.unpack(), refs.bf16_to_f32(refs.bf16_round(b)))


def test_bf16_conversions_roundtrip() -> None:
    x = np.random.default_rng(6).standard_normal(1001).astype(np.float32)
    h = gk.to_bf16(x)
    np.testing.assert_array_equal(h, refs.bf16_round(x))
    np.testing.assert_array_equal(gk.from_bf16(h), refs.bf16_to_f32(h))


@pytest.mark.parametrize("M", [1, 2, 3, 6, 7])
@pytest.mark.parametrize("N", [1, 17, 129, 200])
@pytest.mark.parametrize("out", ["f32", "bf16", "u8", "s8"])
def test_small_m_ragged_n(bf16_isa: str, M: int, N: int, out: str) -> None:
    """GEMV-like tiles, full tiles and edge tiles with masked stores; no bias (adds +0)."""
    rng = np.random.default_rng(M * 100 + N)
    K = 77
    a = gk.to_bf16(rng.standard_normal((M, K)).astype(np.float32))
    b = gk.to_bf16(rng.standard_normal((K, N)).astype(np.float32))
    got = gk.gemm_bf16(a, gk.pack_bf16(b), activation="relu", out_dtype=out, out_scale=0.25, out_zero_point=3)
    assert got.shape == (M, N)
    af, bf = refs.bf16_to_f32(a), refs.bf16_to_f32(b)
    if out in ("u8", "s8"):
        want = refs.requant(np.maximum(af.astype(np.float64) @ bf, 0).astype(np.float32), 0.25, 3, out)
        assert np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))) <= 1
    else:
        check(got, af, bf, None, "relu", out)


@pytest.mark.parametrize("M, K, N, act, out", [(211, 3072, 770, "gelu", "f32"), (37, 2049, 33, "relu", "bf16"),
                                               (64, 2300, 100, "none", "u8"), (16, 4100, 48, "gelu_tanh", "f32"),
                                               (128, 256, 1100, "gelu", "f32"), (100, 768, 2304, "none", "f32"),
                                               (1000, 384, 1152, "none", "f32")])
def test_f32_rows_do_not_depend_on_the_call(f32_isa: str, M: int, K: int, N: int, act: str, out: str) -> None:
    """A call's rows are cut into row blocks, panel groups and micro-tiles by its M and the thread count;
    every row must come out with the same bits as in a call of 8 rows, at 1 and 2 threads. (128, 256, 1100)
    and (100, 768, 2304) have short M and several panel groups, where each task also prefetches the next
    group; (1000, 384, 1152) has long M, where at 2 threads each thread takes every group over its own rows."""
    rng = np.random.default_rng(M + K)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    w = gk.pack_f32(b)
    kw = dict(bias=bias, activation=act, out_dtype=out, out_scale=0.5, out_zero_point=3)
    n = _C.get_num_threads()
    try:
        for t in (1, 2):
            _C.set_num_threads(t)
            whole = gk.gemm_f32(a, w, **kw)
            rows = np.concatenate([gk.gemm_f32(np.ascontiguousarray(a[i:i + 8]), w, **kw) for i in range(0, M, 8)])
            np.testing.assert_array_equal(whole.view(np.uint8), rows.view(np.uint8))
    finally:
        _C.set_num_threads(n)
    if out == "f32":
        check(whole, a, b, bias, act, out)
