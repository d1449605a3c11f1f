"""The pattern API: matching, checks with reasons, the greedy driver's guarantees, explain."""

import numpy as np
import pytest

from graphopt.errors import PassError
from graphopt.ir import DType
from graphopt.pattern import (
    A,
    AnyOf,
    Const,
    MatchError,
    MatchResult,
    Optional,
    P,
    RewritePass,
    Rule,
    RuleSet,
    Var,
    apply_rules,
    explain,
    rule,
)
from graphopt.pattern.testing import assert_numerically_close, assert_op_counts, parse_model
from graphopt.pm import PassContext

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


class MergeTransposes(Rule):
    name = "merge-transposes"

    def pattern(self, p):
        inner = p.Transpose(Var("x"), perm=A("p"), bind="inner")
        return p.Transpose(inner, perm=A("q"), bind="outer")

    def check(self, m):
        if len(m.attr("p")) != len(m.attr("q")):
            return MatchResult.fail("perm lengths differ", m.node("outer"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        p, q = m.attr("p"), m.attr("q")
        return b.Transpose(m["x"], perm=[p[i] for i in q])


class FuseGemm(Rule):
    name = "fuse-gemm"
    benefit = 2
    commutative = True

    def pattern(self, p):
        mm = p.MatMul(Var("x").rank(2), Const("w"), bind="mm")
        return p.Add(mm, Const("b"), bind="add")

    def check(self, m):
        if m.has_external_uses("w"):
            return MatchResult.fail("weight is shared outside the match", m["w"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.Gemm(m["x"], m["w"], m["b"])


GEMM = HDR + """
g (float[2,3] x) => (float[2,4] y)
<float[3,4] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[4] bias = {1,2,3,4}>
{ mm = MatMul(x, w)
  y = Add(bias, mm) }
"""


def test_commutative_match_rewrites_and_stamps_origin():
    m = parse_model(GEMM)
    before = parse_model(GEMM)
    assert apply_rules(m, RuleSet([FuseGemm()])) == {"fuse-gemm": 1}
    assert_op_counts(m, Gemm=1, MatMul=0, Add=0)
    (n,) = list(m.graph)
    assert n.meta["origin"] == "fuse-gemm"
    assert m.graph.outputs[0].name == "y"  # graph outputs keep their names
    m.verify()
    assert_numerically_close(before, m)


def test_not_commutative_when_rule_says_so():
    class Strict(FuseGemm):
        name = "strict"
        commutative = False

    m = parse_model(GEMM)
    assert apply_rules(m, [Strict()]) == {}
    assert "is an initializer" in explain(Strict(), m).reason


def test_check_failure_reason_and_explain():
    text = HDR + """
    g (float[2,3] x) => (float[2,4] y, float[2,4] z)
    <float[3,4] w = {1,2,3,4,5,6,7,8,9,10,11,12}, float[4] bias = {1,2,3,4}>
    { mm = MatMul(x, w)
      y = Add(mm, bias)
      z = MatMul(x, w) }
    """
    m = parse_model(text)
    assert apply_rules(m, [FuseGemm()]) == {}
    ex = explain(FuseGemm(), m)
    assert ex.matches == 0 and ex.candidates == 1
    assert "weight is shared outside the match" in ex.reason
    assert "%w" in ex.reason
    assert "best partial match" in str(ex)


def test_shared_intermediate_is_never_deleted():
    text = HDR + """
    g (float[2,3] x) => (float[3,2] y, float[2,3] z)
    { t = Transpose<perm=[1,0]>(x)
      u = Transpose<perm=[1,0]>(t)
      y = Identity(t)
      z = Relu(u) }
    """
    m = parse_model(text)
    assert apply_rules(m, [MergeTransposes()]) == {}
    assert "outside the match" in explain(MergeTransposes(), m).reason
    assert_op_counts(m, Transpose=2)


def test_chain_collapses_and_is_idempotent():
    text = HDR + """
    g (float[2,3,4] x) => (float[4,3,2] y)
    { a = Transpose<perm=[1,0,2]>(x)
      b = Transpose<perm=[0,2,1]>(a)
      c = Transpose<perm=[2,1,0]>(b)
      y = Transpose<perm=[1,0,2]>(c) }
    """
    m = parse_model(text)
    before = parse_model(text)
    apply_rules(m, [MergeTransposes()])
    assert_op_counts(m, Transpose=1)
    assert apply_rules(m, [MergeTransposes()]) == {}
    m.verify()
    assert_numerically_close(before, m)


def test_graph_output_of_input_is_not_renamed():
    text = HDR + "g (float[2] x) => (float[2] y) { y = Identity(x) }"
    m = parse_model(text)
    r = rule("drop-identity", P.Identity(Var("x")), lambda m: m["x"])
    assert apply_rules(m, [r]) == {}
    assert "graph input" in explain(r, m).reason
    assert_op_counts(m, Identity=1)


def test_same_var_twice_must_be_same_value():
    text = HDR + """
    g (float[2] x, float[2] w) => (float[2] y, float[2] z)
    { s = Sigmoid(x)
      y = Mul(x, s)
      s2 = Sigmoid(w)
      z = Mul(x, s2) }
    """
    m = parse_model(text)
    silu = rule("silu", P.Mul(Var("x"), P.Sigmoid(Var("x"))), lambda b, m: b.HardSwish(m["x"]))
    assert apply_rules(m, [silu]) == {"silu": 1}
    assert_op_counts(m, HardSwish=1, Mul=1, Sigmoid=1)


def test_optional_anyof_const_value_and_attr_default():
    text = HDR + """
    g (float[2,3] x) => (float[2,3] y, float[2,3] z)
    <float one = {1.0}>
    { a = Mul(x, one)
      y = Softmax(a)
      z = Softmax<axis=1>(x) }
    """
    m = parse_model(text)
    pat = P.Softmax(AnyOf(P.Mul(Var("x"), Const(value=1.0)), Var("x")), axis=A(eq=-1, default=-1))
    r = rule("softmax-last", pat, lambda b, m: b.LogSoftmax(m["x"]))
    assert apply_rules(m, [r]) == {"softmax-last": 1}
    assert_op_counts(m, LogSoftmax=1, Softmax=1, Mul=0)
    text2 = HDR + """
    g (float[2,3] x, float[3] b) => (float[2,3] y) { y = LayerNormalization(x, b) }
    """
    m2 = parse_model(text2)
    seen = {}

    def rw(m):
        seen["bias"] = m.get("bias")
        return None  # decline

    r2 = rule("ln", P.LayerNormalization(Var("x"), Var("s"), Optional(Var("bias"))), rw)
    assert apply_rules(m2, [r2]) == {}
    assert seen["bias"] is None


def test_typo_in_binding_name_raises():
    m = parse_model(GEMM)
    r = rule("typo", P.Add(P.MatMul(Var("x"), Const("w")), Var("b")), lambda m: m["bais"], commutative=True)
    with pytest.raises(PassError, match="binds no value named 'bais'") as ei:
        apply_rules(m, [r])
    assert isinstance(ei.value.__cause__, MatchError)


def test_non_convergence_names_the_rules():
    text = HDR + "g (float[2] x) => (float[2] y) { a = Relu(x)\n y = Neg(a) }"
    m = parse_model(text)
    flip = rule("flip", P.Relu(Var("x")), lambda b, m: b.Relu(m["x"]))
    with pytest.raises(PassError, match=r"did not converge.*flip"):
        apply_rules(m, [flip], max_iterations=5)


def test_benefit_orders_rules():
    text = HDR + "g (float[2] x) => (float[2] y) { a = Relu(x)\n y = Neg(a) }"
    low = rule("low", P.Neg(P.Relu(Var("x"))), lambda b, m: b.Abs(m["x"]), benefit=1)
    high = rule("high", P.Neg(Var("x")), lambda b, m: b.Sign(m["x"]), benefit=3)
    m = parse_model(text)
    assert apply_rules(m, RuleSet([low]) + high) == {"high": 1}


def test_incompatible_replacement_type_is_an_error():
    text = HDR + "g (float[2] x) => (int64[2] y) { r = Relu(x)\n c = Cast<to=7>(r)\n y = Neg(c) }"
    bad = rule("bad", P.Cast(Var("x")), lambda m: m["x"])
    with pytest.raises(PassError, match="incompatible type"):
        apply_rules(parse_model(text), [bad])


def test_rewrite_pass_adapter():
    m = parse_model(GEMM)
    p = RewritePass(RuleSet([FuseGemm()]), name="my-gemm")
    res = p.run(m, PassContext())
    assert res.modified and res.stats == {"fuse-gemm": 1}
    assert p.name == "my-gemm"


def test_dce_of_dead_constant_leaves():
    m = parse_model(GEMM)
    apply_rules(m, [FuseGemm()])
    assert set(m.graph.initializers) == {"w", "bias"}
    r = rule("gemm-to-matmul", P.Gemm(Var("x"), Const("w"), Const("b")), lambda b, m: b.MatMul(m["x"], m["w"]))
    # drop the bias: it loses its last use and disappears with the Gemm
    m2 = parse_model(GEMM.replace("float[2,4] y", "float[2,4] y"))
    apply_rules(m2, [FuseGemm()])
    apply_rules(m2, [r])
    assert set(m2.graph.initializers) == {"w"}
    assert np.asarray(m2.graph.initializers["w"].const).shape == (3, 4)


def test_multi_output_root_rewrite_returns_one_value_per_output():
    text = HDR + """
    g (float[4,3] x) => (float[2,3] y, float[2,3] z)
    <int64[2] sp = {2, 2}>
    { a, b = Split<axis=0>(x, sp)
      y = Relu(a)
      z = Relu(b) }
    """
    m = parse_model(text)
    before = parse_model(text)

    def to_slices(b, m):
        x = m["x"]
        s0 = b.Slice(x, np.array([0], np.int64), np.array([2], np.int64), np.array([0], np.int64))
        s1 = b.Slice(x, np.array([2], np.int64), np.array([4], np.int64), np.array([0], np.int64))
        return [s0, s1]

    r = rule("split-to-slices", P.Split(Var("x"), Const("sp")), to_slices)
    assert apply_rules(m, [r]) == {"split-to-slices": 1}
    assert_op_counts(m, Split=0, Slice=2, Relu=2)
    m.verify()
    assert_numerically_close(before, m)


def test_wildcard_root_rule_is_tried_on_every_op():
    text = HDR + "g (float[2] x) => (float[2] y) { a = Neg(x)\n b = Neg(a)\n y = Relu(b) }"
    seen = []

    def probe(m):
        seen.append(m.root.producer().op_type)
        return None

    r = rule("probe", Var("v").dtype(DType.FLOAT), probe)
    apply_rules(parse_model(text), [r, rule("neg-neg", P.Neg(P.Neg(Var("x"))), lambda m: m["x"])])
    assert seen.count("Neg") == 2 and "Relu" in seen  # Relu again after its input was rewritten


def test_pattern_predicates_report_reasons():
    text = HDR + "g (float[2,3] x) => (float[2,3] y) { a = Relu(x)\n y = Neg(a) }"
    m = parse_model(text)
    r = rule("r4", P.Neg(P.Relu(Var("x").rank(4))), lambda m: m["x"])
    assert "rank is not 4" in explain(r, m).reason
    r2 = rule("f16", P.Neg(P.Relu(Var("x")).dtype(DType.FLOAT16)), lambda m: m["x"])
    assert "dtype is not f16" in explain(r2, m).reason
    r3 = rule("attr", P.Neg(P.Relu(Var("x"), alpha=A(eq=0.5))), lambda m: m["x"])
    assert "attribute alpha is missing" in explain(r3, m).reason


def test_dag_pattern_reuses_a_subpattern():
    text = '<ir_version: 8, opset_import: ["" : 18]>' + """
    g (float[2,4] x) => (float[2,4] y)
    <float eps = {1e-5}, int64[1] ax = {-1}>
    { mu = ReduceMean(x, ax)
      d = Sub(x, mu)
      sq = Mul(d, d)
      var = ReduceMean(sq, ax)
      ve = Add(var, eps)
      sd = Sqrt(ve)
      y = Div(d, sd) }
    """
    m = parse_model(text)
    before = parse_model(text)
    d = P.Sub(Var("x"), P.ReduceMean(Var("x"), Const("ax")), bind="d")
    var = P.ReduceMean(P.Mul(d, d), Const("ax2"))
    pat = P.Div(d, P.Sqrt(P.Add(var, Const("eps"))))

    def to_ln(b, m):
        n = m["x"].shape[-1]
        return b.LayerNormalization(m["x"], np.ones(n, np.float32), np.zeros(n, np.float32), axis=-1,
                                    epsilon=float(m.const("eps")))

    r = rule("ln", pat, to_ln)
    assert apply_rules(m, [r]) == {"ln": 1}
    assert_op_counts(m, LayerNormalization=1, Sub=0, Mul=0, ReduceMean=0)
    m.verify()
    assert_numerically_close(before, m, rtol=1e-5, atol=1e-5)


def test_explain_by_registered_name():
    from graphopt.errors import GraphoptError

    text = HDR + "g (float[2,3] x) => (float[3,2] y) { y = Transpose<perm=[1,0]>(x) }"
    ex = explain("merge-transpose-pair", parse_model(text))
    assert ex.candidates == 1 and "graph input" in ex.reason
    with pytest.raises(GraphoptError, match="unknown rule 'nope'"):
        explain("nope", parse_model(text))
