"""fuse-layernorm: LayerNorm written out as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add
-> ONNX LayerNormalization (opset 17+; older models are skipped).

Variants covered: Pow(d, 2) or Mul(d, d); Div(d, std) or Mul(d, Reciprocal(std));
ReduceMean axes as attribute (opset < 18) or input; optional beta. torch's
exporter already emits LayerNormalization for nn.LayerNorm at opset 17, so on
the shipped transformers this pass has nothing to do.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var, is_constant
from graphopt.pm import register_pass

from ._common import FusionPass, last_dim, scalar

__all__ = ["FUSE_LAYERNORM", "FuseLayerNormPass"]


def _mean(x, tag: str):
    return P.ReduceMean(x, Optional(Const(f"{tag}_axes_in")), bind=tag,
                        attrs={"axes": A(f"{tag}_axes", default=None), "keepdims": A(eq=1, default=1)})


def layernorm_pattern():
    x = Var("x")
    d = P.Sub(x, _mean(x, "mean"), bind="sub")
    var = _mean(AnyOf(P.Pow(d, Const(value=2.0)), P.Mul(d, d)), "var")
    std = P.Sqrt(P.Add(var, Const("eps")))
    normed = AnyOf(P.Div(d, std), P.Mul(d, P.Reciprocal(std)), bind="normed")
    scaled = P.Mul(normed, Const("gamma"), bind="scaled")
    return AnyOf(P.Add(scaled, Const("beta"), bind="shifted"), scaled)


def _axes(m, tag: str) -> list[int] | None:
    a = m.attr(f"{tag}_axes", None)
    if a is None:
        v = m.get(f"{tag}_axes_in")
        a = None if v is None else m.const(f"{tag}_axes_in").reshape(-1).tolist()
    return None if a is None else [int(i) for i in a]


class FuseLayerNorm(Rule):
    """Decomposed LayerNorm over the last axis -> LayerNormalization(x, gamma, beta)."""

    name = "fuse-layernorm"
    benefit = 3
    commutative = True

    def pattern(self, p):
        return layernorm_pattern()

    def check(self, m):
        rank = m["x"].rank
        for tag in ("mean", "var"):
            axes = _axes(m, tag)
            if axes is None or len(axes) != 1 or not (axes[0] == -1 or (rank is not None and axes[0] == rank - 1)):
                return MatchResult.fail(f"ReduceMean ({tag}) does not reduce only the last axis: axes={axes}",
                                        m.node(tag))
        if m.get_or_none("beta") is None and any(
                u.op_type == "Add" and any(is_constant(i) for i in u.inputs) for u in m.root.consumers()):
            return MatchResult.fail("a constant Add (beta) follows; the match is taken at that Add", m.root)
        if scalar(m.const("eps")) is None:
            return MatchResult.fail("epsilon is not a scalar", m["eps"])
        h = last_dim(m["x"])
        for name in ("gamma", "beta"):
            if m.get_or_none(name) is None:
                continue
            c = m.const(name)
            if c.ndim > 1 and any(s != 1 for s in c.shape[:-1]):
                return MatchResult.fail(f"{name} is not a vector over the last axis: shape {list(c.shape)}", m[name])
            if c.size != 1 and isinstance(h, int) and c.shape[-1] != h:
                return MatchResult.fail(f"{name} length {c.shape[-1]} != hidden size {h}", m[name])
            if c.size == 1 and not isinstance(h, int):
                return MatchResult.fail(f"{name} is a scalar and the hidden size is unknown", m[name])
        return MatchResult.ok()

    def rewrite(self, b, m):
        h = last_dim(m["x"])
        dt = m.const("gamma").dtype

        def vec(name: str, default: float) -> np.ndarray:
            c = m.const(name) if m.get_or_none(name) is not None else np.asarray(default, dt)
            c = c.reshape(-1)
            return np.broadcast_to(c, (h,)).astype(dt).copy() if c.size == 1 else c.astype(dt)

        return b.LayerNormalization(m["x"], b.initializer(vec("gamma", 1.0)), b.initializer(vec("beta", 0.0)),
                                    axis=-1, epsilon=scalar(m.const("eps")))


FUSE_LAYERNORM = RuleSet([FuseLayerNorm()], name="fuse-layernorm")


@register_pass
class FuseLayerNormPass(FusionPass):
    name = "fuse-layernorm"
    description = "decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add) -> LayerNormalization"
    rules = FUSE_LAYERNORM
    needs_shapes = True
    min_opset = 17
