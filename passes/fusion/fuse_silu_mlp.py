"""fuse-silu-mlp: SiLU (x * Sigmoid(x)) -> graphopt::Silu, and the gated MLP of LLaMA-style
decoders, ``down(silu(gate(x)) * up(x))``, -> one packed gate|up projection + graphopt::SiluMul.

The gate and up projections read the same input, so their weights are packed side by side,
``W = [W_gate | W_up]`` ([K, 2I]), and computed by one GEMM; graphopt::SiluMul then forms
``silu(gate) * up`` from its two halves. The packed projection is an ordinary ``MatMul`` with a
constant weight, so the quantization annotators, QDQ insertion and the native lowering treat it
as one more linear (per-output-channel int8 scales of the packed weight are those of the two
halves). The down projection is left as it is (it is a plain linear). Biases of the two
projections (``Add(MatMul, b)``) are packed too.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType, TensorType
from graphopt.pattern import AnyOf, Const, MatchResult, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass

__all__ = ["FUSE_SILU_MLP", "FuseSiluMlpPass"]


def silu_pattern(x):
    return AnyOf(P.Mul(x, P.Sigmoid(x)), P.Silu(x, domain=GRAPHOPT))


def _proj(tag: str):
    x = Var("x")
    mm = P.MatMul(x, Const(f"w_{tag}").rank(2), bind=f"mm_{tag}")
    return AnyOf(P.Add(mm.uses(1), Const(f"b_{tag}").rank(1), bind=f"add_{tag}"), mm)


class FuseSilu(Rule):
    """x * Sigmoid(x) -> graphopt::Silu(x)."""

    name = "fuse-silu"
    benefit = 1
    commutative = True

    def pattern(self, p):
        x = Var("x")
        return P.Mul(x, P.Sigmoid(x))

    def check(self, m):
        if m["x"].dtype not in (DType.FLOAT, DType.FLOAT16, DType.BFLOAT16, None):
            return MatchResult.fail("SiLU of a non-float tensor", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.Silu(m["x"], _domain=GRAPHOPT)


class FuseGatedSiluMlp(Rule):
    """silu(x @ Wg [+ bg]) * (x @ Wu [+ bu]) -> graphopt::SiluMul(x @ [Wg | Wu] [+ [bg | bu]])."""

    name = "fuse-silu-gated-mlp"
    benefit = 3  # before the plain SiLU rule: the gate's Mul(x, Sigmoid(x)) is part of this pattern
    commutative = True

    def pattern(self, p):
        gate = _proj("g")
        return P.Mul(silu_pattern(gate), _proj("u"), bind="gated")

    def check(self, m):
        wg, wu = m.const("w_g"), m.const("w_u")
        if wg.shape != wu.shape or wg.dtype != wu.dtype or wg.dtype != np.float32:
            return MatchResult.fail(f"gate and up weights differ: {wg.shape} {wg.dtype} vs {wu.shape} {wu.dtype}",
                                    m["w_u"])
        if ("b_g" in m) != ("b_u" in m):
            return MatchResult.fail("only one of the gate and up projections has a bias", m["gated"])
        if "b_g" in m and (m.const("b_g").shape != (wg.shape[1],) or m.const("b_u").shape != (wg.shape[1],)):
            return MatchResult.fail("bias lengths differ from the projection width", m["b_g"])
        if m["x"].rank is None or m["x"].rank < 2:
            return MatchResult.fail("the MLP input's rank is unknown or < 2", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        w = np.ascontiguousarray(np.concatenate([m.const("w_g"), m.const("w_u")], axis=1))
        x = m["x"]
        y = b.MatMul(x, b.initializer(w))
        if "b_g" in m:
            y = b.Add(y, b.initializer(np.concatenate([m.const("b_g"), m.const("b_u")])))
        if x.shape is not None:
            y.type = TensorType(DType.FLOAT, tuple(x.shape[:-1]) + (w.shape[1],))
        out = b.SiluMul(y, _domain=GRAPHOPT)
        out.type = m["gated"].type
        return out


FUSE_SILU_MLP = RuleSet([FuseGatedSiluMlp(), FuseSilu()], name="fuse-silu-mlp")


@register_pass
class FuseSiluMlpPass(FusionPass):
    name = "fuse-silu-mlp"
    description = "SiLU -> graphopt::Silu; gated MLP silu(gate(x)) * up(x) -> packed gate|up MatMul + graphopt::SiluMul"
    rules = FUSE_SILU_MLP
    needs_shapes = True
