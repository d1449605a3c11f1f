"""The AMX GEMMs (csrc/kernels/gemm/amx.cpp) on shapes that exercise their blocking: 16- and 32-row
blocks, a last block of 1..31 rows, ragged k-tiles (K not a multiple of 64 / 32) and a single last
panel; int8 exact, bf16 within the fp32 accumulation bound, both the same bits run to run and at 1
and 2 threads. Skipped on CPUs (or OSes) without AMX tiles."""

from __future__ import annotations

import numpy as np
import pytest

from graphopt import _C
from graphopt.runtime import kernels as gk

from . import refs
from .conftest import pinned
from .test_gemm_float import check

pytestmark = pytest.mark.skipif(_C.isa_available() != "amx", reason="no AMX tiles on this CPU/OS")

SHAPES = [(16, 32, 16), (17, 33, 17), (33, 65, 40), (47, 100, 70), (64, 768, 200), (100, 300, 129)]


def _threads(fn):
    n = _C.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 1):
            _C.set_num_threads(t)
            outs.append(fn())
        return outs
    finally:
        _C.set_num_threads(n)


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_amx_int8_exact_and_stable(M: int, K: int, N: int) -> None:
    rng = np.random.default_rng(M + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    zp = rng.integers(-3, 4, N).astype(np.int32)
    w = gk.pack_int8(b, 1.0, zp)
    for _ in pinned("amx"):
        want = (a.astype(np.int64) - 9) @ (b.astype(np.int64) - zp)
        outs = _threads(lambda: gk.gemm_int8(a, w, a_zero_point=9, out_dtype="s32"))
        np.testing.assert_array_equal(outs[0], want)
        gelu = _threads(lambda: gk.gemm_int8(a, w, a_scale=0.01, a_zero_point=9, activation="gelu", out_dtype="u8",
                                             out_scale=0.05, out_zero_point=3))
        for o in gelu[1:]:
            np.testing.assert_array_equal(o, gelu[0])
    for _ in pinned("avx512_vnni"):  # the same epilogue: the same bits as the VNNI kernel, GELU included
        np.testing.assert_array_equal(gelu[0], gk.gemm_int8(a, w, a_scale=0.01, a_zero_point=9, activation="gelu",
                                                            out_dtype="u8", out_scale=0.05, out_zero_point=3))


@pytest.mark.skipif(not _C.cpu_features().get("amx_bf16", False), reason="no AMX-BF16")
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("out", ["f32", "bf16"])
def test_amx_bf16_within_bound_and_stable(M: int, K: int, N: int, out: str) -> None:
    rng = np.random.default_rng(M * 3 + K + N)
    a = gk.to_bf16(rng.standard_normal((M, K)).astype(np.float32))
    b = gk.to_bf16(rng.standard_normal((K, N)).astype(np.float32))
    bias = rng.standard_normal(N).astype(np.float32)
    w = gk.pack_bf16(b)
    for _ in pinned("amx"):
        outs = _threads(lambda: gk.gemm_bf16(a, w, bias=bias, activation="gelu", out_dtype=out))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    check(outs[0], refs.bf16_to_f32(a), refs.bf16_to_f32(b), bias, "gelu", out)


def test_amx_bf16_few_rows_use_the_avx512_bf16_kernel() -> None:
    rng = np.random.default_rng(1)
    a = gk.to_bf16(rng.standard_normal((15, 70)).astype(np.float32))
    w = gk.pack_bf16(rng.standard_normal((70, 33)).astype(np.float32))
    for _ in pinned("amx"):
        got = gk.gemm_bf16(a, w)
    for _ in pinned("avx512_bf16"):
        np.testing.assert_array_equal(got, gk.gemm_bf16(a, w))
