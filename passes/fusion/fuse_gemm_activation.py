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

__all__ = ["FUSE_GEMM_ACTIVATION", "FuseGemmActivationPass", "dense_pattern", "check_dense", "linear_with_activation"]


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
        return check_dense(m)

    def rewrite(self, b, m):
        return linear_with_activation(b, m)


def check_dense(m) -> MatchResult:
    """The checks of a :func:`dense_pattern` match under an :func:`activation_pattern`."""
    if activation_of(m.node("act")) is None:
        return MatchResult.fail("Clip bounds are not constant", m.node("act"))
    dense = m.node("dense")
    if dense.op_type == "Gemm" and m.get_or_none("b") is not None and m.const("b").ndim > 1 \
            and m.const("b").shape[0] != 1:
        return MatchResult.fail("Gemm's C is a matrix, not a bias row", m["b"])
    if dense.op_type == "MatMul" and m["x"].rank is not None and m["x"].rank < 1:
        return MatchResult.fail("MatMul input is a scalar", m["x"])
    return MatchResult.ok()


def linear_with_activation(b, m):
    """The Linear computing the matched dense node (``dense``: MatMul / Gemm / a Linear without
    activation) with the matched ``act`` as its epilogue; it keeps the dense node's name. A Gemm's
    transposed weight keeps the file's int8 grid (``WEIGHT_GRID``: per output channel)."""
    from graphopt.quant.decision import WEIGHT_GRID

    act, params = activation_of(m.node("act"))
    dense = m.node("dense")
    w, bias = m["w"], m.get_or_none("b")
    if dense.op_type == "Gemm":
        if m.attr("transB"):
            grid = w.meta.get(WEIGHT_GRID)
            w = b.initializer(np.ascontiguousarray(m.const("w").T))
            if grid is not None:
                w.meta[WEIGHT_GRID] = grid
        if bias is not None:
            bias = b.initializer(np.broadcast_to(m.const("b").reshape(-1),
                                                 (m.const("w").shape[0 if m.attr("transB") else 1],)).copy())
    out = b.Linear(m["x"], w, bias, activation=act, activation_params=params, _domain=GRAPHOPT, _name=dense.name)
    if out.type is None and dense.outputs[0].type is not None:
        out.type = dense.outputs[0].type  # an element-wise epilogue keeps the GEMM's type: later cleanups read it
    return out


FUSE_GEMM_ACTIVATION = RuleSet([FuseGemmActivation()], name="fuse-gemm-activation")


@register_pass
class FuseGemmActivationPass(FusionPass):
    name = "fuse-gemm-activation"
    description = "Relu/Clip/Sigmoid/Tanh/LeakyRelu/HardSigmoid/Gelu after Linear/MatMul/Gemm -> Linear epilogue"
    rules = FUSE_GEMM_ACTIVATION
