"""remove-noops: nodes that compute their input unchanged.

Identity; Dropout in inference; Cast to the type it already has; Reshape to
the shape it already has (a constant, or ``Shape(x)`` itself); Transpose with
the identity permutation; Squeeze with nothing to squeeze, or of an
Unsqueeze on the same axes; Unsqueeze/Concat/Sum/Max/Min/Mean of one thing;
Pad with all-zero pads; Expand to the shape it already has. All written as
pattern rules; checks that need shapes use the inferred ``Value.type``.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, Const, MatchResult, Optional, P, RewritePass, Rule, RuleSet, Var, const_value, rule
from graphopt.pm import register_pass

__all__ = ["NOOP_RULES", "RemoveNoOps"]

X = Var("x")


def _identity(m):
    return m["x"]


def _check_dropout(m) -> MatchResult:
    t = m.get("training")
    if t is not None and bool(np.any(m.const("training"))):
        return MatchResult.fail("training_mode is true", t)
    node = m.node("drop")
    if len(node.outputs) > 1 and (node.outputs[1].num_uses() or node.outputs[1].is_graph_output()):
        return MatchResult.fail("the dropout mask output is used", node.outputs[1])
    return MatchResult.ok()


def _check_cast(m) -> MatchResult:
    x = m["x"]
    to = m.attr("to")
    if x.dtype is None or x.dtype.value == 0:
        return MatchResult.fail("input dtype unknown", x)
    if x.dtype.value != to:
        return MatchResult.fail(f"casts {x.dtype.short} to another type", x)
    return MatchResult.ok()


def _check_reshape(m) -> MatchResult:
    x = m["x"]
    shape = [int(d) for d in np.asarray(m.const("shape")).reshape(-1)]
    allowzero = m.attr("allowzero")
    if x.shape is None:
        return MatchResult.fail("input shape unknown", x)
    if len(shape) != len(x.shape):
        return MatchResult.fail(f"reshapes rank {len(x.shape)} to rank {len(shape)}", x)
    free = 0
    for want, have in zip(shape, x.shape):
        if want == 0 and not allowzero:
            continue  # copies the input dim
        if want == -1:
            free += 1
            continue
        if not (isinstance(have, int) and have == want):
            return MatchResult.fail(f"target shape {shape} differs from input shape {list(x.shape)}", x)
    if free > 1:
        return MatchResult.fail("more than one -1 in the target shape", x)
    return MatchResult.ok()


def _check_transpose(m) -> MatchResult:
    perm = m.attr("perm")
    x = m["x"]
    if perm is None:
        if x.rank is not None and x.rank <= 1:
            return MatchResult.ok()
        return MatchResult.fail("default perm reverses the dims", x)
    if list(perm) != list(range(len(perm))):
        return MatchResult.fail(f"perm {list(perm)} is not the identity", x)
    return MatchResult.ok()


def _check_squeeze(m) -> MatchResult:
    x = m["x"]
    if m.attr("axes") is not None or m.get("axes") is not None:
        return MatchResult.fail("explicit axes are squeezed", x)
    if x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return MatchResult.fail("input shape is not static", x)
    if 1 in x.shape:
        return MatchResult.fail("input has a dim of size 1", x)
    return MatchResult.ok()


def _check_unsqueeze(m) -> MatchResult:
    axes = m.attr("axes")
    if axes is None and m.get("axes") is not None:
        axes = np.asarray(m.const("axes")).reshape(-1).tolist()
    if axes is None or len(axes):
        return MatchResult.fail("axes are not empty", m["x"])
    return MatchResult.ok()


def _check_pad(m) -> MatchResult:
    pads = m.attr("pads")
    if pads is None:
        if m.get("pads") is None:
            return MatchResult.fail("no pads given", m["x"])
        pads = np.asarray(m.const("pads")).reshape(-1).tolist()
    if any(int(p) != 0 for p in pads):
        return MatchResult.fail(f"pads {list(pads)[:8]} are not all zero", m["x"])
    return MatchResult.ok()


def _check_expand(m) -> MatchResult:
    x = m["x"]
    shape = [int(d) for d in np.asarray(m.const("shape")).reshape(-1)]
    if x.shape is None:
        return MatchResult.fail("input shape unknown", x)
    if len(shape) > len(x.shape):
        return MatchResult.fail("expand adds dims", x)
    for want, have in zip(shape[::-1], x.shape[::-1]):
        if want != 1 and not (isinstance(have, int) and have == want):
            return MatchResult.fail(f"expand to {shape} changes input shape {list(x.shape)}", x)
    return MatchResult.ok()


_SHAPE = Const("shape").where(lambda v: const_value(v).ndim == 1, "shape is not 1-D")


class ReshapeToOwnShape(Rule):
    """Reshape(x, Shape(x)) and Expand(x, Shape(x)) are x. The Shape node may
    have other users (it is kept for them), so shared intermediates are fine."""

    name = "reshape-to-own-shape"
    allow_shared_intermediates = True

    def pattern(self, p):
        own = p.Shape(X, start=A(eq=0, default=0), end=A(eq=None, default=None))
        return p.op(("Reshape", "Expand"), X, own, allowzero=A("allowzero", default=0))

    def rewrite(self, b, m):
        return m["x"]


def _axes_of(node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        c = const_value(node.inputs[1])
        return None if c is None else [int(a) for a in np.asarray(c).reshape(-1)]
    a = node.attr("axes")
    return None if a is None else [int(x) for x in a]


class SqueezeOfUnsqueeze(Rule):
    """Squeeze(Unsqueeze(x, axes), axes) is x (the same, non-negative axes)."""

    name = "squeeze-of-unsqueeze"
    allow_shared_intermediates = True

    def pattern(self, p):
        inner = p.Unsqueeze(X, Optional(Var("ua")), extra_inputs=True, bind="unsq")
        return p.Squeeze(inner, Optional(Var("sa")), extra_inputs=True, bind="sq")

    def check(self, m) -> MatchResult:
        ua, sa = _axes_of(m.node("unsq")), _axes_of(m.node("sq"))
        sq = m.node("sq")
        if sa is None and len(sq.inputs) < 2 and sq.attr("axes") is None:  # squeeze every 1
            xs = m["x"].shape
            if ua is not None and xs is not None and all(isinstance(d, int) and d != 1 for d in xs):
                return MatchResult.ok()
            return MatchResult.fail("Squeeze without axes and x may have dims of size 1", sq)
        if ua is None or sa is None:
            return MatchResult.fail("axes are not constant", sq)
        r = None if m["x"].rank is None else m["x"].rank + len(ua)
        norm = (lambda axes: sorted(a + r if a < 0 else a for a in axes)) if r is not None else sorted
        if norm(ua) != norm(sa) or (r is None and any(a < 0 for a in ua + sa)):
            return MatchResult.fail(f"squeezes {sa}, not the unsqueezed {ua}", m.node("sq"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        return m["x"]

NOOP_RULES = RuleSet([
    rule("identity", P.Identity(X), _identity),
    rule("dropout-inference", P.Dropout(X, Optional(Var("ratio")), Optional(Const("training")), bind="drop"),
         _identity, check=_check_dropout),
    rule("cast-same-type", P.Cast(X, to=A("to")), _identity, check=_check_cast),
    rule("reshape-same-shape", P.Reshape(X, _SHAPE, allowzero=A("allowzero", default=0)), _identity,
         check=_check_reshape),
    rule("transpose-identity", P.Transpose(X, perm=A("perm", default=None)), _identity, check=_check_transpose),
    rule("squeeze-nothing", P.Squeeze(X, Optional(Var("axes")), axes=A("axes", default=None)), _identity,
         check=_check_squeeze),
    rule("unsqueeze-nothing", P.Unsqueeze(X, Optional(Const("axes")), axes=A("axes", default=None)), _identity,
         check=_check_unsqueeze),
    rule("pad-zero", P.Pad(X, Optional(Const("pads")), extra_inputs=True, pads=A("pads", default=None)),
         _identity, check=_check_pad),
    rule("expand-same-shape", P.Expand(X, _SHAPE), _identity, check=_check_expand),
    rule("single-input-variadic", P.op(("Concat", "Sum", "Max", "Min", "Mean"), X), _identity),
    ReshapeToOwnShape(),
    SqueezeOfUnsqueeze(),
], name="noops")


@register_pass
class RemoveNoOps(RewritePass):
    """Remove Identity, inference Dropout, same-type Cast, and Reshape,
    Transpose, Squeeze, Unsqueeze, Pad, Expand that leave their input as is.

    >>> RemoveNoOps().run(model, PassContext()).stats      # doctest: +SKIP
    {'identity': 3, 'cast-same-type': 1}
    """

    name = "remove-noops"
    description = "remove Identity, inference Dropout, same-type Cast, and Reshape/Transpose/Squeeze/Pad/Expand no-ops"
    rules = NOOP_RULES
