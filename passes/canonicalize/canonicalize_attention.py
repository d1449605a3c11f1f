"""canonicalize-attention: the attention idioms of sdpa and the dynamo exporter -> the eager form.

Rules (each small, each exact up to float rounding of a scalar product):

* ``remove-softmax-nan-guard``  ``Where(IsNaN(p), 0, p)`` with ``p = Softmax(s)`` -> ``p``.
  sdpa guards rows whose every score is ``-inf`` (a query that may attend to no key);
  such a row is NaN without the guard and 0 with it. No other row changes. The fused
  attention clamps ``-inf`` mask values to ``finfo.min`` (a fully masked row then
  averages V uniformly, as onnxruntime's Attention does): only rows that attend to
  nothing differ, and those carry no information in any model of the zoo.
* ``hoist-matmul-scale-left`` / ``-right``  ``MatMul(a * c, b)`` and ``MatMul(a, b * c)``
  (or ``/ c``), c a scalar constant, a and b activations -> ``MatMul(a, b) * c``:
  sdpa scales Q and K by ``sqrt(1/sqrt(d))`` each, eager scales the scores.
* ``merge-scalar-muls``  ``(x * c1) * c2`` -> ``x * (c1 c2)`` for scalar constants (what the
  two hoists leave).
* ``merge-score-biases``  ``Softmax((s + a) + b)`` -> ``Softmax(s + (a + b))`` for scores ``s = Q K^T``
  (T5 adds its position bias, then its padding mask).
* ``shape-of-transpose``  ``Shape(Transpose(x, perm))`` -> ``Gather(Shape(x), perm)``.
* ``key-transpose-3d``  ``Reshape(Transpose(Reshape(k, [-1, S, d]), [0, 2, 1]), [B, N, d, S])``
  -> ``Transpose(k, [0, 1, 3, 2])``: the dynamo exporter's K^T for a 4-D k [B, N, S, d], proved
  from the (symbolic) shapes of k and of the result.
* ``heads-bmm-scores-4d`` / ``heads-bmm-context-4d``  DeBERTa's attention runs on [B N, S, d] batches:
  ``Reshape(MatMul(Reshape(q), Reshape(k)^T) [* c] [+ r], [B, N, Sq, Sk])`` -> ``MatMul(q, k^T) [* c]
  [+ Reshape(r, [B, N, Sq, Sk])]`` and ``Reshape(MatMul(Reshape(p), Reshape(v)), [B, N, Sq, d])`` ->
  ``MatMul(p, v)`` for 4-D q, k, p, v [B, N, S, .]: merging then splitting B and N is the identity
  (proved from the symbolic shapes), so the scores and context are the 4-D ones fuse-sdpa matches, with
  the relative-position terms r as a per-head bias.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, AnyOf, Const, MatchResult, P, Rule, RuleSet, Var, is_constant
from graphopt.pm import register_pass

from ..fusion._common import FusionPass

__all__ = ["CANONICALIZE_ATTENTION", "CanonicalizeAttentionPass"]


def _scalar_const(arr: np.ndarray | None) -> bool:
    return arr is not None and arr.size == 1 and np.issubdtype(arr.dtype, np.floating)


class RemoveSoftmaxNanGuard(Rule):
    """Where(IsNaN(Softmax(s)), 0, Softmax(s)) -> Softmax(s)."""

    name = "remove-softmax-nan-guard"
    benefit = 3

    def pattern(self, p):
        sm = Var("p")
        return P.Where(P.IsNaN(sm, bind="isnan"), Const("zero"), sm, bind="guard")

    def check(self, m):
        prod = m["p"].producer()
        if prod is None or prod.op_type != "Softmax":
            return MatchResult.fail("the guarded value is not a Softmax output", m["p"])
        z = m.const("zero")
        if z.size != 1 or float(z.reshape(-1)[0]) != 0.0:
            return MatchResult.fail("the NaN replacement is not 0", m["zero"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return m["p"]


def _scaled(name: str, const: str, bind: str):
    return AnyOf(P.Mul(Var(name), Const(const), bind=bind), P.Div(Var(name), Const(const), bind=bind))


def _factor(m, bind: str, const: str) -> np.ndarray:
    c = m.const(const).astype(np.float64).reshape(-1)[0]
    return 1.0 / c if m.node(bind).op_type == "Div" else c


class HoistMatMulScaleLeft(Rule):
    """MatMul(a * c, b) -> MatMul(a, b) * c (a, b activations, c a scalar constant)."""

    name = "hoist-matmul-scale-left"
    benefit = 2
    commutative = True
    side = "a"

    def pattern(self, p):
        return P.MatMul(_scaled("a", "c", "scaled"), Var("b"), bind="mm")

    def check(self, m):
        if is_constant(m["a"]) or is_constant(m["b"]):
            return MatchResult.fail("a MatMul operand is a constant (a weight, not attention scores)", m.node("mm"))
        if not _scalar_const(m.const("c")):
            return MatchResult.fail("the scale is not a float scalar constant", m["c"])
        if m.const("c").reshape(-1)[0] == 0:
            return MatchResult.fail("the scale is 0", m["c"])
        out, src = m["mm"], m["a" if self.side == "a" else "b"]
        if out.dtype is not None and src.dtype is not None and out.dtype != src.dtype:
            return MatchResult.fail("operand and product types differ", m.node("mm"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        dt = m.const("c").dtype
        mm = b.MatMul(m["a"], m["b"])
        return b.Mul(mm, np.array(_factor(m, "scaled", "c"), dt))


class HoistMatMulScaleRight(HoistMatMulScaleLeft):
    """MatMul(a, b * c) -> MatMul(a, b) * c."""

    name = "hoist-matmul-scale-right"
    side = "b"

    def pattern(self, p):
        return P.MatMul(Var("a"), _scaled("b", "c", "scaled"), bind="mm")


class MergeScalarMuls(Rule):
    """(x * c1) * c2 -> x * (c1 c2), c1 and c2 float scalar constants."""

    name = "merge-scalar-muls"
    benefit = 2
    commutative = True

    def pattern(self, p):
        return P.Mul(P.Mul(Var("x"), Const("c1"), bind="inner"), Const("c2"), bind="outer")

    def check(self, m):
        c1, c2 = m.const("c1"), m.const("c2")
        if not (_scalar_const(c1) and _scalar_const(c2)) or c1.dtype != c2.dtype:
            return MatchResult.fail("not two float scalar constants of one type", m["c1"], m["c2"])
        if is_constant(m["x"]):
            return MatchResult.fail("x is a constant (constant folding's job)", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        c1, c2 = m.const("c1"), m.const("c2")
        shape = c1.shape if c1.ndim >= c2.ndim else c2.shape
        c = (c1.astype(np.float64).reshape(-1)[0] * c2.astype(np.float64).reshape(-1)[0])
        return b.Mul(m["x"], np.full(shape, c, c1.dtype))


def _is_scores(v) -> bool:
    """v is Q K^T, optionally scaled: MatMul of two activations, or Mul/Div of one by a constant."""
    p = v.producer()
    if p is not None and p.op_type in ("Mul", "Div") and len(p.inputs) == 2 and is_constant(p.inputs[1]):
        p = p.inputs[0].producer()
    return p is not None and p.op_type == "MatMul" and not any(is_constant(i) for i in p.inputs)


class MergeScoreBiases(Rule):
    """Softmax((s + a) + b) -> Softmax(s + (a + b)) for scores s = Q K^T: T5 adds its position
    bias and its padding mask one after the other; the fusion takes one additive bias."""

    name = "merge-score-biases"
    benefit = 2
    commutative = True

    def pattern(self, p):
        inner = P.Add(Var("s"), Var("a"), bind="inner")
        return P.Softmax(P.Add(inner, Var("b"), bind="outer"), axis=A(pred=lambda a: a in (-1, 3), default=-1),
                         bind="softmax")

    def check(self, m):
        if not _is_scores(m["s"]):
            return MatchResult.fail("the first addend is not the attention scores Q K^T", m["s"])
        if _is_scores(m["a"]) or _is_scores(m["b"]):
            return MatchResult.fail("both addends look like attention scores", m.node("inner"))
        for t in ("a", "b"):
            if m[t].rank != 4:
                return MatchResult.fail(f"bias {t} is not 4-D", m[t])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.Softmax(b.Add(m["s"], b.Add(m["a"], m["b"])), axis=int(m.node("softmax").attr("axis", -1)))


class ShapeOfTranspose(Rule):
    """Shape(Transpose(x, perm)) -> Gather(Shape(x), perm): a shape chain that reads a transposed
    copy of x (T5's key length) reads x itself, so the Transpose can die and x's fusion go on."""

    name = "shape-of-transpose"
    benefit = 1
    allow_shared_intermediates = True  # the Transpose stays for its other readers

    def pattern(self, p):
        return P.Shape(P.Transpose(Var("x"), bind="t"), bind="shape")

    def check(self, m):
        perm = m.node("t").attr("perm", None)
        if perm is None:
            return MatchResult.fail("Transpose has no explicit perm", m.node("t"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        perm = [int(i) for i in m.node("t").attr("perm")]
        sh = m.node("shape")
        start, end = int(sh.attr("start", 0)), sh.attr("end", None)
        idx = perm[start:None if end is None else int(end)]
        return b.Gather(b.Shape(m["x"]), np.array(idx, np.int64), axis=0)


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, (int, str)) and d != "" for d in shape)


class KeyTranspose3D(Rule):
    """Reshape(Transpose(Reshape(k, [-1, S, d]), [0, 2, 1]), [B, N, d, S]) -> Transpose(k, [0, 1, 3, 2])."""

    name = "key-transpose-3d"
    benefit = 2

    def pattern(self, p):
        r1 = P.Reshape(Var("k"), Var("s1"), bind="r1")
        return P.Reshape(P.Transpose(r1, perm=[0, 2, 1], bind="t"), Var("s2"), bind="r2")

    def check(self, m):
        k, r1, r2 = m["k"], m["r1"], m["r2"]
        ks = k.shape
        if ks is None or len(ks) != 4 or not _known(ks[2:]) or not _known(ks[:2]):
            return MatchResult.fail("k is not 4-D with known (static or symbolic) dims", k)
        if r1.shape is None or len(r1.shape) != 3 or tuple(r1.shape[1:]) != tuple(ks[2:]):
            return MatchResult.fail("the first Reshape does not keep k's last two dims", r1)
        want = (ks[0], ks[1], ks[3], ks[2])
        if r2.shape is None or tuple(r2.shape) != want:
            return MatchResult.fail(f"the second Reshape does not give {list(want)}", r2)
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.Transpose(m["k"], perm=[0, 1, 3, 2])


def _merges_heads(x, r) -> bool:
    """Reshape r of 4-D x [B, N, S, d] is [B N, S, d]: rank 3 keeping the last two dims (the element
    count then makes dim 0 the product of B and N, in row-major order)."""
    xs, rs = x.shape, r.shape
    return (xs is not None and len(xs) == 4 and _known(xs) and rs is not None and len(rs) == 3
            and tuple(rs[1:]) == tuple(xs[2:]))


class HeadsBmmScores4D(Rule):
    """Reshape(MatMul(Reshape(q), Transpose(Reshape(k), [0, 2, 1])) [* c] [+ r], [B, N, Sq, Sk])
    -> MatMul(q, Transpose(k, [0, 1, 3, 2])) [* c] [+ Reshape(r, [B, N, Sq, Sk])]."""

    name = "heads-bmm-scores-4d"
    benefit = 2
    commutative = True
    allow_shared_intermediates = True  # DeBERTa's relative-position terms read the 3-D q and k too

    def pattern(self, p):
        kt = P.Transpose(P.Reshape(Var("k"), Var("ks"), bind="rk"), perm=[0, 2, 1], bind="kt")
        qk = P.MatMul(P.Reshape(Var("q"), Var("qs"), bind="rq"), kt, bind="qk")
        sc = AnyOf(P.Mul(qk, Const("c"), bind="scaled"), qk)
        return P.Reshape(AnyOf(P.Add(sc, Var("r"), bind="biased"), sc), Var("s4"), bind="r4")

    def check(self, m):
        q, k = m["q"], m["k"]
        if not (_merges_heads(q, m["rq"]) and _merges_heads(k, m["rk"])):
            return MatchResult.fail("q and k are not 4-D [B, N, S, d] reshaped to [B N, S, d]", m.node("qk"))
        if tuple(q.shape[:2]) != tuple(k.shape[:2]) or q.shape[3] != k.shape[3]:
            return MatchResult.fail("q and k differ in batch, heads or head size", m.node("qk"))
        if "scaled" in m and not _scalar_const(m.const("c")):
            return MatchResult.fail("the scores' scale is not a scalar constant", m.node("scaled"))
        want = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        if m["r4"].shape is None or tuple(m["r4"].shape) != want:
            return MatchResult.fail(f"the scores are not reshaped to {list(want)}", m["r4"])
        r = m.get_or_none("r")
        if r is not None and (r.rank != 3 or r.dtype != q.dtype):
            return MatchResult.fail("the added term is not 3-D [B N, Sq, Sk] of q's type", r)
        return MatchResult.ok()

    def rewrite(self, b, m):
        s = b.MatMul(m["q"], b.Transpose(m["k"], perm=[0, 1, 3, 2]))
        if "scaled" in m:
            s = b.Mul(s, m["c"])
        if "biased" in m:
            s = b.Add(s, b.Reshape(m["r"], m["s4"]))
        return s


class HeadsBmmContext4D(Rule):
    """Reshape(MatMul(Reshape(p), Reshape(v)), [B, N, Sq, d]) -> MatMul(p, v) for 4-D p and v."""

    name = "heads-bmm-context-4d"
    benefit = 2
    allow_shared_intermediates = True

    def pattern(self, p):
        pv = P.MatMul(P.Reshape(Var("p"), Var("ps"), bind="rp"), P.Reshape(Var("v"), Var("vs"), bind="rv"),
                      bind="pv")
        return P.Reshape(pv, Var("s4"), bind="r4")

    def check(self, m):
        p_, v = m["p"], m["v"]
        if not (_merges_heads(p_, m["rp"]) and _merges_heads(v, m["rv"])):
            return MatchResult.fail("p and v are not 4-D [B, N, S, .] reshaped to [B N, S, .]", m.node("pv"))
        if tuple(p_.shape[:2]) != tuple(v.shape[:2]) or p_.shape[3] != v.shape[2]:
            return MatchResult.fail("p and v differ in batch or heads, or p's keys are not v's rows", m.node("pv"))
        want = (p_.shape[0], p_.shape[1], p_.shape[2], v.shape[3])
        if m["r4"].shape is None or tuple(m["r4"].shape) != want:
            return MatchResult.fail(f"the context is not reshaped to {list(want)}", m["r4"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.MatMul(m["p"], m["v"])


CANONICALIZE_ATTENTION = RuleSet([RemoveSoftmaxNanGuard(), HoistMatMulScaleLeft(), HoistMatMulScaleRight(),
                                  MergeScalarMuls(), KeyTranspose3D(), MergeScoreBiases(), ShapeOfTranspose(),
                                  HeadsBmmScores4D(), HeadsBmmContext4D()], name="canonicalize-attention")


@register_pass
class CanonicalizeAttentionPass(FusionPass):  # the O2 rewrite-pass base: shapes inferred first if missing
    name = "canonicalize-attention"
    description = ("sdpa / dynamo attention idioms (Softmax NaN guard, scales on Q and K, K^T via 3-D) "
                   "-> the eager form fuse-attention matches")
    rules = CANONICALIZE_ATTENTION
    needs_shapes = True  # key-transpose-3d reads the (symbolic) shapes
