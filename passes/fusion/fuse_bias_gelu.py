"""fuse-bias-gelu: graphopt::Gelu(X + B) with a constant 1-D bias -> graphopt::BiasGelu(X, B).

Runs after fuse-gelu; in BERT's FFN the bias Add of the first dense layer
feeds the GELU, so the MatMul is left alone and the bias rides in the
activation kernel (onnxruntime's BiasGelu / FastGelu).
"""

from __future__ import annotations

from graphopt.pattern import A, Const, MatchResult, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, last_dim

__all__ = ["FUSE_BIAS_GELU", "FuseBiasGeluPass"]


class FuseBiasGelu(Rule):
    """Gelu(Add(X, B)) -> BiasGelu(X, B)."""

    name = "fuse-bias-gelu"
    benefit = 2
    commutative = True

    def pattern(self, p):
        add = P.Add(Var("x"), Const("bias"), bind="add")
        return P.Gelu(add, domain=GRAPHOPT, approximate=A("approximate", default="none"), bind="gelu")

    def check(self, m):
        bias = m.const("bias")
        if bias.ndim != 1:
            return MatchResult.fail(f"bias has rank {bias.ndim}, BiasGelu needs a 1-D bias", m["bias"])
        d = last_dim(m["x"])
        if not isinstance(d, int):
            return MatchResult.fail("the input's last dimension is unknown", m["x"])
        if d != bias.shape[0]:
            return MatchResult.fail(f"bias length {bias.shape[0]} != last dimension {d}", m["bias"])
        if m["x"].rank is not None and m["x"].rank < 1:
            return MatchResult.fail("input is a scalar", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        approx = m.attr("approximate")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return b.BiasGelu(m["x"], m["bias"], approximate=approx, _domain=GRAPHOPT)


FUSE_BIAS_GELU = RuleSet([FuseBiasGelu()], name="fuse-bias-gelu")


@register_pass
class FuseBiasGeluPass(FusionPass):
    name = "fuse-bias-gelu"
    description = "graphopt::Gelu(X + bias) -> graphopt::BiasGelu"
    rules = FUSE_BIAS_GELU
    needs_shapes = True
