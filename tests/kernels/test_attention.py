"""Fused multi-head attention for fp32, bf16 and int8 inputs against numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graphopt.runtime import kernels as gk

from . import refs

PROFILE = settings.get_profile("kernels")


@PROFILE
@given(B=st.integers(1, 3), H=st.integers(1, 4), Sq=st.integers(1, 20), Sk=st.integers(1, 37),
       D=st.sampled_from([1, 3, 8, 16, 17, 64]), dtype=st.sampled_from(["f32", "bf16", "s8"]),
       mask_kind=st.sampled_from(["none", "key", "key4", "full"]), out=st.sampled_from(["f32", "bf16"]),
       seed=st.integers(0, 2**31 - 1))
def test_attention(eltwise_isa: str, B: int, H: int, Sq: int, Sk: int, D: int, dtype: str, mask_kind: str,
                   out: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    qf = rng.standard_normal((B, H, Sq, D)).astype(np.float32)
    kf = rng.standard_normal((B, H, Sk, D)).astype(np.float32)
    vf = rng.standard_normal((B, H, Sk, D)).astype(np.float32)
    scales = {}
    if dtype == "f32":
        q, k, v = qf, kf, vf
        rq, rk, rv = q, k, v
    elif dtype == "bf16":
        q, k, v = gk.to_bf16(qf), gk.to_bf16(kf), gk.to_bf16(vf)
        rq, rk, rv = refs.bf16_to_f32(q), refs.bf16_to_f32(k), refs.bf16_to_f32(v)
    else:
        s = 3.0 / 127
        q, k, v = (np.clip(np.round(t / s), -127, 127).astype(np.int8) for t in (qf, kf, vf))
        scales = {"q_scale": s, "k_scale": s, "v_scale": s}
        rq, rk, rv = (t.astype(np.float64) * s for t in (q, k, v))
    mask = None
    if mask_kind == "key":
        mask = np.where(rng.random((B, Sk)) < 0.3, -1e4, 0).astype(np.float32)
        mask[:, 0] = 0  # a fully -1e4 row is fp32-rounded (ulp(1e4) ~ 1e-3) in any implementation
    elif mask_kind == "key4":
        mask = np.where(rng.random((B, 1, 1, Sk)) < 0.3, -np.inf, 0).astype(np.float32)
        mask[..., 0] = 0  # keep one key visible
    elif mask_kind == "full":
        mask = rng.standard_normal((B, 1, Sq, Sk)).astype(np.float32)
    got = gk.attention(q, k, v, mask, out_dtype=out, **scales)
    want = refs.attention(rq, rk, rv, mask, 1 / np.sqrt(D))
    g = refs.bf16_to_f32(got) if out == "bf16" else got
    tol = 1e-2 if out == "bf16" else 2e-5
    np.testing.assert_allclose(g, want, rtol=tol, atol=tol)
