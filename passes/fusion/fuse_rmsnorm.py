"""fuse-rmsnorm: RMSNorm as transformers exports it -> graphopt::RMSNorm, and the residual Add
in front of it -> graphopt::SkipRMSNorm.

LLaMA's RMSNorm is ``w * (x * rsqrt(mean(x^2, -1) + eps))``. The exporters write
x^2 as Pow(x, 2) or Mul(x, x); rsqrt as Reciprocal(Sqrt), Div(1, Sqrt), or a Div
by the Sqrt; the ReduceMean axes as attribute (opset < 18) or input; and, for
half-precision models, a Cast to float32 of x and a Cast back of the normalized
value (``hidden_states.to(torch.float32)`` ... ``.to(input_dtype)``) around the
float32 computation — the fused op then reads the un-cast input. ONNX's own
RMSNormalization (opset 23) over the last axis becomes graphopt::RMSNorm too.

SkipRMSNorm: ``RMSNorm(a + b)`` of a pre-norm decoder, where the sum is the
residual stream the next block adds to; the fused node's second output takes
over the sum's other uses.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType
from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, last_dim, scalar

__all__ = ["FUSE_RMSNORM", "FuseRMSNormPass"]

_F32 = DType.FLOAT.value


def rmsnorm_pattern():
    x = Var("x")
    sq = AnyOf(P.Pow(x, Const(value=2.0)), P.Mul(x, x))
    ms = P.ReduceMean(sq, Optional(Const("axes_in")), bind="mean",
                      attrs={"axes": A("axes", default=None), "keepdims": A(eq=1, default=1)})
    rms = P.Sqrt(P.Add(ms, Const("eps")))
    normed = AnyOf(P.Mul(x, P.Reciprocal(rms)), P.Mul(x, P.Div(Const(value=1.0), rms)), P.Div(x, rms), bind="normed")
    back = AnyOf(P.Cast(normed, to=A("out_to"), bind="out_cast"), normed)
    return P.Mul(back, Const("gamma"), bind="scaled")


class FuseRMSNorm(Rule):
    """w * (x * rsqrt(mean(x^2, -1) + eps)) [with Cast-to-float32 pairs] -> graphopt::RMSNorm(x, w)."""

    name = "fuse-rmsnorm"
    benefit = 3
    commutative = True

    def pattern(self, p):
        return rmsnorm_pattern()

    def check(self, m):
        rank = m["x"].rank
        axes = m.attr("axes", None)
        if axes is None and m.get("axes_in") is not None:
            axes = m.const("axes_in").reshape(-1).tolist()
        if axes is None or len(axes) != 1 or int(axes[0]) not in (-1, rank - 1 if rank is not None else -1):
            return MatchResult.fail(f"ReduceMean does not reduce only the last axis: axes={axes}", m.node("mean"))
        if scalar(m.const("eps")) is None or scalar(m.const("eps")) < 0:
            return MatchResult.fail("epsilon is not a non-negative scalar", m["eps"])
        if m["x"].dtype not in (DType.FLOAT, None):
            return MatchResult.fail("the normalization is not computed in float32", m["x"])
        h = last_dim(m["x"])
        g = m.const("gamma")
        if g.ndim > 1 and any(s != 1 for s in g.shape[:-1]):
            return MatchResult.fail(f"gamma is not a vector over the last axis: shape {list(g.shape)}", m["gamma"])
        if not isinstance(h, int):
            return MatchResult.fail("the hidden size is unknown", m["x"])
        if g.size != 1 and g.shape[-1] != h:
            return MatchResult.fail(f"gamma length {g.shape[-1]} != hidden size {h}", m["gamma"])
        if "out_cast" in m and _uncast(m) is None:
            return MatchResult.fail("the Cast after the normalization is not the inverse of a Cast of its input",
                                    m.node("out_cast"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        x = m["x"]
        h = last_dim(x)
        if "out_cast" in m:
            x = _uncast(m)
        g = m.const("gamma").reshape(-1)
        gamma = np.broadcast_to(g, (h,)) if g.size == 1 else g
        dt = x.dtype.numpy if x.dtype is not None else np.float32
        return b.RMSNorm(x, b.initializer(np.ascontiguousarray(gamma.astype(dt))), epsilon=scalar(m.const("eps")),
                         _domain=GRAPHOPT)


def _uncast(m):
    """x0 when x = Cast(x0 of type T, to=float32) and the output Cast goes back to T, else None."""
    p = m["x"].producer()
    if p is None or p.op_type != "Cast" or p.domain != "" or int(p.attr("to", 0)) != _F32:
        return None
    x0 = p.inputs[0]
    if x0 is None or x0.dtype is None or x0.dtype.value != int(m.attr("out_to")):
        return None
    return x0


class OnnxRMSNormalization(Rule):
    """ONNX RMSNormalization (opset 23) over the last axis -> graphopt::RMSNorm."""

    name = "fuse-rmsnorm-onnx"
    benefit = 1

    def pattern(self, p):
        return p.RMSNormalization(Var("x"), Const("gamma").rank(1), axis=A("axis", default=-1),
                                  epsilon=A("epsilon", default=1e-5), stash_type=A(eq=1, default=1), bind="rms")

    def check(self, m):
        rank = m["x"].rank
        axis = int(m.attr("axis"))
        if not (axis == -1 or (rank is not None and axis == rank - 1)):
            return MatchResult.fail(f"RMSNormalization axis={axis} is not the last axis", m.node("rms"))
        if len(m.node("rms").outputs) > 1 and any(o.num_uses() for o in m.node("rms").outputs[1:]):
            return MatchResult.fail("RMSNormalization's inv_std_dev output is used", m.node("rms"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        return b.RMSNorm(m["x"], m["gamma"], epsilon=float(m.attr("epsilon")), _domain=GRAPHOPT)


class FuseSkipRMSNorm(Rule):
    """graphopt::RMSNorm(Add(X, Skip)) -> graphopt::SkipRMSNorm(X, Skip, Gamma) (sum as the second output)."""

    name = "fuse-skip-rmsnorm"
    benefit = 2
    commutative = True
    allow_shared_intermediates = True  # the sum is the residual stream; check() keeps the rest private

    def pattern(self, p):
        total = P.Add(Var("x"), Var("skip"), bind="sum")
        return P.RMSNorm(total, Var("gamma"), epsilon=A("epsilon", default=1e-6), domain=GRAPHOPT, bind="rms")

    def check(self, m):
        x, skip = m["x"], m["skip"]
        if x.shape is None or skip.shape is None or len(x.shape) != len(skip.shape):
            return MatchResult.fail("the residual operands' shapes are unknown or of different ranks", m.node("sum"))
        for dx, ds in zip(x.shape, skip.shape):
            if dx != ds:  # symbolic dims compare by name; a broadcast residual stays an Add
                return MatchResult.fail(f"residual operands differ in shape: {list(x.shape)} vs {list(skip.shape)}",
                                        m.node("sum"))
        if x.dtype is not skip.dtype:
            return MatchResult.fail("residual operands differ in dtype", m.node("sum"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        y, s = b.SkipRMSNorm(m["x"], m["skip"], m["gamma"], epsilon=float(m.attr("epsilon")),
                             _domain=GRAPHOPT, _outputs=2)
        total = m["sum"]
        y.type = m["rms"].type
        s.type = total.type
        if total.num_uses() > 1 or total.is_graph_output():
            # the sum's other users (the next residual Add) may come before the norm: place the fused node
            # where the sum was computed, and let its second output carry the residual stream
            node = s.producer()
            node.graph.move_before(m.node("sum"), node)
            total.replace_all_uses_with(s, outputs=True)
        return y


FUSE_RMSNORM = RuleSet([FuseRMSNorm(), OnnxRMSNormalization(), FuseSkipRMSNorm()], name="fuse-rmsnorm")


@register_pass
class FuseRMSNormPass(FusionPass):
    name = "fuse-rmsnorm"
    description = "RMSNorm (Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul, Cast pairs, RMSNormalization) -> " \
                  "graphopt::RMSNorm; with the residual Add in front -> graphopt::SkipRMSNorm"
    rules = FUSE_RMSNORM
    needs_shapes = True
