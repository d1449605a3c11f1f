"""fuse-attention-mask: the additive padding mask computed from a 2-D attention_mask."""

import numpy as np

from fusion_testlib import f32, fuse, load, run_pass
from graphopt.passes.fusion.fuse_attention_mask import padding_mask_source
from graphopt.testing.asserts import assert_op_counts
from test_fuse_attention import B, S, _inits, _text

# transformers 4.x: (1 - mask[:, None, None, :].float()) * -10000
MASK_4X = """
 ax = Constant<value = int64[2] {1, 2}>()
 mu = Unsqueeze(am2d, ax)
 mf = Cast<to=1>(mu)
 one = Constant<value = float {1.0}>()
 keep0 = Sub(one, mf)
 big = Constant<value = float {-10000.0}>()
 mask = Mul(keep0, big)
"""
# a mask over *queries* instead of keys: same ops, wrong semantics
MASK_WRONG_AXIS = MASK_4X.replace("{1, 2}", "{1, 3}")


def _model_text(mask_body: str) -> str:
    text = _text().replace(f"float[{B}, 1, {S}, {S}] mask", "int64[2, 6] am2d")
    return text.replace("{\n q0 =", "{" + mask_body + " q0 =")


def _feeds():
    am = np.ones((B, S), np.int64)
    am[1, 4:] = 0
    return {"x": f32(B, S, 16), "am2d": am}


def test_mask_4x_becomes_key_padding_input():
    after, stats = fuse(_model_text(MASK_4X), "fuse-attention-mask", _feeds(), _inits(), atol=2e-5, rtol=1e-4,
                        pre=("fuse-attention",))
    assert stats == {"masks": 1}
    assert_op_counts(after, graphopt__MultiHeadAttention=1, Sub=0, Mul=0, Cast=0, Unsqueeze=0)
    mha = [n for n in after.graph if n.op_type == "MultiHeadAttention"][0]
    assert mha.inputs[3].name == "am2d" and len(mha.inputs) == 4
    assert mha.attr("mask_filter_value") == -10000.0


def test_mask_over_queries_is_rejected():
    m = load(_model_text(MASK_WRONG_AXIS), _inits())
    run_pass(m, "fuse-attention")
    mha = [n for n in m.graph if n.op_type == "MultiHeadAttention"][0]
    assert padding_mask_source(m, mha.inputs[4]) is None
    assert run_pass(m, "fuse-attention-mask") == {}


def test_mask_reading_a_float_input_is_rejected():
    body = MASK_4X.replace("mask = Mul(keep0, big)", "mask0 = Mul(keep0, big)\n mask = Add(mask0, noise)")
    text = _model_text(body).replace("int64[2, 6] am2d", f"int64[2, 6] am2d, float[{B}, 1, 1, {S}] noise")
    m = load(text, _inits())
    run_pass(m, "fuse-attention")
    assert run_pass(m, "fuse-attention-mask") == {}
