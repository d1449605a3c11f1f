"""Fused multi-head attention for fp32, bf16 and int8 inputs against numpy.

Every ISA path of the kernel (scalar, AVX2, AVX-512 fp32 products, AVX512-BF16 products),
each mask broadcast form, strided views (heads side by side, packed QKV, K/V shared by the
heads, a strided output), odd sizes around the 16/32-wide blocks, and 1 vs 2 threads.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphopt import _C
from graphopt.runtime import kernels as gk

from . import refs

PROFILE = settings.get_profile("kernels")

SIZES = st.one_of(st.sampled_from([1, 7, 16, 17, 31, 32, 33, 64, 127]), st.integers(1, 80))
MASKS = ["none", "key2", "key4", "shared", "full", "full1", "pad", "inf_row"]
LAYOUTS = ["dense", "bshd", "packed", "shared_kv", "out_view"]


@pytest.fixture
def threads() -> Iterator[None]:
    before = _C.get_num_threads()
    yield
    _C.set_num_threads(before)


def _make_mask(kind: str, rng: np.random.Generator, B: int, Sq: int, Sk: int) -> np.ndarray | None:
    """An additive mask of one broadcast form; every query keeps at least one finite key
    except in "inf_row", where some queries see only -inf (their output must be zero)."""
    if kind == "none":
        return None
    if kind == "key2":  # [B, Sk]
        m = np.where(rng.random((B, Sk)) < 0.3, -1e4, 0).astype(np.float32)
        m[:, 0] = 0
        return m
    if kind == "key4":  # [B, 1, 1, Sk]
        m = np.where(rng.random((B, 1, 1, Sk)) < 0.3, -np.inf, 0).astype(np.float32)
        m[..., 0] = 0
        return m
    if kind == "shared":  # [1, 1, 1, Sk]
        m = np.where(rng.random((1, 1, 1, Sk)) < 0.3, -1e4, 0).astype(np.float32)
        m[..., -1] = 0
        return m
    if kind == "full":  # [B, 1, Sq, Sk]
        return rng.standard_normal((B, 1, Sq, Sk)).astype(np.float32)
    if kind == "full1":  # [1, 1, Sq, Sk]
        return rng.standard_normal((1, 1, Sq, Sk)).astype(np.float32)
    if kind == "pad":  # trailing padding of a different length per batch row (skipped keys)
        m = np.zeros((B, 1, 1, Sk), np.float32)
        for b in range(B):
            m[b, ..., int(rng.integers(1, Sk + 1)):] = -1e4
        return m
    # "inf_row": a causal-style [B, 1, Sq, Sk] mask with some rows entirely -inf
    m = np.where(rng.random((B, 1, Sq, Sk)) < 0.5, -np.inf, 0).astype(np.float32)
    m[..., 0] = 0
    m[:, :, rng.random(Sq) < 0.3, :] = -np.inf
    return m


def _layout(layout: str, q: np.ndarray, k: np.ndarray,
            v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same [B, H, S, D] values as strided views of the layouts the runtime reads in place."""
    B, H, Sq, D = q.shape
    if layout == "bshd":  # [B, S, H*D] activations, heads side by side
        return tuple(np.ascontiguousarray(t.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for t in (q, k, v))
    if layout == "packed" and k.shape[2] == Sq:  # one [B, S, 3, H, D] QKV projection
        qkv = np.ascontiguousarray(np.stack([q, k, v], axis=2).transpose(0, 3, 2, 1, 4))
        return tuple(qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    if layout == "shared_kv":  # one K/V head for all query heads (head stride 0)
        return q, np.broadcast_to(k[:, :1], k.shape), np.broadcast_to(v[:, :1], v.shape)
    return q, k, v


def _reference(rq: np.ndarray, rk: np.ndarray, rv: np.ndarray, mask: np.ndarray | None,
               scale: float) -> np.ndarray:
    """numpy attention; queries whose keys are all -inf are defined to give zeros."""
    if mask is None or mask.ndim != 4:
        return refs.attention(rq, rk, rv, mask, scale)
    dead = np.all(np.isneginf(mask), axis=-1, keepdims=True)  # [b, 1, q, 1]
    want = refs.attention(rq, rk, rv, np.where(dead, 0, mask).astype(np.float32), scale)
    return np.where(dead, 0.0, want)


@PROFILE
@given(B=st.integers(1, 3), H=st.integers(1, 3), Sq=SIZES, Sk=SIZES, D=SIZES,
       dtype=st.sampled_from(["f32", "bf16", "s8", "f32_bf16"]), mask_kind=st.sampled_from(MASKS),
       layout=st.sampled_from(LAYOUTS), out=st.sampled_from(["f32", "bf16"]), nthreads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**31 - 1))
def test_attention(bf16_isa: str, threads: None, B: int, H: int, Sq: int, Sk: int, D: int, dtype: str,
                   mask_kind: str, layout: str, out: str, nthreads: int, seed: int) -> None:
    _C.set_num_threads(nthreads)
    rng = np.random.default_rng(seed)
    if layout == "packed":
        Sk = Sq
    qf = rng.standard_normal((B, H, Sq, D)).astype(np.float32)
    kf = rng.standard_normal((B, H, Sk, D)).astype(np.float32)
    vf = rng.standard_normal((B, H, Sk, D)).astype(np.float32)
    if layout == "shared_kv":
        kf[:, 1:], vf[:, 1:] = kf[:, :1], vf[:, :1]
    kw: dict[str, object] = {}
    if dtype in ("f32", "f32_bf16"):
        q, k, v = qf, kf, vf
        kw["bf16_compute"] = dtype == "f32_bf16"
        # bf16_compute rounds the inputs where the CPU has bf16 products; elsewhere it runs in fp32
        rounded = dtype == "f32_bf16" and bf16_isa == "avx512_bf16"
        rq, rk, rv = (refs.bf16_to_f32(gk.to_bf16(t)) for t in (q, k, v)) if rounded else (q, k, v)
    elif dtype == "bf16":
        q, k, v = gk.to_bf16(qf), gk.to_bf16(kf), gk.to_bf16(vf)
        rq, rk, rv = refs.bf16_to_f32(q), refs.bf16_to_f32(k), refs.bf16_to_f32(v)
    else:
        s = 3.0 / 127
        q, k, v = (np.clip(np.round(t / s), -127, 127).astype(np.int8) for t in (qf, kf, vf))
        kw.update(q_scale=s, k_scale=s, v_scale=s)
        rq, rk, rv = (t.astype(np.float64) * s for t in (q, k, v))
    q, k, v = _layout(layout, q, k, v)
    mask = _make_mask(mask_kind, rng, B, Sq, Sk)
    if layout == "out_view":  # write into the [B, S, H, D] rows of a larger buffer, in place
        buf = np.full((B, Sq, H, D + 3), 7, np.uint16 if out == "bf16" else np.float32)
        kw["out"] = buf[..., 1:D + 1].transpose(0, 2, 1, 3)
    else:
        kw["out_dtype"] = out
    got = gk.attention(q, k, v, mask, **kw)
    if layout == "out_view":
        assert got is kw["out"]
        assert np.all(buf[..., 0] == 7) and np.all(buf[..., D + 1:] == 7)
    want = _reference(rq, rk, rv, mask, 1 / np.sqrt(D))
    g = refs.bf16_to_f32(got) if out == "bf16" else got
    # bf16 products round the probabilities to bf16 (8 bits), the rest is fp32.
    bf16_products = dtype != "f32" and bf16_isa == "avx512_bf16"
    tol = 1e-2 if out == "bf16" or bf16_products else 2e-5
    np.testing.assert_allclose(g, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("D", [32, 64])
def test_attention_threads_agree(bf16_isa: str, threads: None, D: int) -> None:
    """The task split changes with the thread count; each task computes its rows alone, so
    1 and 2 threads give identical bits."""
    rng = np.random.default_rng(D)
    q, k, v = (rng.standard_normal((1, 3, 100, D)).astype(np.float32) for _ in range(3))
    mask = np.zeros((1, 1, 1, 100), np.float32)
    mask[..., 90:] = -1e4
    res = []
    for n in (1, 2):
        _C.set_num_threads(n)
        res.append(gk.attention(q, k, v, mask, bf16_compute=True))
    np.testing.assert_array_equal(res[0], res[1])


def test_attention_bad_views() -> None:
    q = np.zeros((1, 2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"last dimension of shape \(1, 2, 3, 4\) must be contiguous"):
        gk.attention(q, np.asfortranarray(q), q)
    with pytest.raises(ValueError, match=r"out of shape \(1, 2, 3, 5\) must match q \(1, 2, 3, 4\)"):
        gk.attention(q, q, q, out=np.zeros((1, 2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="q, k, v must share one dtype"):
        gk.attention(q, q.astype(np.int8), q)
    with pytest.raises(ValueError, match=r"k: rows of shape \(1, 2, 3, 4\) overlap"):
        gk.attention(q, np.broadcast_to(q[:, :, :1], q.shape), q)
