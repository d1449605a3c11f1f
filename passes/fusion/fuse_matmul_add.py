"""fuse-matmul-add: MatMul(X, W) + B with constant W [K, N] and bias B [N] -> graphopt::Linear(X, W, B).

Runs after the transformer fusions, which take the bias Adds they can use
(attention packs Q/K/V biases, SkipLayerNorm and BiasGelu take theirs); what is
left is a plain dense layer.
"""

from __future__ import annotations

from graphopt.pattern import Const, MatchResult, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass

__all__ = ["FUSE_MATMUL_ADD", "FuseMatMulAddPass"]


class FuseMatMulAdd(Rule):
    """Add(MatMul(X, W), B) -> Linear(X, W, B)."""

    name = "fuse-matmul-add"
    benefit = 1
    commutative = True

    def pattern(self, p):
        return P.Add(P.MatMul(Var("x"), Const("w").rank(2), bind="mm"), Const("b"), bind="add")

    def check(self, m):
        w, b = m.const("w"), m.const("b")
        if b.ndim != 1 and not (b.ndim > 1 and all(s == 1 for s in b.shape[:-1])):
            return MatchResult.fail(f"bias shape {list(b.shape)} is not a vector over the last axis", m["b"])
        if b.shape[-1] != w.shape[1]:
            return MatchResult.fail(f"bias length {b.shape[-1]} != output width {w.shape[1]}", m["b"])
        if b.ndim > 1 and (m["x"].rank is None or m["x"].rank < b.ndim):
            return MatchResult.fail("a rank>1 bias would broadcast the output to a higher rank", m["b"])
        if m["x"].rank is not None and m["x"].rank < 1:
            return MatchResult.fail("MatMul input is a scalar", m["x"])
        if b.dtype != w.dtype:
            return MatchResult.fail("bias and weight dtypes differ", m["b"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        bias = m.const("b")
        bv = m["b"] if bias.ndim == 1 else b.initializer(bias.reshape(-1))
        return b.Linear(m["x"], m["w"], bv, _domain=GRAPHOPT)


FUSE_MATMUL_ADD = RuleSet([FuseMatMulAdd()], name="fuse-matmul-add")


@register_pass
class FuseMatMulAddPass(FusionPass):
    name = "fuse-matmul-add"
    description = "MatMul + bias Add -> graphopt::Linear"
    rules = FUSE_MATMUL_ADD
    needs_shapes = True
