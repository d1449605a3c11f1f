"""Declarative pattern rewriting.

A rule is a pattern (a small graph built with ``P``), a ``check`` that says
why a structural match is rejected, and a ``rewrite`` that builds the
replacement. Rules compose into a :class:`RuleSet` with ``+`` and run with
:func:`apply_rules` or as a pass with :class:`RewritePass`.

A complete rule, MatMul + bias Add -> Gemm for 2-D operands::

    from graphopt.pattern import Const, MatchResult, Rule, RuleSet, RewritePass, Var, apply_rules, explain

    class FuseMatMulAddToGemm(Rule):
        name = "fuse-matmul-add-gemm"
        benefit = 2
        commutative = True          # Add(bias, mm) matches too

        def pattern(self, p):
            mm = p.MatMul(Var("x").rank(2), Const("w").rank(2), bind="mm")
            return p.Add(mm, Const("b"), bind="add")

        def check(self, m):
            if m.const("b").ndim > 1 and m.const("b").shape[0] != 1:
                return MatchResult.fail("bias is not a row vector", m["b"])
            if m.has_external_uses("w"):
                return MatchResult.fail("weight is shared outside the match", m["w"])
            return MatchResult.ok()

        def rewrite(self, b, m):
            return b.Gemm(m["x"], m["w"], m["b"])

    RULES = RuleSet([FuseMatMulAddToGemm()])
    counts = apply_rules(model, RULES)               # {"fuse-matmul-add-gemm": 6}
    print(explain(FuseMatMulAddToGemm(), model))     # best partial match + reason
    GEMM_PASS = RewritePass(RULES, name="fuse-gemm") # or subclass + @register_pass

A runnable version with its output is in the docstring of :class:`Rule`.

The driver deletes the matched nodes when they become dead, refuses matches
whose intermediate values are used outside the match (``m.escaping()``),
keeps graph-output names, and stamps ``node.meta["origin"]`` with the rule
name. Small rules can be data: ``RuleSet([(P.Identity(Var("x")), lambda m: m["x"])])``.
"""

from .driver import RewritePass, RuleIndex, apply_rules
from .dsl import COMMUTATIVE_OPS, A, AnyOf, Const, OpPattern, Optional, P, PatternBuilder, ValuePattern, Var
from .match import Match, MatchError, MatchResult
from .matcher import Matcher, Tracer
from .rule import Builder, Rule, RuleSet, get_rule, register_rule, registered_rules, rule
from .tracer import Explanation, explain
from .values import can_replace, const_value, is_constant, remove_dead, replace_value

__all__ = [
    "A", "AnyOf", "Const", "OpPattern", "Optional", "P", "PatternBuilder", "ValuePattern", "Var",
    "COMMUTATIVE_OPS", "Match", "MatchError", "MatchResult", "Matcher", "Tracer", "Builder", "Rule", "RuleSet",
    "rule", "register_rule", "get_rule", "registered_rules", "RewritePass", "RuleIndex", "apply_rules", "explain", "Explanation", "const_value", "is_constant",
    "can_replace", "replace_value", "remove_dead",
]
