"""fuse-conv-bn: BatchNormalization (inference) after Conv folds into the Conv's weights.

W' = W * s / sqrt(var + eps) (per output channel), B' = (B - mean) * s / sqrt(var + eps) + t.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import FusionPass

__all__ = ["FUSE_CONV_BN", "FuseConvBatchNormPass", "fold_bn"]


def fold_bn(w: np.ndarray, b: np.ndarray, s: np.ndarray, t: np.ndarray, mean: np.ndarray, var: np.ndarray,
            eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight, bias), computed in float64 and returned in W's dtype."""
    k = s.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    w2 = w.astype(np.float64) * k.reshape((-1,) + (1,) * (w.ndim - 1))
    b2 = (b.astype(np.float64) - mean) * k + t
    return w2.astype(w.dtype), b2.astype(w.dtype)


class FuseConvBatchNorm(Rule):
    """BatchNormalization(Conv(x, W, B?)) -> Conv(x, W', B')."""

    name = "fuse-conv-bn"
    benefit = 3

    def pattern(self, p):
        conv = P.Conv(Var("x"), Const("w"), Optional(Const("b")), bind="conv")
        return P.BatchNormalization(conv, Const("s"), Const("t"), Const("mean"), Const("var"), bind="bn",
                                    epsilon=A("epsilon", default=1e-5), training_mode=A(eq=0, default=0))

    def check(self, m):
        bn = m.node("bn")
        if len(bn.outputs) > 1 and any(o.num_uses() or o.is_graph_output() for o in bn.outputs[1:]):
            return MatchResult.fail("BatchNormalization's running statistics outputs are used", bn)
        w = m.const("w")
        c = w.shape[0]
        for name in ("s", "t", "mean", "var"):
            if m.const(name).size != c:
                return MatchResult.fail(f"BatchNormalization {name} has {m.const(name).size} values, "
                                        f"the Conv has {c} output channels", m[name])
        if np.any(m.const("var").astype(np.float64) + float(m.attr("epsilon")) <= 0):
            return MatchResult.fail("BatchNormalization variance + epsilon is not positive", m["var"])
        if w.dtype.kind != "f":
            return MatchResult.fail("Conv weight is not floating point", m["w"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        w = m.const("w")
        bias = m.const_or("b", np.zeros(w.shape[0], w.dtype))
        w2, b2 = fold_bn(w, bias.reshape(-1), *(m.const(n).reshape(-1) for n in ("s", "t", "mean", "var")),
                         float(m.attr("epsilon")))
        conv = m.node("conv")
        base = conv.name or "conv"
        return b.op("Conv", [m["x"], b.initializer(w2, f"{base}/bn_weight"), b.initializer(b2, f"{base}/bn_bias")],
                    dict(conv.attrs), name=conv.name).outputs[0]


FUSE_CONV_BN = RuleSet([FuseConvBatchNorm()], name="fuse-conv-bn")


@register_pass
class FuseConvBatchNormPass(FusionPass):
    name = "fuse-conv-bn"
    description = "fold inference BatchNormalization into the preceding Conv's weights and bias"
    rules = FUSE_CONV_BN
