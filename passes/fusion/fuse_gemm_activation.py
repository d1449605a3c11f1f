"""fuse-gemm-activation: an activation after a dense layer becomes Linear's epilogue.

Act(Linear(X, W, B))                     -> Linear(X, W, B, activation=Act)
Act(MatMul(X, W)) with constant 2-D W     -> Linear(X, W, activation=Act)
Act(Gemm(X, W, C)) with alpha=beta=1, transA=0, 1-D C or none
                                          -> Linear(X, W or W^T, C, activation=Act)
Act is Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid, Clip (constant bounds) or graphopt::Gelu.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, activation_of, activation_pattern

__all__ = ["FUSE_GEMM_ACTIVATION", "FuseGemmActivationPass"]


def dense_pattern():
    return AnyOf(
        P.Linear(Var("x"), Var("w"), Optional(Var("b")), domain=GRAPHOPT, activation=A(eq="", default=""),
                 bind="dense"),
        P.MatMul(Var("x"), Const("w").rank(2), bind="dense"),
        P.Gemm(Var("x"), Const("w").rank(2), Optional(Const("b")), bind="dense",
               alpha=A(eq=1.0, default=1.0), beta=A(eq=1.0, default=1.0), transA=A(eq=0, default=0),
               transB=A("transB", default=0)),
    )


class FuseGemmActivation(Rule):
    """Activation(dense) -> Linear(..., activation)."""

    name = "fuse-gemm-activation"
    benefit = 2

    def pattern(self, p):
        return activation_pattern(dense_pattern())

    def check(self, m):
        if activation_of(m.node("act")) is None:
            return MatchResult.fail("Clip bounds are not constant", m.node("act"))
        dense = m.node("dense")
        if dense.op_type == "Gemm" and m.get_or_none("b") is not None and m.const("b").ndim > 1 \
                and m.const("b").shape[0] != 1:
            return MatchResult.fail("Gemm's C is a matrix, not a bias row", m["b"])
        if dense.op_type == "MatMul" and m["x"].rank is not None and m["x"].rank < 1:
            return MatchResult.fail("MatMul input is a scalar", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        act, params = activation_of(m.node("act"))
        dense = m.node("dense")
        w, bias = m["w"], m.get_or_none("b")
        if dense.op_type == "Gemm":
            if m.attr("transB"):
                w = b.initializer(np.ascontiguousarray(m.const("w").T))
            if bias is not None:
                bias = b.initializer(np.broadcast_to(m.const("b").reshape(-1),
                                                     (m.const("w").shape[0 if m.attr("transB") else 1],)).copy())
        return b.Linear(m["x"], w, bias, activation=act, activation_params=params, _domain=GRAPHOPT)


FUSE_GEMM_ACTIVATION = RuleSet([FuseGemmActivation()], name="fuse-gemm-activation")


@register_pass
class FuseGemmActivationPass(FusionPass):
    name = "fuse-gemm-activation"
    description = "Relu/Clip/Sigmoid/Tanh/LeakyRelu/HardSigmoid/Gelu after Linear/MatMul/Gemm -> Linear epilogue"
    rules = FUSE_GEMM_ACTIVATION
