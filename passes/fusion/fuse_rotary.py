"""fuse-rotary: rotary position embedding in transformers' rotate_half form -> graphopt::RotaryEmbedding.

``q * cos + cat(-q[..., D/2:], q[..., :D/2]) * sin`` (``apply_rotary_pos_emb``), applied to Q and
to K separately, each [B, heads, S, D] after the head transpose. The halves are Slices of the
last axis (constant starts/ends after O1 folds the shape chains; TorchScript and dynamo exports
alike). Cos and Sin stay graph values — computed once per model from the position ids
(Cos/Sin of ``position_ids * inv_freq``) or folded constants — and are inputs of the fused op,
so the Q and K of every layer become two RotaryEmbedding nodes that feed the attention fusion
as separate inputs.
"""

from __future__ import annotations

from graphopt.ir import DType
from graphopt.pattern import A, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass, last_dim

__all__ = ["FUSE_ROTARY", "FuseRotaryPass"]

_BIG = 2 ** 31 - 1  # ends at or beyond this mean "to the end" (exporters write INT64_MAX or INT32_MAX)


def _half_slice(x, tag: str):
    return P.Slice(x, Const(f"{tag}_start"), Const(f"{tag}_end"), Optional(Const(f"{tag}_axes")),
                   Optional(Const(f"{tag}_steps")), bind=tag)


def rotary_pattern():
    x = Var("x")
    rot = P.Concat(P.Neg(_half_slice(x, "hi")), _half_slice(x, "lo"), axis=A("cat_axis"), bind="rot")
    return P.Add(P.Mul(x, Var("cos"), bind="xcos"), P.Mul(rot, Var("sin"), bind="rsin"), bind="out")


def _one(m, name: str, default: int | None) -> int | None:
    if m.get(name) is None:
        return default
    c = m.const(name).reshape(-1)
    return int(c[0]) if c.size == 1 else None


class FuseRotary(Rule):
    """x * cos + rotate_half(x) * sin -> graphopt::RotaryEmbedding(x, cos, sin)."""

    name = "fuse-rotary"
    benefit = 2
    commutative = True

    def pattern(self, p):
        return rotary_pattern()

    def check(self, m):
        x = m["x"]
        d, r = last_dim(x), x.rank
        if not isinstance(d, int) or d % 2 or r is None:
            return MatchResult.fail(f"the rotary dimension is unknown or odd: {d!r}", x)
        if x.dtype not in (DType.FLOAT, None):
            return MatchResult.fail("the rotated tensor is not float32", x)
        h = d // 2
        cat_axis = int(m.attr("cat_axis"))
        if cat_axis not in (-1, r - 1):
            return MatchResult.fail(f"Concat axis {cat_axis} is not the last axis", m.node("rot"))
        for tag, start, end in (("lo", 0, h), ("hi", h, d)):
            axis = _one(m, f"{tag}_axes", None if r != 1 else 0)
            step = _one(m, f"{tag}_steps", 1)
            s, e = _one(m, f"{tag}_start", None), _one(m, f"{tag}_end", None)
            if axis is None or axis not in (-1, r - 1) or step != 1:
                return MatchResult.fail(f"Slice ({tag}) is not a unit-step slice of the last axis", m.node(tag))
            if s is None or e is None or (s % d if s < 0 else s) != start or \
                    not ((e % d if e < 0 else e) == end or (end == d and e >= d)):
                return MatchResult.fail(f"Slice ({tag}) is not [{start}:{end}] of the last axis: [{s}:{e}]",
                                        m.node(tag))
        for name in ("cos", "sin"):
            v = m[name]
            if v.dtype not in (DType.FLOAT, None) or v.rank is None or v.rank > r or last_dim(v) != d:
                return MatchResult.fail(f"{name} is not a float tensor of rank <= {r} ending in {d}", v)
        if m["cos"].shape != m["sin"].shape:
            return MatchResult.fail("cos and sin have different shapes", m["sin"])
        # cos/sin must broadcast *to* x (the fused op's output has x's shape): a dim of x that is 1 or
        # unknown against a cos dim that is not 1 could broadcast x up
        for dx, dc in zip(reversed(x.shape[:-1]), reversed(m["cos"].shape[:-1])):
            if dc != 1 and dc != dx and (dx is None or dx == 1):
                return MatchResult.fail(f"cos/sin shape {list(m['cos'].shape)} may broadcast x {list(x.shape)} up",
                                        m["cos"])
        out = m["out"]
        if out.shape is not None and (len(out.shape) != r or any(
                isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(out.shape, x.shape))):
            return MatchResult.fail(f"the result's shape {list(out.shape)} is not x's {list(x.shape)}", out)
        return MatchResult.ok()

    def rewrite(self, b, m):
        y = b.RotaryEmbedding(m["x"], m["cos"], m["sin"], _domain=GRAPHOPT)
        return y


FUSE_ROTARY = RuleSet([FuseRotary()], name="fuse-rotary")


@register_pass
class FuseRotaryPass(FusionPass):
    name = "fuse-rotary"
    description = "rotary position embedding x*cos + rotate_half(x)*sin -> graphopt::RotaryEmbedding"
    rules = FUSE_ROTARY
    needs_shapes = True
