"""The 4x1-block sparse int8 GEMM: bit-identical to the dense int8 kernel on every ISA path
(every epilogue, zero points, ragged shapes), and it stores only the nonzero blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphopt.runtime import kernels as gk

from .conftest import pinned, settings, supported

PROFILE = settings.get_profile("kernels")
#: the sparse kernel's two paths (scalar, VNNI) and the dense int8 paths it must match at each cap
LEVELS = supported(["scalar", "avx2", "avx512_vnni"])
DIMS = st.one_of(st.sampled_from([1, 3, 4, 5, 15, 16, 17, 33, 64, 127, 129, 130]), st.integers(1, 150))
ACTS = ["none", "relu", "gelu", "gelu_tanh"]
OUTS = ["s32", "f32", "bf16", "u8", "s8"]


@pytest.fixture(params=LEVELS)
def isa(request: pytest.FixtureRequest):
    yield from pinned(request.param)


def block_sparse(rng: np.random.Generator, K: int, N: int, density: float) -> np.ndarray:
    """int8 [K, N] whose 4x1 blocks (4 consecutive k of one column) are nonzero with ``density``."""
    kg = -(-K // 4)
    keep = rng.random((kg, N)) < density
    b = rng.integers(-128, 128, (kg * 4, N), dtype=np.int8)
    b[np.repeat(~keep, 4, axis=0)] = 0
    return np.ascontiguousarray(b[:K])


@PROFILE
@given(M=DIMS, K=DIMS, N=DIMS, density=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]), act=st.sampled_from(ACTS),
       out=st.sampled_from(OUTS), per_channel=st.booleans(), with_bias=st.booleans(), a_zp=st.integers(0, 255),
       w_zp=st.sampled_from([0, 0, 3]), seed=st.integers(0, 2**31 - 1), transposed=st.booleans())
def test_sparse_is_bit_identical_to_dense(isa: str, M: int, K: int, N: int, density: float, act: str, out: str,
                                          per_channel: bool, with_bias: bool, a_zp: int, w_zp: int, seed: int,
                                          transposed: bool) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = block_sparse(rng, K, N, density)
    scale = (rng.random(N if per_channel else 1) * 0.01 + 1e-4).astype(np.float32)
    zp = np.full(N if per_channel else 1, w_zp, np.int32)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    src = np.ascontiguousarray(b.T) if transposed else b
    dense = gk.pack_int8(src, scale, zp, transposed=transposed)
    sparse = gk.pack_int8_sparse(src, scale, zp, transposed=transposed)
    kw = dict(a_scale=0.02, a_zero_point=a_zp, bias=bias, activation=act, out_dtype=out, out_scale=0.05,
              out_zero_point=110 if out == "u8" else 3)
    want = gk.gemm_int8(a, dense, **kw)
    got = gk.gemm_int8(a, sparse, **kw)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))  # bits, NaN included


@pytest.mark.parametrize("M,K,N", [(128, 384, 1536), (128, 1536, 384), (1, 384, 384), (37, 386, 70)])
def test_minilm_shapes_exact_and_compact(isa: str, M: int, K: int, N: int) -> None:
    rng = np.random.default_rng(M + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = block_sparse(rng, K, N, 0.2)
    sparse = gk.pack_int8_sparse(b, 1.0, 0)
    assert sparse.layout == "sparse_4x1"
    assert sparse.nonzero_blocks == int(np.count_nonzero(np.any(b.reshape(-1, 4, N) != 0, axis=1))) \
        if K % 4 == 0 else sparse.nonzero_blocks > 0
    assert sparse.nbytes < 0.5 * K * N
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    np.testing.assert_array_equal(gk.gemm_int8(a, sparse, out_dtype="s32"), want)
    np.testing.assert_array_equal(sparse.unpack(), b)
    assert sparse.isa == ("avx512_vnni" if isa == "avx512_vnni" else "scalar")


def test_extremes_stay_exact(isa: str) -> None:
    M, K, N = 33, 2051, 20
    a = np.full((M, K), 255, np.uint8)
    b = np.full((K, N), -128, np.int8)
    w = gk.pack_int8_sparse(b, 1.0, 0)
    np.testing.assert_array_equal(gk.gemm_int8(a, w, out_dtype="s32"), np.full((M, N), 255 * -128 * K, np.int32))


def test_all_zero_weights_give_the_bias(isa: str) -> None:
    b = np.zeros((64, 48), np.int8)
    bias = np.arange(48, dtype=np.float32)
    a = np.random.default_rng(0).integers(0, 256, (20, 64), dtype=np.uint8)
    w = gk.pack_int8_sparse(b, 0.5, 0)
    assert w.nonzero_blocks == 0
    np.testing.assert_array_equal(gk.gemm_int8(a, w, bias=bias), np.broadcast_to(bias, (20, 48)))
