"""merge-reshapes: Reshape(R(x), s) -> Reshape(x, s) for R in Reshape, Flatten,
Squeeze, Unsqueeze, when ``s`` is a constant that does not copy dims (no 0
unless ``allowzero``): the result then depends only on x's element count.
"""

from __future__ import annotations

import numpy as np

from graphopt.pattern import A, Const, MatchResult, P, RewritePass, RuleSet, Var, rule
from graphopt.pm import register_pass

__all__ = ["MERGE_RESHAPES", "MergeReshapes"]


def _check(m) -> MatchResult:
    s = np.asarray(m.const("shape")).reshape(-1)
    if not m.attr("allowzero") and bool(np.any(s == 0)):
        return MatchResult.fail("outer target shape copies dims (0) from the inner result", m["shape"])
    return MatchResult.ok()


def _rewrite(b, m):
    attrs = {"allowzero": 1} if m.attr("allowzero") else {}
    return b.Reshape(m["x"], m["shape"], **attrs)


_INNER = P.op(("Reshape", "Flatten", "Squeeze", "Unsqueeze"), Var("x"), extra_inputs=True, bind="inner")

MERGE_RESHAPES = RuleSet([
    rule("merge-reshape-pair", P.Reshape(_INNER, Const("shape"), allowzero=A("allowzero", default=0)), _rewrite,
         check=_check),
], name="merge-reshapes")


@register_pass
class MergeReshapes(RewritePass):
    """Collapse Reshape chains (and Reshape after Flatten/Squeeze/Unsqueeze) into one Reshape.

    >>> MergeReshapes().run(model, PassContext()).stats     # doctest: +SKIP
    {'merge-reshape-pair': 1}
    """

    name = "merge-reshapes"
    description = "merge consecutive Reshapes (and Reshape after Flatten/Squeeze/Unsqueeze)"
    rules = MERGE_RESHAPES
