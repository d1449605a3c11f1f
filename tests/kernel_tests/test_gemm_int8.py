"""int8 GEMM (u8 x s8 -> s32 + fused epilogue) against exact numpy references, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphopt import _C
from graphopt.runtime import kernels as gk

from . import refs
from .conftest import INT8_LEVELS, dense_and_sparse_at_1_and_2_threads, pinned

PROFILE = settings.get_profile("kernels")
# 1, primes and non-multiples of the block sizes (MR=6, 16-column panels, 64-column tiles, k-groups of 4).
DIMS = st.one_of(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 13, 16, 17, 31, 63, 64, 65, 97, 127, 129]),
                 st.integers(1, 150))
ACTS = ["none", "relu", "gelu", "gelu_tanh"]
OUTS = ["s32", "f32", "bf16", "u8", "s8"]


def exact(a: np.ndarray, b: np.ndarray, a_zp: int, w_zp: np.ndarray) -> np.ndarray:
    """sum_k (a - a_zp)(b - w_zp) in int64."""
    return (a.astype(np.int64) - a_zp) @ (b.astype(np.int64) - w_zp.astype(np.int64))


def epilogue_ref(v: np.ndarray, a_scale: float, w_scale: np.ndarray, bias: np.ndarray | None, act: str,
                 out: str, out_scale: float, out_zp: int) -> np.ndarray:
    """The epilogue in the kernel's float32 operation order."""
    if out == "s32":
        return v.astype(np.int32)
    scale = np.float32(a_scale) * w_scale.astype(np.float32)
    y = v.astype(np.int32).astype(np.float32) * scale
    y = y + (bias if bias is not None else np.float32(0))
    y = refs.act(y.astype(np.float32), act).astype(np.float32)
    if out == "f32":
        return y
    if out == "bf16":
        return refs.bf16_round(y)
    return refs.requant(y, out_scale, out_zp, out)


def check_close(got: np.ndarray, want: np.ndarray, act: str, out: str) -> None:
    if act in ("none", "relu"):
        np.testing.assert_array_equal(got, want)
    elif out in ("u8", "s8"):  # GELU approximations can move a value across a rounding boundary
        assert np.max(np.abs(got.astype(np.int32) - want.astype(np.int32)), initial=0) <= 1
    elif out == "bf16":
        np.testing.assert_allclose(refs.bf16_to_f32(got), refs.bf16_to_f32(want), rtol=1e-2, atol=1e-3)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-4)


@PROFILE
@given(M=DIMS, K=DIMS, N=DIMS, a_zp=st.integers(0, 255), per_channel_zp=st.booleans(),
       w_zp=st.integers(-128, 127), seed=st.integers(0, 2**31 - 1), transposed=st.booleans())
def test_s32_bit_exact(int8_isa: str, M: int, K: int, N: int, a_zp: int, per_channel_zp: bool, w_zp: int,
                       seed: int, transposed: bool) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    zps = rng.integers(-128, 128, N).astype(np.int32) if per_channel_zp else np.array([w_zp], np.int32)
    w = pack_maybe_transposed(b, zps, transposed)
    got = gk.gemm_int8(a, w, a_zero_point=a_zp, out_dtype="s32")
    want = exact(a, b, a_zp, np.broadcast_to(zps, (N,)))
    np.testing.assert_array_equal(got, want)


def pack_maybe_transposed(b: np.ndarray, zps: np.ndarray, transposed: bool) -> gk.PackedWeights:
    if transposed:
        return gk.pack_int8(np.ascontiguousarray(b.T), 1.0, zps, transposed=True)
    return gk.pack_int8(b, 1.0, zps)


@PROFILE
@given(M=DIMS, K=st.integers(1, 96), N=DIMS, act=st.sampled_from(ACTS), out=st.sampled_from(OUTS),
       per_channel=st.booleans(), with_bias=st.booleans(), a_zp=st.integers(0, 255),
       out_zp=st.integers(-20, 20), seed=st.integers(0, 2**31 - 1))
def test_epilogues(int8_isa: str, M: int, K: int, N: int, act: str, out: str, per_channel: bool,
                   with_bias: bool, a_zp: int, out_zp: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    w_scale = (rng.random(N if per_channel else 1) * 0.01 + 1e-4).astype(np.float32)
    w_zp = rng.integers(-3, 4, N if per_channel else 1).astype(np.int32)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    a_scale, out_scale = 0.02, 0.05
    if out == "u8":
        out_zp = abs(out_zp) + 100
    w = gk.pack_int8(b, w_scale, w_zp)
    got = gk.gemm_int8(a, w, a_scale=a_scale, a_zero_point=a_zp, bias=bias, activation=act, out_dtype=out,
                      out_scale=out_scale, out_zero_point=out_zp)
    v = exact(a, b, a_zp, np.broadcast_to(w_zp, (N,)))
    want = epilogue_ref(v, a_scale, np.broadcast_to(w_scale, (N,)), bias, act, out, out_scale, out_zp)
    assert got.dtype == want.dtype and got.shape == (M, N)
    check_close(got, want, act, out)


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (1, 3, 1), (6, 4, 64), (7, 5, 65), (2, 511, 129), (13, 259, 130),
                                   (64, 1, 17), (3, 1024, 8)])
