import math

import numpy as np
import pytest

from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_attention import FuseAttention
from graphopt.testing.asserts import assert_op_counts

B, S, H, N = 2, 6, 16, 4
D = H // N


def _text(*, k_two_transposes=False, scale="sc = Mul(s, scale)", mask=True, mask_shape=f"{B}, 1, {S}, {S}",
          heads_input=False, masked_fill=False):
    kt = ("kr2 = Transpose<perm=[0, 2, 1, 3]>(kr)\n kt = Transpose<perm=[0, 1, 3, 2]>(kr2)" if k_two_transposes
          else "kt = Transpose<perm=[0, 2, 3, 1]>(kr)")
    masked = "am = Where(mask, fill, sc)" if masked_fill else "am = Add(sc, mask)"
    if not mask:
        scale, masked = scale.replace("sc =", "am ="), ""
    extra = f", {'bool' if masked_fill else 'float'}[{mask_shape}] mask" if mask else ""
    extra += ", int64[4] hs" if heads_input else ""
    body = f"""
 q0 = MatMul(x, wq)
 qb = Add(bq, q0)
 qr = Reshape(qb, hs)
 qt = Transpose<perm=[0, 2, 1, 3]>(qr)
 k0 = MatMul(x, wk)
 kb = Add(bk, k0)
 kr = Reshape(kb, hs)
 {kt}
 v0 = MatMul(x, wv)
 vb = Add(bv, v0)
 vr = Reshape(vb, hs)
 vt = Transpose<perm=[0, 2, 1, 3]>(vr)
 s = MatMul(qt, kt)
 {scale}
 {masked}
 p = Softmax<axis=-1>(am)
 c = MatMul(p, vt)
 ct = Transpose<perm=[0, 2, 1, 3]>(c)
 y = Reshape(ct, os)
"""
    return (f'<ir_version: 8, opset_import: ["" : 17]>\n'
            f"g (float[{B}, {S}, {H}] x{extra}) => (float[{B}, {S}, {H}] y) {{{body}}}")


def _inits(wv_width=H, scale=1 / math.sqrt(D), heads=True):
    d = {"wq": f32(H, H, scale=0.4), "wk": f32(H, H, scale=0.4), "wv": f32(H, wv_width, scale=0.4),
         "bq": f32(H, scale=0.1), "bk": f32(H, scale=0.1), "bv": f32(wv_width, scale=0.1),
         "scale": np.array(scale, np.float32), "inv": np.array(1 / scale, np.float32),
         "os": np.array([0, 0, H], np.int64), "fill": np.array(np.finfo(np.float32).min, np.float32)}
    if heads:
        d["hs"] = np.array([0, 0, N, D], np.int64)
    return d


def _feeds(mask=True):
    feeds = {"x": f32(B, S, H)}
    if mask:
        m = np.zeros((B, 1, S, S), np.float32)
        m[1, :, :, 4:] = np.finfo(np.float32).min
        feeds["mask"] = m
    return feeds


@pytest.mark.parametrize("variant", ["mask", "no_mask", "k_two_transposes", "div_scale", "custom_scale"])
def test_fused(variant):
    kw, inits = {}, _inits()
    if variant == "no_mask":
        kw["mask"] = False
    if variant == "k_two_transposes":
        kw["k_two_transposes"] = True
    if variant == "div_scale":
        kw["scale"] = "sc = Div(s, inv)"
    if variant == "custom_scale":
        inits = _inits(scale=0.3)
    after, stats = fuse(_text(**kw), "fuse-attention", _feeds(kw.get("mask", True)), inits, atol=2e-5, rtol=1e-4)
    assert stats == {"fuse-attention": 1}
    assert_op_counts(after, graphopt__MultiHeadAttention=1, MatMul=0, Softmax=0, Transpose=0, Reshape=0)
    mha = [n for n in after.graph if n.op_type == "MultiHeadAttention"][0]
    assert mha.attr("num_heads") == N
    assert mha.attr("scale") == (pytest.approx(0.3) if variant == "custom_scale" else 0.0)
    assert mha.inputs[1].shape == (H, 3 * H)


def test_v_projection_of_other_width():
    assert_not_fused(_text(), "fuse-attention", FuseAttention(), "different shapes",
                     {**_inits(wv_width=8), "hs": np.array([0, 0, N, D], np.int64)})


def test_head_size_unknown():
    inits = _inits(heads=False)
    assert_not_fused(_text(heads_input=True), "fuse-attention", FuseAttention(), "head size is unknown", inits)


def test_mask_not_4d():
    assert_not_fused(_text(mask_shape=f"{S}, {S}"), "fuse-attention", FuseAttention(), "not a 4-D tensor",
                     _inits())


def test_negative_scale():
    assert_not_fused(_text(), "fuse-attention", FuseAttention(), "not a positive scalar", _inits(scale=-0.5))


def test_head_reshape_that_mixes_batch_and_sequence():
    inits = {**_inits(), "hs": np.array([S, B, N, D], np.int64)}
    assert_not_fused(_text(), "fuse-attention", FuseAttention(), "keep [batch, seq]", inits)


@pytest.mark.parametrize("fill", [float(np.finfo(np.float32).min), -np.inf])
def test_masked_fill(fill):
    mask = np.zeros((B, 1, 1, S), bool)
    mask[1, ..., 4:] = True
    inits = {**_inits(), "fill": np.array(fill, np.float32)}
    after, stats = fuse(_text(masked_fill=True, mask_shape=f"{B}, 1, 1, {S}"), "fuse-attention",
                        {"x": f32(B, S, H), "mask": mask}, inits, atol=2e-5, rtol=1e-4)
    assert stats == {"fuse-attention": 1}
    assert_op_counts(after, graphopt__MultiHeadAttention=1, Where=1, Softmax=0)


def test_masked_fill_with_small_value():
    inits = {**_inits(), "fill": np.array(-100.0, np.float32)}
    assert_not_fused(_text(masked_fill=True, mask_shape=f"{B}, 1, 1, {S}"), "fuse-attention", FuseAttention(),
                     "masked_fill value", inits)


def test_output_not_merged_back():
    inits = {**_inits(), "os": np.array([0, 0, 2, 8], np.int64)}
    text = _text().replace(f"=> (float[{B}, {S}, {H}] y)", f"=> (float[{B}, {S}, 2, 8] y)")
    assert_not_fused(text, "fuse-attention", FuseAttention(), "output Reshape does not give", inits)
