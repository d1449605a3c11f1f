"""merge-transposes: Transpose(Transpose(x, p), q) -> Transpose(x, p∘q).

The composed permutation may be the identity; remove-noops then drops it.
"""

from __future__ import annotations

from graphopt.pattern import A, MatchResult, Rule, RuleSet, RewritePass, Var, register_rule
from graphopt.pm import register_pass

__all__ = ["MergeTransposePair", "MERGE_TRANSPOSES", "MergeTransposes"]


@register_rule
class MergeTransposePair(Rule):
    """Two Transposes in a row become one (the inner must have no other user)."""

    name = "merge-transpose-pair"

    def pattern(self, p):
        inner = p.Transpose(Var("x"), perm=A("p", default=None), bind="inner")
        return p.Transpose(inner, perm=A("q", default=None), bind="outer")

    def check(self, m) -> MatchResult:
        p, q = m.attr("p"), m.attr("q")
        if p is None or q is None:
            # the default perm reverses the dims; it needs the rank
            if m["x"].rank is None:
                return MatchResult.fail("default perm and unknown rank", m["x"])
        elif len(p) != len(q):
            return MatchResult.fail(f"perms {list(p)} and {list(q)} have different lengths", m.node("outer"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        r = m["x"].rank
        p = list(m.attr("p")) if m.attr("p") is not None else list(range(r - 1, -1, -1))
        q = list(m.attr("q")) if m.attr("q") is not None else list(range(len(p) - 1, -1, -1))
        return b.Transpose(m["x"], perm=[p[i] for i in q])


MERGE_TRANSPOSES = RuleSet([MergeTransposePair()], name="merge-transposes")


@register_pass
class MergeTransposes(RewritePass):
    """Fold chains of Transposes into one.

    >>> MergeTransposes().run(model, PassContext()).stats     # doctest: +SKIP
    {'merge-transpose-pair': 2}
    """

    name = "merge-transposes"
    description = "merge consecutive Transposes into one"
    rules = MERGE_TRANSPOSES