def test_ragged_shapes_exact(int8_isa: str, M: int, K: int, N: int) -> None:
    rng = np.random.default_rng(M * 1000 + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    w = gk.pack_int8(b, 1.0, 0)
    np.testing.assert_array_equal(gk.gemm_int8(a, w, out_dtype="s32"), exact(a, b, 0, np.zeros(N, np.int32)))


@pytest.mark.parametrize("a_val,b_val", [(255, -128), (255, 127), (0, -128), (255, 1)])
def test_saturation_extremes(int8_isa: str, a_val: int, b_val: int) -> None:
    """Largest products: vpmaddubsw would saturate s16 here; the kernels must stay exact."""
    M, K, N = 9, 2051, 33
    a = np.full((M, K), a_val, np.uint8)
    b = np.full((K, N), b_val, np.int8)
    w = gk.pack_int8(b, 1.0, 0)
    np.testing.assert_array_equal(gk.gemm_int8(a, w, out_dtype="s32"), exact(a, b, 0, np.zeros(N, np.int32)))
    # and the requantized outputs clamp at the range ends
    got = gk.gemm_int8(a, w, out_dtype="u8", out_scale=1.0)
    assert got.dtype == np.uint8 and np.all(got == (255 if a_val * b_val > 0 else 0))
    got = gk.gemm_int8(a, w, out_dtype="s8", out_scale=1.0)
    assert np.all(got == (127 if a_val * b_val > 0 else (-128 if a_val * b_val < 0 else 0)))


def test_batched_leading_dims(int8_isa: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 3, 40), dtype=np.uint8)
    b = rng.integers(-128, 128, (40, 20), dtype=np.int8)
    got = gk.gemm_int8(a, gk.pack_int8(b), out_dtype="s32")
    assert got.shape == (2, 3, 20)
    np.testing.assert_array_equal(got.reshape(6, 20), exact(a.reshape(6, 40), b, 0, np.zeros(20, np.int32)))


