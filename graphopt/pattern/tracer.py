"""``explain(rule, model)``: why a rule does (not) fire — the best partial match
and the reason it failed, like onnxscript's MatchingTracer."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph, Model, Node
from .driver import RuleIndex, _Driver
from .matcher import Failure, Tracer
from .rule import Rule

__all__ = ["explain", "Explanation"]


@dataclass
class Explanation:
    """What :func:`explain` found. ``str()`` gives a readable report."""

    rule: str
    candidates: int = 0
    matches: int = 0
    best: Failure | None = None
    matched_roots: list[Node] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return self.best.reason if self.best is not None else ""

    def __str__(self) -> str:
        lines = [f"rule {self.rule}: {self.candidates} candidate root(s), {self.matches} would rewrite"]
        for n in self.matched_roots[:5]:
            lines.append(f"  matches at {n.label()}")
        if self.best is not None:
            root = self.best.root.label() if self.best.root is not None else "?"
            lines.append(f"  best partial match at {root}: {int(self.best.depth)} pattern node(s) matched")
            for n in self.best.matched:
                lines.append(f"    {n.label()}")
            lines.append(f"  failed because: {self.best.reason}")
        elif not self.candidates:
            lines.append("  no node has the root op type of the pattern")
        return "\n".join(lines)


def explain(rule: Rule | str, model: Model | Graph) -> Explanation:
    """Try ``rule`` at every candidate root without rewriting; report the
    matches and the deepest failure.

    >>> print(explain(FuseConvBatchNorm(), model))   # doctest: +SKIP
    rule fuse-conv-bn: 1 candidate root(s), 0 would rewrite
      best partial match at BatchNormalization -> %y: 1 pattern node(s) matched
        BatchNormalization -> %y
      failed because: Relu -> %r is not Conv
    """
    if isinstance(rule, str):
        from .rule import get_rule

        rule = get_rule(rule)
    graph = model.graph if isinstance(model, Model) else model
    index = RuleIndex([rule])
    tracer = Tracer()
    dry = _Driver(graph, index, 1, tracer)
    dry.dry = True
    out = Explanation(rule.rule_name)
    for node in graph:
        if rule not in index.candidates(node):
            continue
        out.candidates += 1
        if dry._try(rule, node) is not None:
            out.matches += 1
            out.matched_roots.append(node)
    out.best = tracer.best if not out.matches else None
    return out
