"""fuse-conv-activation: Act(Conv(x, W, B)) -> graphopt::FusedConv(x, W, B, activation=Act).

Act is Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid, Clip (constant bounds, e.g. ReLU6)
or graphopt::Gelu. Runs after fuse-conv-bn so the folded Conv is the producer.
"""

from __future__ import annotations

from graphopt.pattern import MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from graphopt.ops.linear import CONV_ATTRS

from ._common import GRAPHOPT, FusionPass, activation_of, activation_pattern

__all__ = ["FUSE_CONV_ACTIVATION", "FuseConvActivationPass"]


class FuseConvActivation(Rule):
    """Activation(Conv(...)) -> FusedConv(..., activation)."""

    name = "fuse-conv-activation"
    benefit = 2

    def pattern(self, p):
        return activation_pattern(P.Conv(Var("x"), Var("w"), Optional(Var("b")), bind="conv"))

    def check(self, m):
        if activation_of(m.node("act")) is None:
            return MatchResult.fail("Clip bounds are not constant", m.node("act"))
        if m["x"].rank is not None and m["x"].rank < 3:
            return MatchResult.fail("Conv input rank < 3", m["x"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        act, params = activation_of(m.node("act"))
        conv = m.node("conv")
        attrs = {k: conv.attrs[k] for k in CONV_ATTRS if k in conv.attrs}
        attrs["activation"] = act
        if params:
            attrs["activation_params"] = params
        ins = [m["x"], m["w"]] + ([m["b"]] if m.get_or_none("b") is not None else [])
        return b.op("FusedConv", ins, attrs, domain=GRAPHOPT,
                    name=conv.name).outputs[0]


FUSE_CONV_ACTIVATION = RuleSet([FuseConvActivation()], name="fuse-conv-activation")


@register_pass
class FuseConvActivationPass(FusionPass):
    name = "fuse-conv-activation"
    description = "Conv followed by Relu/Clip/Sigmoid/Tanh/LeakyRelu/HardSigmoid/Gelu -> graphopt::FusedConv"
    rules = FUSE_CONV_ACTIVATION
