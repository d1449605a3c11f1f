"""The GEMM epilogue's per-column output multiplier (``out_mul``), on every ISA path.

``out_mul`` is a Mul by a per-channel constant folded into the GEMM (SmoothQuant's 1/s before the
next GEMM's quantization): the stored value must be exactly ``act(y) * out_mul[n]`` in float32,
then bf16-rounded or requantized, i.e. the bits of the unfused GEMM followed by the Mul.
"""

from __future__ import annotations

import numpy as np
import pytest

from graphopt.runtime import kernels as gk

from . import refs
from .conftest import BF16_LEVELS, F32_LEVELS, INT8_LEVELS, dense_and_sparse_at_1_and_2_threads, pinned, supported

SHAPES = [(1, 7, 17), (2, 64, 33), (7, 203, 129), (13, 259, 130), (64, 96, 200)]
OUTS = ["f32", "bf16", "u8", "s8"]


def _after(y: np.ndarray, mul: np.ndarray, out: str) -> np.ndarray:
    """The unfused reference: the GEMM's own f32 output, times mul in float32, then stored as ``out``."""
    z = (y * mul).astype(np.float32)
    if out == "f32":
        return z
    if out == "bf16":
        return refs.bf16_round(z)
    return refs.requant(z, 0.05, 100 if out == "u8" else -5, out)


def _kw(out: str) -> dict:
    return dict(out_dtype=out, out_scale=0.05, out_zero_point=100 if out == "u8" else -5)


@pytest.mark.parametrize("level", INT8_LEVELS + supported(["amx"]))
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_int8_out_mul_is_the_unfused_mul(level: str, M: int, K: int, N: int) -> None:
    rng = np.random.default_rng(M * 7 + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    bias = rng.standard_normal(N).astype(np.float32)
    mul = (rng.random(N) * 3 + 0.05).astype(np.float32)
    w = gk.pack_int8(b, (rng.random(N) * 0.01 + 1e-4).astype(np.float32), rng.integers(-3, 4, N).astype(np.int32))
    for _ in pinned(level):
        for act in ("none", "gelu"):
            base = dict(a_scale=0.02, a_zero_point=3, bias=bias, activation=act)
            y = gk.gemm_int8(a, w, **base)
            for out in OUTS:
                got = gk.gemm_int8(a, w, **base, **_kw(out), out_mul=mul)
                np.testing.assert_array_equal(got, _after(y, mul, out), err_msg=f"{level} {act} {out}")


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_float_out_mul_is_the_unfused_mul(M: int, K: int, N: int) -> None:
    rng = np.random.default_rng(M + K * 3 + N)
    a = rng.standard_normal((M, K)).astype(np.float32)
    wf = rng.standard_normal((K, N)).astype(np.float32) * 0.1
    bias = rng.standard_normal(N).astype(np.float32)
    mul = (rng.random(N) * 3 + 0.05).astype(np.float32)
    for levels, pack, gemm, conv in ((F32_LEVELS, gk.pack_f32, gk.gemm_f32, lambda x: x),
                                     (BF16_LEVELS + supported(["amx"]), gk.pack_bf16, gk.gemm_bf16, gk.to_bf16)):
        w = pack(wf)
        for level in levels:
            for _ in pinned(level):
                y = gemm(conv(a), w, bias=bias, activation="gelu")
                for out in OUTS:
                    got = gemm(conv(a), w, bias=bias, activation="gelu", **_kw(out), out_mul=mul)
                    np.testing.assert_array_equal(got, _after(y, mul, out), err_msg=f"{level} {out}")


def test_out_mul_threads_and_sparse_bit_exact() -> None:
    rng = np.random.default_rng(5)
    M, K, N = 70, 300, 333
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    b[rng.random((K, N)) < 0.6] = 0
    kw = dict(bias=rng.standard_normal(N).astype(np.float32), activation="gelu", out_dtype="u8", out_scale=0.05,
              out_zero_point=7, out_mul=(rng.random(N) + 0.5).astype(np.float32))
    outs = dense_and_sparse_at_1_and_2_threads(a, b, **kw)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_out_mul_rejected_when_bad() -> None:
    w = gk.pack_int8(np.ones((8, 4), np.int8))
    a = np.zeros((3, 8), np.uint8)
    with pytest.raises(ValueError, match="out_mul of shape"):
        gk.gemm_int8(a, w, out_mul=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="not s32"):
        gk.gemm_int8(a, w, out_dtype="s32", out_mul=np.ones(4, np.float32))