def test_weights_packed_for_another_isa_still_exact() -> None:
    """A PackedWeights keeps its layout; a lower ISA cap falls back to the reference on it."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (11, 70), dtype=np.uint8)
    b = rng.integers(-128, 128, (70, 45), dtype=np.int8)
    want = exact(a, b, 3, np.zeros(45, np.int32))
    for pack_level in INT8_LEVELS:
        for run_level in INT8_LEVELS:
            with_level = pinned(pack_level)
            next(with_level)
            w = gk.pack_int8(b)
            with_level.close()
            run = pinned(run_level)
            next(run)
            try:
                np.testing.assert_array_equal(gk.gemm_int8(a, w, a_zero_point=3, out_dtype="s32"), want)
            finally:
                run.close()


def test_threads_give_identical_results() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (130, 300), dtype=np.uint8)
    b = rng.integers(-128, 128, (300, 200), dtype=np.int8)
    w = gk.pack_int8(b, 0.01, 0)
    n = _C.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            _C.set_num_threads(t)
            outs.append(gk.gemm_int8(a, w, a_scale=0.1, a_zero_point=128, activation="gelu"))
    finally:
        _C.set_num_threads(n)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_packed_weights_object() -> None:
    b = np.arange(-60, 60, dtype=np.int8).reshape(12, 10)
    w = gk.pack_int8(b, np.linspace(0.1, 1, 10), np.arange(10) - 5)
    assert (w.K, w.N, w.dtype) == (12, 10, "s8")
    assert w.per_channel
    np.testing.assert_array_equal(w.unpack(), b.astype(np.float32))
    np.testing.assert_array_equal(w.col_sum, b.astype(np.int32).sum(0))
    np.testing.assert_array_equal(w.zero_point, np.arange(10) - 5)
    assert "K=12" in repr(w)


@pytest.mark.skipif(_C.isa_available() != "amx",
                    reason="CPU/OS without AMX tiles (cpu_features amx_int8 false): the AMX path cannot run here")
def test_amx_path_exact() -> None:
    it = pinned("amx")
    next(it)
    try:
        rng = np.random.default_rng(4)
        for M, Kd, N in [(1, 1, 1), (17, 65, 33), (40, 300, 100)]:
            a = rng.integers(0, 256, (M, Kd), dtype=np.uint8)
            b = rng.integers(-128, 128, (Kd, N), dtype=np.int8)
            w = gk.pack_int8(b, 1.0, 0)
            assert w.isa == "amx"
            np.testing.assert_array_equal(gk.gemm_int8(a, w, a_zero_point=7, out_dtype="s32"),
                                          exact(a, b, 7, np.zeros(N, np.int32)))
    finally:
        it.close()


@pytest.mark.parametrize("M", [1, 2, 3, 4, 6, 7, 12])
@pytest.mark.parametrize("N", [1, 15, 17, 127, 129, 200])
@pytest.mark.parametrize("out", OUTS)
def test_small_m_ragged_n_all_outputs(int8_isa: str, M: int, N: int, out: str) -> None:
    """GEMV-like tiles (1-2 rows x 8 panels), full 6-row tiles and edge tiles, with masked
    stores on the last panel, weight zero points (row sums) and no bias."""
    rng = np.random.default_rng(M * 1000 + N)
    K = 203
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    w_scale = (rng.random(N) * 0.01 + 1e-4).astype(np.float32)
    w_zp = rng.integers(-3, 4, N).astype(np.int32)
    w = gk.pack_int8(b, w_scale, w_zp)
    for act in ("none", "relu"):
        got = gk.gemm_int8(a, w, a_scale=0.02, a_zero_point=131, activation=act, out_dtype=out, out_scale=0.05,
                          out_zero_point=100 if out == "u8" else -5)
        v = exact(a, b, 131, w_zp)
        want = epilogue_ref(v, 0.02, w_scale, None, act, out, 0.05, 100 if out == "u8" else -5)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("M,K,N", [(1, 768, 3072), (1, 3072, 768), (2, 384, 1000), (4, 300, 333), (128, 384, 384),
                                   (37, 129, 515)])
@pytest.mark.parametrize("out", ["s32", "u8"])
def test_two_threads_bit_exact(M: int, K: int, N: int, out: str) -> None:
    """The 2-thread split (N across threads, dynamic hand-over) gives the 1-thread result bit for bit."""
    rng = np.random.default_rng(M + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    w = gk.pack_int8(b, 0.003, 2)
    n = _C.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            _C.set_num_threads(t)
            outs.append([gk.gemm_int8(a, w, a_scale=0.01, a_zero_point=128, activation=act, out_dtype=out,
                                      out_scale=0.1, out_zero_point=128) for act in ("none", "gelu")])
    finally:
        _C.set_num_threads(n)
    for one, two in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(one, two)
    if out == "s32":
        np.testing.assert_array_equal(outs[0][0], exact(a, b, 128, np.full(N, 2, np.int32)))


def row_ref(a: np.ndarray, b: np.ndarray, row_scale: np.ndarray, row_zp: np.ndarray, w_scale: np.ndarray,
            w_zp: np.ndarray, bias: np.ndarray | None, act: str, out: str) -> np.ndarray:
    """Per-row activation grids: row m is epilogue_ref of its own (a_scale, a_zp)."""
    return np.stack([epilogue_ref(exact(a[m:m + 1], b, int(row_zp[m]), w_zp), float(row_scale[m]), w_scale, bias, act,
                                  out, 0.05, 100 if out == "u8" else -5)[0] for m in range(a.shape[0])])


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (2, 7, 17), (6, 64, 64), (7, 203, 129), (13, 259, 130), (25, 96, 200)])
@pytest.mark.parametrize("out", OUTS)
def test_row_grids(int8_isa: str, M: int, K: int, N: int, out: str) -> None:
    """a_row_scale / a_row_zero_point (dynamic per-row quantization) on every ISA path, odd shapes
    (GEMV tiles, full 6-row tiles, edge tiles, masked last panel), weight zero points and bias."""
    rng = np.random.default_rng(M * 1000 + K + N)
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    w_scale = (rng.random(N) * 0.01 + 1e-4).astype(np.float32)
    w_zp = rng.integers(-3, 4, N).astype(np.int32)
    bias = rng.standard_normal(N).astype(np.float32)
    row_scale = (rng.random(M) * 0.05 + 1e-3).astype(np.float32)
    row_zp = rng.integers(0, 256, M).astype(np.int32)
    w = gk.pack_int8(b, w_scale, w_zp)
    for act in ("none", "relu", "gelu"):
        got = gk.gemm_int8(a, w, a_scale=7.0, a_zero_point=3, bias=bias, activation=act, out_dtype=out,
                          out_scale=0.05, out_zero_point=100 if out == "u8" else -5,
                          a_row_scale=row_scale, a_row_zero_point=row_zp)
        want = row_ref(a, b, row_scale, row_zp, w_scale, w_zp, bias, act, out)
        assert got.dtype == want.dtype and got.shape == (M, N)
        check_close(got, want, act, out)


def test_row_grids_threads_and_sparse_bit_exact() -> None:
    """Per-row grids: 1 and 2 threads, and the 4x1-block sparse kernel, give the same bits."""
    rng = np.random.default_rng(11)
    M, K, N = 70, 300, 333
    a = rng.integers(0, 256, (M, K), dtype=np.uint8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    b[rng.random((K, N)) < 0.5] = 0
    row_scale = (rng.random(M) * 0.05 + 1e-3).astype(np.float32)
    row_zp = rng.integers(0, 256, M).astype(np.int32)
    kw = dict(bias=rng.standard_normal(N).astype(np.float32), activation="gelu", a_row_scale=row_scale,
              a_row_zero_point=row_zp)
    outs = dense_and_sparse_at_1_and_2_threads(a, b, **kw)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_row_grids_rejected_when_bad() -> None:
    w = gk.pack_int8(np.ones((8, 4), np.int8))
    a = np.zeros((3, 8), np.uint8)
    with pytest.raises(ValueError, match="come together"):
        gk.gemm_int8(a, w, a_row_scale=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="one entry per row"):
        gk.gemm_int8(a, w, a_row_scale=np.ones(2, np.float32), a_row_zero_point=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="row 1 is outside the u8 range"):
        gk.gemm_int8(a, w, a_row_scale=np.ones(3, np.float32), a_row_zero_point=np.array([0, 256, 0], np.int32))


@pytest.mark.parametrize("isa", INT8_LEVELS + (["amx"] if _C.isa_available() == "amx" else []))
@pytest.mark.parametrize("out_scale", [0.1, 0.3, 1 / 3, 0.7, 0.05, 3e-39])
@pytest.mark.parametrize("out", ["u8", "s8"])
def test_requant_ties_match_division(isa: str, out_scale: float, out: str) -> None:
    """y / out_scale on and next to half-integers rounds exactly as numpy's division does: the AVX-512
    epilogue multiplies by 1 / out_scale and divides only the lanes within a few ulps of a tie
    (quotient_v); a subnormal scale always divides."""
    rng = np.random.default_rng(11)
    M, N = 64, 200
    a = np.zeros((M, 4), np.uint8)
    a[:, 0] = 3 + np.arange(M) % 25
    b = np.zeros((4, N), np.int8)
    b[0] = 1
    w = gk.pack_int8(b, 1.0, 0)
    # y = a + bias lands on (near) multiples of out_scale / 2; random nudges of a few ulps around them.
    base = (np.arange(N) * np.float32(out_scale / 2) - np.float32(30 * out_scale)).astype(np.float32)
    bias = np.nextafter(base, np.where(rng.random(N) < 0.5, -np.inf, np.inf).astype(np.float32))
    bias[::3] = base[::3]
    zp = 5 if out == "u8" else -3
    y = a[:, :1].astype(np.float32) * np.float32(1.0) + bias
    for _ in pinned(isa):
        got = gk.gemm_int8(a, w, bias=bias, out_dtype=out, out_scale=out_scale, out_zero_point=zp)
        with np.errstate(over="ignore"):  # the subnormal scale: y / s overflows to inf, saturating
            np.testing.assert_array_equal(got, refs.requant(y, out_scale, zp, out))


def test_out_argument_writes_in_place_and_checks() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (40, 70), dtype=np.uint8)
    w = gk.pack_int8(rng.integers(-128, 128, (70, 33), dtype=np.int8), 0.01, 0)
    out = np.empty((40, 33), np.uint8)
    got = _C.gemm_s8(a, w, a_scale=0.02, out_dtype="u8", out_scale=0.1, out=out)
    assert got is out
    np.testing.assert_array_equal(out, _C.gemm_s8(a, w, a_scale=0.02, out_dtype="u8", out_scale=0.1))
    for bad in (np.empty((40, 33), np.int8), np.empty((40, 32), np.uint8), np.empty((33, 40), np.uint8).T):
        with pytest.raises(ValueError, match="out: expected a writeable C-contiguous uint8 array of shape"):
            _C.gemm_s8(a, w, out_dtype="u8", out=bad)


@pytest.mark.skipif(_C.isa_selected() != "amx", reason="no AMX tiles on this CPU/OS, or GRAPHOPT_ISA caps below amx")
def test_amx_stage_seconds() -> None:
    w = gk.pack_int8(np.ones((128, 64), np.int8))
    assert _C.amx_stage_seconds(w, 64, "products") > 0 and _C.amx_stage_seconds(w, 64, "stores", 2) > 0
    with pytest.raises(ValueError, match="stage must be"):
        _C.amx_stage_seconds(w, 64, "epilogue")
