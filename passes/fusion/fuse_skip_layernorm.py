"""fuse-skip-layernorm: LayerNormalization(X + Skip [+ Bias]) -> graphopt::SkipLayerNorm.

The residual Add of a transformer block, optionally with the bias Add of the
dense layer before it (``Add(Add(MatMul(h, W), b), residual)``), folds into one
op. When the sum itself is used elsewhere (pre-LN blocks), SkipLayerNorm's
second output takes over those uses.
"""

from __future__ import annotations

from graphopt.ir import Value
from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, last_dim

__all__ = ["FUSE_SKIP_LAYERNORM", "FuseSkipLayerNormPass"]


def _broadcast_ok(x: Value, skip: Value) -> str | None:
    """onnxruntime's kernel takes Skip of X's shape or broadcast over batch; X must be the full shape."""
    if x.rank is None or skip.rank is None:
        return "ranks of the residual operands are unknown"
    if x.rank not in (2, 3) or skip.rank not in (2, 3) or skip.rank > x.rank:
        return f"residual operands have ranks {x.rank} and {skip.rank} (need 2-D or 3-D)"
    for dx, ds in zip(x.shape[::-1], skip.shape[::-1]):
        if dx == 1 and ds != 1:
            return "the first operand is broadcast along a dimension"
    return None


def skip_ln_pattern():
    biased = P.Add(Var("x"), Const("bias").rank(1), bind="bias_add").uses(1)
    total = AnyOf(P.Add(biased, Var("skip"), bind="sum"), P.Add(Var("x"), Var("skip"), bind="sum"))
    return P.LayerNormalization(total, Var("gamma").rank(1), Optional(Var("beta").rank(1)),
                                axis=A("axis", default=-1), epsilon=A("epsilon", default=1e-5),
                                stash_type=A(eq=1, default=1), bind="ln")


class FuseSkipLayerNorm(Rule):
    """LayerNormalization(Add([Add(X, Bias)], Skip)) -> SkipLayerNorm(X, Skip, Gamma, Beta, Bias)."""

    name = "fuse-skip-layernorm"
    benefit = 2
    commutative = True
    allow_shared_intermediates = True  # the sum may be used on (pre-LN); check() keeps the rest private

    def pattern(self, p):
        return skip_ln_pattern()

    def check(self, m):
        ln = m.node("ln")
        if len(ln.outputs) > 1 and any(o.num_uses() for o in ln.outputs[1:]):
            return MatchResult.fail("LayerNormalization's mean/inv_std outputs are used", ln)
        x, skip = m["x"], m["skip"]
        axis = int(m.attr("axis"))
        if x.rank is not None and axis not in (-1, x.rank - 1):
            return MatchResult.fail(f"LayerNormalization axis={axis} is not the last axis", ln)
        why = _broadcast_ok(x, skip)
        if why is not None:
            return MatchResult.fail(why, m.node("sum"))
        h = last_dim(x)
        if not isinstance(h, int) or last_dim(skip) not in (h, None) or last_dim(m["gamma"]) not in (h, None):
            return MatchResult.fail("hidden sizes of input, skip and gamma differ or are unknown", m.node("sum"))
        if "bias" in m and m.const("bias").shape[0] != h:
            return MatchResult.fail("bias length differs from the hidden size", m["bias"])
        return MatchResult.ok()

    def rewrite(self, b, m):
        beta = m.get_or_none("beta")
        bias = m.get_or_none("bias")
        y, s = b.SkipLayerNorm(m["x"], m["skip"], m["gamma"], beta, bias, epsilon=float(m.attr("epsilon")),
                               _domain=GRAPHOPT, _outputs=2)
        total = m["sum"]
        if total.num_uses() > 1 or total.is_graph_output():
            # the sum's other users may come before the LayerNorm: place the fused node where the sum was
            sln = s.producer()
            sln.graph.move_before(m.node("sum"), sln)
            s.type = total.type
            total.replace_all_uses_with(s, outputs=True)  # pre-LN: the residual stream continues from here
        return y


FUSE_SKIP_LAYERNORM = RuleSet([FuseSkipLayerNorm()], name="fuse-skip-layernorm")


@register_pass
class FuseSkipLayerNormPass(FusionPass):
    name = "fuse-skip-layernorm"
    description = "LayerNormalization(X + Skip [+ bias]) -> graphopt::SkipLayerNorm"
    rules = FUSE_SKIP_LAYERNORM
    needs_shapes = True
