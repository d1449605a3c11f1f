"""The greedy rewrite driver (MLIR-style) and the RewritePass adapter.

A worklist seeded with the graph's nodes in topological order; at each node
the rules whose root op type matches are tried in order of ``benefit`` (then
declaration). A successful rewrite puts the new nodes, the users of the
replacement and the producers feeding the removed nodes on the next round's
worklist. Rounds repeat until nothing fires; more than ``max_iterations``
rounds is an error naming the rules that kept firing.

The driver, not the rules, enforces: intermediate values of a match do not
escape it, graph outputs keep their names, the replacement's dtype and
static shape agree with the replaced value, the rule's name is stamped into
``node.meta["origin"]``, and dead matched nodes (and initializers they alone
used) are removed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import ClassVar

from ..errors import PassError
from ..ir import NODE_PROPS, Graph, Model, Node, TensorType, Value
from ..pm import Pass, PassContext, PassResult
from .match import Match
from .matcher import Matcher, Tracer
from .rule import Builder, Rule, RuleSet
from .values import can_replace, remove_dead

__all__ = ["apply_rules", "RewritePass", "RuleIndex"]

logger = logging.getLogger(__name__)


class RuleIndex:
    """Rules grouped by the op types their root can match (anchor index), each
    list ordered by ``-benefit`` then declaration order."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        ordered = sorted(enumerate(rules), key=lambda ir: (-ir[1].benefit, ir[0]))
        self.rules = [r for _, r in ordered]
        self.by_op: dict[str, list[Rule]] = {}
        self.wildcard: list[Rule] = []
        for r in self.rules:
            ops = r.root_pattern().op_types()
            if ops is None:
                self.wildcard.append(r)
            else:
                for op in ops:
                    self.by_op.setdefault(op, []).append(r)
        if self.wildcard:
            for op, lst in self.by_op.items():
                merged = [r for r in self.rules if r in lst or r in self.wildcard]
                self.by_op[op] = merged

    def candidates(self, node: Node) -> list[Rule]:
        return self.by_op.get(node.op_type, self.wildcard)


def _types_compatible(old: Value, new: Value) -> str | None:
    a, b = old.type, new.type
    if not isinstance(a, TensorType) or not isinstance(b, TensorType):
        return None
    if a.dtype.value and b.dtype.value and a.dtype is not b.dtype:
        return f"dtype {b.dtype.short} replaces {a.dtype.short}"
    if a.shape is not None and b.shape is not None:
        if len(a.shape) != len(b.shape):
            return f"rank {len(b.shape)} replaces rank {len(a.shape)}"
        for x, y in zip(a.shape, b.shape):
            if isinstance(x, int) and isinstance(y, int) and x != y:
                return f"shape {list(b.shape)} replaces {list(a.shape)}"
    return None


