"""canonicalize-attention: each rule on ONNX text (before -> op counts), numerics in
onnxruntime, idempotence, and one negative case per check with its reason."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

import graphopt
from graphopt.ir import Model
from graphopt.passes.canonicalize.canonicalize_attention import (
    HoistMatMulScaleLeft,
    HeadsBmmScores4D,
    KeyTranspose3D,
    RemoveSoftmaxNanGuard,
)
from graphopt.pattern import explain
from graphopt.pm import PassContext, PassManager, get_pass
from graphopt.testing.asserts import assert_numerically_close, assert_op_counts, run_onnxruntime

RNG = np.random.default_rng(0)
PASS = "canonicalize-attention"


def _load(text: str) -> Model:
    mp = onnx.parser.parse_model(text)
    onnx.checker.check_model(mp)
    return graphopt.from_onnx(mp)


def _run(m: Model) -> dict:
    res = get_pass(PASS)().run(m, PassContext())
    m.verify()
    return dict(res.stats) if res.modified else {}


def _canonicalize(text: str, feeds: dict[str, np.ndarray]) -> tuple[Model, dict]:
    before, after = _load(text), _load(text)
    stats = _run(after)
    assert_numerically_close(before, after, feeds, atol=1e-5, rtol=1e-5)
    again = graphopt.from_onnx(graphopt.to_onnx(after))
    assert _run(again) == {}, "canonicalize-attention is not idempotent"
    return after, stats


def _unchanged(text: str, rule, reason: str) -> None:
    m = _load(text)
    counts = m.graph.op_counts()
    assert _run(m) == {}
    assert m.graph.op_counts() == counts
    graphopt.infer_shapes(m)
    why = explain(rule, m)
    assert why.matches == 0 and reason in why.reason, why.reason


HEAD = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def nan_guard(producer: str = "Softmax<axis=-1>(s)", fill: str = "0.0") -> str:
    return HEAD + f"""g (float[2, 4, 8, 8] s) => (float[2, 4, 8, 8] y) {{
  zero = Constant<value = float {{{fill}}}>()
  p = {producer}
  n = IsNaN(p)
  y = Where(n, zero, p)
}}"""


def test_softmax_nan_guard_removed():
    after, stats = _canonicalize(nan_guard(), {"s": _f32(2, 4, 8, 8)})
    assert stats == {"remove-softmax-nan-guard": 1}
    assert_op_counts(after, Softmax=1, IsNaN=0, Where=0)


def test_nan_guard_kept_when_not_after_softmax():
    _unchanged(nan_guard("Relu(s)"), RemoveSoftmaxNanGuard(), "not a Softmax output")


def test_nan_guard_kept_when_fill_is_not_zero():
    _unchanged(nan_guard(fill="1.0"), RemoveSoftmaxNanGuard(), "not 0")


def scores(q_scale: str, k_scale: str, k_op: str = "Mul") -> str:
    return HEAD + f"""g (float[2, 4, 8, 16] q, float[2, 4, 16, 8] kt) => (float[2, 4, 8, 8] y) {{
  cq = Constant<value = float {{{q_scale}}}>()
  ck = Constant<value = float[1] {{{k_scale}}}>()
  qs = Mul(q, cq)
  ks = {k_op}(kt, ck)
  y = MatMul(qs, ks)
}}"""


@pytest.mark.parametrize("k_op", ["Mul", "Div"])
def test_scales_on_q_and_k_become_one_scale_on_the_scores(k_op):
    s = 16 ** -0.25  # sdpa: sqrt(1/sqrt(d)) on each of Q and K
    after, stats = _canonicalize(scores(str(s), str(s if k_op == "Mul" else 1 / s), k_op),
                                 {"q": _f32(2, 4, 8, 16), "kt": _f32(2, 4, 16, 8)})
    assert stats["hoist-matmul-scale-left"] == 1 and stats["hoist-matmul-scale-right"] == 1
    assert stats["merge-scalar-muls"] == 1
    assert_op_counts(after, MatMul=1, Mul=1, Div=0)
    mul = next(n for n in after.graph if n.op_type == "Mul")
    assert mul.inputs[0].producer().op_type == "MatMul"
    from graphopt.pattern import const_value

    assert np.isclose(float(const_value(mul.inputs[1]).reshape(-1)[0]), 0.25, rtol=1e-6)


def test_scale_on_a_weight_operand_is_left_alone():
    text = HEAD + """g (float[2, 8, 16] x) => (float[2, 8, 4] y) {
  c = Constant<value = float {0.5}>()
  w = Constant<value = float[16, 4] {""" + ",".join(["0.1"] * 64) + """}>()
  xs = Mul(x, c)
  y = MatMul(xs, w)
}"""
    _unchanged(text, HoistMatMulScaleLeft(), "constant")


def key_t(final: str = "2, 4, 16, 8") -> str:
    return HEAD + f"""g (float[2, 4, 8, 16] k) => (float[{final}] y) {{
  s1 = Constant<value = int64[3] {{-1, 8, 16}}>()
  s2 = Constant<value = int64[4] {{{final}}}>()
  r = Reshape(k, s1)
  t = Transpose<perm = [0, 2, 1]>(r)
  y = Reshape(t, s2)
}}"""


def test_dynamo_key_transpose_through_3d_becomes_one_transpose():
    after, stats = _canonicalize(key_t(), {"k": _f32(2, 4, 8, 16)})
    assert stats == {"key-transpose-3d": 1}
    assert_op_counts(after, Transpose=1, Reshape=0)
    t = next(n for n in after.graph if n.op_type == "Transpose")
    assert list(t.attr("perm")) == [0, 1, 3, 2]


def test_key_transpose_not_rewritten_when_the_result_is_not_k_transposed():
    _unchanged(key_t("2, 4, 8, 16"), KeyTranspose3D(), "does not give")


def t5_scores() -> str:
    return HEAD + """g (float[2, 4, 8, 16] q, float[2, 4, 16, 8] kt, float[1, 4, 8, 8] pos, float[2, 1, 1, 8] mask)
    => (float[2, 4, 8, 8] y) {
  s = MatMul(q, kt)
  a = Add(s, pos)
  b = Add(a, mask)
  y = Softmax<axis = -1>(b)
}"""


def test_t5_position_bias_and_mask_become_one_additive_bias():
    feeds = {"q": _f32(2, 4, 8, 16), "kt": _f32(2, 4, 16, 8), "pos": _f32(1, 4, 8, 8),
             "mask": np.where(RNG.random((2, 1, 1, 8)) < 0.3, -1e9, 0).astype(np.float32)}
    after, stats = _canonicalize(t5_scores(), feeds)
    assert stats == {"merge-score-biases": 1}
    sm = next(n for n in after.graph if n.op_type == "Softmax")
    add = sm.inputs[0].producer()
    assert add.op_type == "Add" and add.inputs[0].producer().op_type == "MatMul"
    assert add.inputs[1].producer().op_type == "Add"


def test_biases_not_merged_when_no_addend_is_qk():
    text = t5_scores().replace("s = MatMul(q, kt)", "s = Relu(pos)")
    from graphopt.passes.canonicalize.canonicalize_attention import MergeScoreBiases

    _unchanged(text, MergeScoreBiases(), "not the attention scores")


def test_shape_of_a_transpose_reads_the_input():
    text = HEAD + """g (float[2, 8, 4, 16] k) => (int64[2] y, float[2, 4, 8, 16] t) {
  t = Transpose<perm = [0, 2, 1, 3]>(k)
  y = Shape<start = 1, end = 3>(t)
}"""
    m = _load(text)
    assert _run(m) == {"shape-of-transpose": 1}
    shape = next(n for n in m.graph if n.op_type == "Shape")
    assert shape.inputs[0].name == "k"
    from graphopt.testing.asserts import run_onnxruntime

    y = run_onnxruntime(m, {"k": _f32(2, 8, 4, 16)})[0]
    assert list(y) == [4, 8]


def deberta_bmm(split: str = "2, 4, 8, 8") -> str:
    """DeBERTa's attention on [B N, S, d]: scores + a relative-position term, split to [B, N, S, S]
    for the mask, merged back for the context."""
    return HEAD + f"""g (float[2, 4, 8, 16] q, float[2, 4, 8, 16] k, float[2, 4, 8, 16] v, float[8, 8, 8] rel,
       bool[2, 1, 8, 8] keep) => (float[2, 4, 8, 16] y) {{
  m3 = Constant<value = int64[3] {{-1, 8, 16}}>()
  p3 = Constant<value = int64[3] {{-1, 8, 8}}>()
  s4 = Constant<value = int64[4] {{{split}}}>()
  y4 = Constant<value = int64[4] {{2, 4, 8, 16}}>()
  c = Constant<value = float {{0.144}}>()
  fill = Constant<value = float {{-3.4e38}}>()
  q3 = Reshape(q, m3)
  k3 = Reshape(k, m3)
  kt = Transpose<perm = [0, 2, 1]>(k3)
  s = MatMul(q3, kt)
  sc = Mul(s, c)
  sb = Add(sc, rel)
  s4d = Reshape(sb, s4)
  masked = Where(keep, s4d, fill)
  p = Softmax<axis = -1>(masked)
  pm = Reshape(p, p3)
  v3 = Reshape(v, m3)
  ctx = MatMul(pm, v3)
  y = Reshape(ctx, y4)
}}"""


def test_deberta_bmm_attention_becomes_4d_scores_and_context():
    feeds = {"q": _f32(2, 4, 8, 16), "k": _f32(2, 4, 8, 16), "v": _f32(2, 4, 8, 16), "rel": _f32(8, 8, 8),
             "keep": RNG.random((2, 1, 8, 8)) < 0.8}
    after, stats = _canonicalize(deberta_bmm(), feeds)
    assert stats == {"heads-bmm-scores-4d": 1, "heads-bmm-context-4d": 1}
    graphopt.infer_shapes(after)
    for n in after.graph:
        if n.op_type == "MatMul":
            assert all(i.rank == 4 for i in n.inputs), n
    # the relative-position term is now a per-head [B, N, S, S] bias: fuse-sdpa takes it with the mask
    m = _load(deberta_bmm())
    ref = _load(deberta_bmm())
    PassManager.from_text("canonicalize-attention,fuse-sdpa")(m)
    assert m.graph.op_counts().get("graphopt::Attention") == 1
    want = run_onnxruntime(ref, feeds)[0]
    got = np.asarray(graphopt.compile(m, precision="fp32").run(feeds)[0])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_heads_bmm_not_rewritten_when_the_split_is_not_b_n():
    # [B N, S, S] split as [4, 2, 8, 8] is not [B, N, S, S]: merging then splitting is not the identity
    _unchanged(deberta_bmm("4, 2, 8, 8").replace("masked = Where(keep, s4d, fill)", "masked = Identity(s4d)"), HeadsBmmScores4D(),
               "not reshaped to")
