"""fuse-rmsnorm, fuse-silu-mlp, fuse-rotary on small graphs: each exporter variant fuses, the
fused graph matches the original in onnxruntime (through the onnxruntime lowering and the
standard-ONNX decomposition) and on the native runtime at every kernel ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from fusion_testlib import assert_not_fused, f32, fuse, load

import graphopt
from graphopt import _C
from graphopt.passes.fusion.fuse_rmsnorm import FuseRMSNorm
from graphopt.passes.fusion.fuse_rotary import FuseRotary
from graphopt.passes.fusion.fuse_silu_mlp import FuseGatedSiluMlp
from graphopt.testing.asserts import assert_op_counts, run_onnxruntime

H = 48  # not a multiple of 16: the AVX-512 kernels' masked tails run
LEVELS = [lv for lv in ("scalar", "avx512") if ["scalar", "avx2", "avx512"].index(lv) <=
          ["scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"].index(_C.isa_available())]


def _native_matches(text: str, passes: tuple[str, ...], feeds: dict, inits: dict, atol: float = 1e-5) -> None:
    """The fused model compiled natively (each ISA level) matches onnxruntime on the original model."""
    want = run_onnxruntime(load(text, inits), feeds)
    m = load(text, inits)
    from fusion_testlib import run_pass

    for p in passes:
        run_pass(m, p)
    before = _C.isa_selected()
    try:
        for lv in LEVELS:
            _C.set_max_isa(lv)
            got = graphopt.compile(m).run(feeds)
            for i, (w, g) in enumerate(zip(want, got)):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=atol, err_msg=f"output {i} at {lv}")
    finally:
        _C.set_max_isa(before)


# --- RMSNorm -----------------------------------------------------------------

def _rms_text(body: str, opset: int = 18, outs: str = f"float[2, 5, {H}] y", extra_in: str = "") -> str:
    return (f'<ir_version: 9, opset_import: ["" : {opset}]>\n'
            f"g (float[2, 5, {H}] x{extra_in}) => ({outs}) {{\n{body}\n}}")


_RMS_CONSTS = ("two = Constant<value = float {2.0}>()\n eps = Constant<value = float {1e-6}>()\n"
               " one = Constant<value = float {1.0}>()\n axes = Constant<value = int64[1] {-1}>()\n")
RMS_TS = _RMS_CONSTS + (" p = Pow(x, two)\n ms = ReduceMean<keepdims=1>(p, axes)\n a = Add(ms, eps)\n"
                        " s = Sqrt(a)\n r = Div(one, s)\n n = Mul(x, r)\n y = Mul(w, n)")
RMS_DYNAMO = _RMS_CONSTS + (" p = Pow(x, two)\n ms = ReduceMean<keepdims=1>(p, axes)\n a = Add(ms, eps)\n"
                            " s = Sqrt(a)\n r = Reciprocal(s)\n n = Mul(x, r)\n y = Mul(w, n)")
RMS_DIV = _RMS_CONSTS + (" p = Mul(x, x)\n ms = ReduceMean<keepdims=1>(p, axes)\n a = Add(eps, ms)\n"
                         " s = Sqrt(a)\n n = Div(x, s)\n y = Mul(n, w)")
RMS_OPSET13 = _RMS_CONSTS + (" p = Pow(x, two)\n ms = ReduceMean<axes=[-1], keepdims=1>(p)\n a = Add(ms, eps)\n"
                             " s = Sqrt(a)\n r = Reciprocal(s)\n n = Mul(x, r)\n y = Mul(w, n)")
RMS_INITS = {"w": f32(H)}
X = {"x": f32(2, 5, H, scale=3.0)}


@pytest.mark.parametrize("body,opset", [(RMS_TS, 18), (RMS_DYNAMO, 18), (RMS_DIV, 18), (RMS_OPSET13, 13)],
                         ids=["torchscript", "dynamo", "div-mulxx", "opset13"])
def test_rmsnorm_variants(body, opset):
    after, stats = fuse(_rms_text(body, opset), "fuse-rmsnorm", X, RMS_INITS)
    assert stats == {"fuse-rmsnorm": 1}
    assert_op_counts(after, graphopt__RMSNorm=1, Pow=0, ReduceMean=0, Sqrt=0, Mul=0)
    _native_matches(_rms_text(body, opset), ("fuse-rmsnorm",), X, RMS_INITS)


def test_rmsnorm_cast_pair_reads_the_uncast_input():
    body = (_RMS_CONSTS + " xf = Cast<to=1>(x16)\n p = Pow(xf, two)\n ms = ReduceMean<keepdims=1>(p, axes)\n"
            " a = Add(ms, eps)\n s = Sqrt(a)\n r = Reciprocal(s)\n n = Mul(xf, r)\n n16 = Cast<to=10>(n)\n"
            " y = Mul(w16, n16)")
    text = (f'<ir_version: 9, opset_import: ["" : 18]>\n'
            f"g (float16[2, 5, {H}] x16) => (float16[2, 5, {H}] y) {{\n{body}\n}}")
    m = load(text, {"w16": f32(H).astype(np.float16)})
    from fusion_testlib import run_pass

    assert run_pass(m, "fuse-rmsnorm") == {"fuse-rmsnorm": 1}
    rms = [n for n in m.graph if n.op_type == "RMSNorm"][0]
    assert rms.inputs[0].name == "x16" and rms.inputs[1].dtype == graphopt.DType.FLOAT16
    assert_op_counts(m, Cast=0, Pow=0)
    feeds = {"x16": f32(2, 5, H).astype(np.float16)}
    want = run_onnxruntime(load(text, {"w16": rms.inputs[1].const}), feeds)[0].astype(np.float32)
    got = graphopt.ops.reference("RMSNorm", [feeds["x16"], rms.inputs[1].const], epsilon=1e-6)[0]
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_onnx_rmsnormalization_opset23():
    text = _rms_text(" y = RMSNormalization<axis=-1, epsilon=1e-5>(x, w)", opset=23)
    after, stats = fuse(text, "fuse-rmsnorm", X, RMS_INITS)
    assert_op_counts(after, graphopt__RMSNorm=1, RMSNormalization=0)


def test_rmsnorm_not_last_axis():
    body = RMS_TS.replace("int64[1] {-1}", "int64[1] {1}")
    assert_not_fused(_rms_text(body), "fuse-rmsnorm", FuseRMSNorm(), "does not reduce only the last axis", RMS_INITS)


def test_skip_rmsnorm_sum_output_feeds_the_residual_stream():
    # a pre-norm decoder block: h = x + r; y = RMSNorm(h) * w; z = h + y (the next residual Add)
    body = ("h = Add(x, r)\n" + RMS_DYNAMO.replace("(x, two)", "(h, two)").replace("Mul(x, r)", "Mul(h, rr)")
            .replace("r = Reciprocal(s)", "rr = Reciprocal(s)") + "\n z = Add(h, y)")
    text = _rms_text(body, outs=f"float[2, 5, {H}] y, float[2, 5, {H}] z", extra_in=f", float[2, 5, {H}] r")
    feeds = {"x": f32(2, 5, H), "r": f32(2, 5, H, scale=2.0)}
    after, stats = fuse(text, "fuse-rmsnorm", feeds, RMS_INITS)
    assert stats == {"fuse-rmsnorm": 1, "fuse-skip-rmsnorm": 1}
    assert_op_counts(after, graphopt__SkipRMSNorm=1, graphopt__RMSNorm=0, Add=1)
    add = [n for n in after.graph if n.op_type == "Add"][0]
    assert any(v.producer().op_type == "SkipRMSNorm" and v.index() == 1 for v in add.inputs)
    _native_matches(text, ("fuse-rmsnorm",), feeds, RMS_INITS)


def test_skip_rmsnorm_sum_unused():
    body = "h = Add(x, r)\n" + RMS_TS.replace("(x, two)", "(h, two)").replace("Mul(x, r)", "Mul(h, rr)") \
        .replace("r = Div(one, s)", "rr = Div(one, s)")
    text = _rms_text(body, extra_in=f", float[2, 5, {H}] r")
    feeds = {"x": f32(2, 5, H), "r": f32(2, 5, H)}
    after, _ = fuse(text, "fuse-rmsnorm", feeds, RMS_INITS)
    assert_op_counts(after, graphopt__SkipRMSNorm=1, Add=0)
    _native_matches(text, ("fuse-rmsnorm",), feeds, RMS_INITS)


# --- SiLU and the gated MLP ----------------------------------------------------

I = 40
MLP_INITS = {"wg": f32(H, I, scale=0.2), "wu": f32(H, I, scale=0.2), "wd": f32(I, H, scale=0.2),
             "bg": f32(I), "bu": f32(I)}


def _mlp_text(body: str) -> str:
    return (f'<ir_version: 9, opset_import: ["" : 18]>\n'
            f"g (float[2, 5, {H}] x) => (float[2, 5, {H}] y) {{\n{body}\n}}")


MLP = "g = MatMul(x, wg)\n sg = Sigmoid(g)\n a = Mul(g, sg)\n u = MatMul(x, wu)\n m = Mul(a, u)\n y = MatMul(m, wd)"
MLP_BIAS = ("g0 = MatMul(x, wg)\n g = Add(g0, bg)\n sg = Sigmoid(g)\n a = Mul(sg, g)\n u0 = MatMul(x, wu)\n"
            " u = Add(bu, u0)\n m = Mul(u, a)\n y = MatMul(m, wd)")


@pytest.mark.parametrize("body", [MLP, MLP_BIAS], ids=["no-bias", "bias"])
def test_gated_mlp_packs_gate_and_up(body):
    after, stats = fuse(_mlp_text(body), "fuse-silu-mlp", X, MLP_INITS)
    assert stats["fuse-silu-gated-mlp"] == 1  # (the SiLU may fuse first; the MLP rule then reads graphopt::Silu)
    assert_op_counts(after, graphopt__SiluMul=1, MatMul=2, Sigmoid=0, Mul=0)
    packed = [n for n in after.graph if n.op_type == "MatMul" and n.inputs[0].name == "x"][0]
    assert packed.inputs[1].const.shape == (H, 2 * I)
    _native_matches(_mlp_text(body), ("fuse-silu-mlp",), X, MLP_INITS)


def test_gated_mlp_packs_int8_weights_of_a_qdq_model():
    rng = np.random.default_rng(1)
    inits = {"qg": rng.integers(-127, 128, (H, I)).astype(np.int8), "qu": rng.integers(-127, 128, (H, I)).astype(np.int8),
             "scg": (rng.random(I) * 0.01 + 1e-3).astype(np.float32), "scu": np.float32(0.004),
             "zu": np.int8(0), "wd": f32(I, H, scale=0.2)}
    body = ("wg = DequantizeLinear<axis=1>(qg, scg)\n wu = DequantizeLinear(qu, scu, zu)\n" + MLP)
    after, stats = fuse(_mlp_text(body), "fuse-silu-mlp", X, inits)
    assert stats["fuse-silu-gated-mlp"] == 1
    assert_op_counts(after, graphopt__SiluMul=1, MatMul=2, DequantizeLinear=1)
    dq = [n for n in after.graph if n.op_type == "DequantizeLinear"][0]
    assert dq.inputs[0].const.shape == (H, 2 * I) and dq.inputs[1].const.shape == (2 * I,)
    _native_matches(_mlp_text(body), ("fuse-silu-mlp",), X, inits, atol=1e-4)


def test_plain_silu():
    after, stats = fuse(_mlp_text("s = Sigmoid(x)\n y = Mul(s, x)"), "fuse-silu-mlp", X, {})
    assert stats == {"fuse-silu": 1}
    assert_op_counts(after, graphopt__Silu=1, Sigmoid=0, Mul=0)
    _native_matches(_mlp_text("s = Sigmoid(x)\n y = Mul(s, x)"), ("fuse-silu-mlp",), X, {})


def test_gated_mlp_different_widths_not_fused():
    inits = dict(MLP_INITS, wu=f32(H, I + 8), wd=f32(I, H))
    body = MLP.replace("m = Mul(a, u)", "us = Slice(u, st, en, ax)\n m = Mul(a, us)")
    body = f"st = Constant<value = int64[1] {{0}}>()\n en = Constant<value = int64[1] {{{I}}}>()\n" \
           " ax = Constant<value = int64[1] {-1}>()\n " + body
    m = load(_mlp_text(body), inits)
    graphopt.infer_shapes(m)
    from graphopt.pattern import explain

    assert explain(FuseGatedSiluMlp(), m).matches == 0


# --- rotary --------------------------------------------------------------------

D = 16


def _rot_text(lo: tuple[int, int] = (0, D // 2), hi: tuple[int, int] = (D // 2, 9223372036854775807)) -> str:
    return (f'<ir_version: 9, opset_import: ["" : 18]>\n'
            f"g (float[2, 3, 7, {D}] q, float[1, 1, 7, {D}] cos, float[1, 1, 7, {D}] sin)"
            f" => (float[2, 3, 7, {D}] y) {{\n"
            f" s0 = Constant<value = int64[1] {{{lo[0]}}}>()\n e0 = Constant<value = int64[1] {{{lo[1]}}}>()\n"
            f" s1 = Constant<value = int64[1] {{{hi[0]}}}>()\n e1 = Constant<value = int64[1] {{{hi[1]}}}>()\n"
            " ax = Constant<value = int64[1] {3}>()\n st = Constant<value = int64[1] {1}>()\n"
            " x1 = Slice(q, s0, e0, ax, st)\n x2 = Slice(q, s1, e1, ax, st)\n n = Neg(x2)\n"
            " r = Concat<axis=-1>(n, x1)\n a = Mul(q, cos)\n b = Mul(r, sin)\n y = Add(a, b)\n}")


def _rot_feeds() -> dict:
    ang = np.arange(7)[:, None] * (1.0 / 10000 ** (np.arange(D // 2) * 2 / D))[None, :]
    emb = np.concatenate([ang, ang], -1)[None, None].astype(np.float32)
    return {"q": f32(2, 3, 7, D), "cos": np.cos(emb), "sin": np.sin(emb)}


def test_rotary_rotate_half():
    after, stats = fuse(_rot_text(), "fuse-rotary", _rot_feeds(), {})
    assert stats == {"fuse-rotary": 1}
    assert_op_counts(after, graphopt__RotaryEmbedding=1, Slice=0, Neg=0, Concat=0, Mul=0, Add=0)
    _native_matches(_rot_text(), ("fuse-rotary",), _rot_feeds(), {})


def test_rotary_per_batch_cos_broadcast_over_heads():
    text = _rot_text().replace(f"float[1, 1, 7, {D}] cos, float[1, 1, 7, {D}] sin",
                               f"float[2, 1, 7, {D}] cos, float[2, 1, 7, {D}] sin")
    f = _rot_feeds()
    f["cos"], f["sin"] = np.concatenate([f["cos"], f["cos"][..., ::-1]]), np.concatenate([f["sin"], -f["sin"]])
    fuse(text, "fuse-rotary", f, {})
    _native_matches(text, ("fuse-rotary",), f, {})


def test_rotary_wrong_halves_not_fused():
    assert_not_fused(_rot_text(lo=(0, 4)), "fuse-rotary", FuseRotary(), "is not [0:8]", {})


def test_rotary_that_broadcasts_x_up_not_fused():
    text = _rot_text().replace("float[2, 3, 7, 16] q", "float[2, 3, 1, 16] q")
    assert_not_fused(text, "fuse-rotary", FuseRotary(), "may broadcast x", {})