class _Driver:
    def __init__(self, graph: Graph, index: RuleIndex, max_iterations: int,
                 tracer: Tracer | None = None) -> None:
        self.graph = graph
        self.index = index
        self.max_iterations = max_iterations
        self.tracer = tracer
        self.counts: Counter[str] = Counter()
        self.dry = False  # explain(): run checks and rewrites, then roll back

    def run(self) -> Counter[str]:
        work: list[Node] = list(self.graph)
        rounds = 0
        while work:
            rounds += 1
            fired: Counter[str] = Counter()
            nxt: dict[Node, None] = {}
            for node in work:
                if node.graph is not self.graph:
                    continue  # removed by an earlier rewrite
                for r in self.index.candidates(node):
                    touched = self._try(r, node)
                    if touched is not None:
                        fired[r.rule_name] += 1
                        for t in touched:
                            nxt[t] = None
                        break
            self.counts.update(fired)
            if not fired:
                break
            if rounds >= self.max_iterations:
                top = ", ".join(f"{k} ({v}x)" for k, v in fired.most_common())
                raise PassError(f"pattern rewriting did not converge in {self.max_iterations} iterations; "
                                f"rules still firing in the last one: {top}")
            work = [n for n in nxt if n.graph is self.graph]
            if work:
                # keep the worklist in graph (topological) order
                pos = {n: i for i, n in enumerate(self.graph)}
                work.sort(key=pos.__getitem__)
        return self.counts

    def _try(self, r: Rule, node: Node) -> list[Node] | None:
        matcher = Matcher(commutative=r.commutative, tracer=self.tracer)
        for m in matcher.match(r.root_pattern(), node):
            touched = self._apply(r, node, m)
            if touched is not None:
                return touched
        return None

    def _fail(self, m: Match, depth_bonus: float, reason: str) -> None:
        if self.tracer is not None:
            self.tracer.fail(len(m.nodes) + depth_bonus, reason, m.nodes)

    def _apply(self, r: Rule, node: Node, m: Match) -> list[Node] | None:
        name = r.rule_name
        if not r.allow_shared_intermediates:
            esc = m.escaping()
            if esc:
                v, user = esc[0]
                where = "is a graph output" if user is None else f"is used by {user.label()} outside the match"
                self._fail(m, 0.5, f"intermediate %{v.name} {where}")
                return None
        res = r.run_check(m)
        if not res:
            self._fail(m, 0.75, f"check failed: {res.describe()}")
            return None
        b = Builder(self.graph, node, name)
        try:
            out = r.rewrite(b, m)
        except Exception as e:
            b.rollback()
            raise PassError(f"rule {name} failed rewriting at {node.label()}: {type(e).__name__}: {e}") from e
        if out is None:
            b.rollback()
            self._fail(m, 0.75, "rewrite declined")
            return None
        root_node = m.root.producer()
        assert root_node is not None
        if isinstance(out, Value):
            pairs = [(m.root, out)]
        else:
            outs = list(out)
            if len(outs) != len(root_node.outputs):
                b.rollback()
                raise PassError(f"rule {name} returned {len(outs)} values for {root_node.label()} "
                                f"with {len(root_node.outputs)} outputs")
            pairs = [(o, n) for o, n in zip(root_node.outputs, outs) if n is not None and n is not o]
        for old, new in pairs:
            reason = can_replace(old, new)
            if reason is not None:
                b.rollback()
                self._fail(m, 0.9, reason)
                return None
            bad = _types_compatible(old, new)
            if bad is not None:
                b.rollback()
                raise PassError(f"rule {name} at {root_node.label()}: replacement %{new.name} has an incompatible "
                                f"type: {bad}")
        if self.dry:
            b.rollback()
            return [node]
        from graphopt.quant.decision import merge_props  # lazy: graphopt.quant builds on the pass manager

        props: dict[str, str] = {}
        for n in m.nodes:  # the matched nodes' ONNX metadata (a sparse-kernel mark, a precision decision) carries over
            props = merge_props(props, n.meta.get(NODE_PROPS) or {})
        if props:
            for n in b.created:
                n.meta[NODE_PROPS] = {**props, **(n.meta.get(NODE_PROPS) or {})}
        users: list[Node] = []
        for old, new in pairs:
            if new.type is None or (isinstance(new.type, TensorType) and new.type.shape is None
                                    and isinstance(old.type, TensorType) and old.type.shape is not None):
                new.type = old.type
            users.extend(old.consumers())
            old.replace_all_uses_with(new, outputs=True)
        feeders = [v.producer() for n in m.nodes for v in n.inputs if v is not None and v.producer() is not None]
        remove_dead(self.graph, list(m.nodes) + list(b.created))
        touched = [n for n in b.created if n.graph is self.graph]
        touched += [u for u in users if u.graph is self.graph]
        touched += [f for f in feeders if f is not None and f.graph is self.graph]
        return touched


def apply_rules(model: Model | Graph, rules: RuleSet | Sequence[Rule], *, max_iterations: int = 32,
                subgraphs: bool = True) -> dict[str, int]:
    """Rewrite ``model`` in place with ``rules`` to a fixed point; returns the
    number of rewrites per rule.

    >>> counts = apply_rules(model, CLEANUP_RULES)   # doctest: +SKIP
    """
    graph = model.graph if isinstance(model, Model) else model
    index = RuleIndex(rules)
    counts: Counter[str] = Counter()
    graphs = [graph]
    if subgraphs:
        graphs += [sg for n in graph.walk() for sg in n.subgraphs()]
    for g in graphs:
        counts.update(_Driver(g, index, max_iterations).run())
    return dict(counts)


class RewritePass(Pass):
    """A :class:`RuleSet` as a pass. Subclass and register it::

        @register_pass
        class RemoveNoOps(RewritePass):
            name = "remove-noops"
            description = "drop Identity, Dropout, same-type Cast ..."
            rules = NOOP_RULES

    or use an instance directly: ``RewritePass(MY_RULES, name="my-rules")``.
    ``stats`` counts rewrites per rule.
    """

    name: ClassVar[str] = "rewrite"
    description: ClassVar[str] = "apply a set of pattern-rewrite rules to a fixed point"
    rules: ClassVar[RuleSet | None] = None
    max_iterations: ClassVar[int] = 32

    def __init__(self, rules: RuleSet | Sequence[Rule] | None = None, *, name: str | None = None,
                 max_iterations: int | None = None) -> None:
        chosen = rules if rules is not None else type(self).rules
        if chosen is None:
            raise TypeError(f"{type(self).__name__} has no rules")
        self._rules = chosen if isinstance(chosen, RuleSet) else RuleSet(chosen)
        if name is not None:
            self.name = name  # type: ignore[misc]
        if max_iterations is not None:
            self.max_iterations = max_iterations  # type: ignore[misc]

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        counts = apply_rules(model, self._rules, max_iterations=self.max_iterations)
        return PassResult(bool(counts), counts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._rules)} rules)"
