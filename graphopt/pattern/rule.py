"""Rules (pattern + check + rewrite), rule sets, and the rewrite Builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Union

import numpy as np

from ..ir import Graph, Node, Value
from .dsl import P, PatternBuilder, ValuePattern
from .match import Match, MatchResult

__all__ = ["Rule", "RuleSet", "Builder", "rule", "CheckResult", "register_rule", "get_rule", "registered_rules"]

#: What ``check`` may return: a MatchResult, or None/True (ok), or a reason string / False (fail).
CheckResult = Union[MatchResult, str, bool, None]


class Builder:
    """Creates the replacement nodes of a rewrite, right before the matched root.

    ``b.Gemm(x, w, c, transB=1)`` adds a node and returns its output value
    (a tuple for ``_outputs=2``); ``b.initializer(array)`` adds a constant.
    Reserved keywords: ``_domain``, ``_outputs``, ``_name``. A numpy array
    given as an input becomes an initializer. The driver stamps the rule's
    name into each new node's ``meta["origin"]``.
    """

    def __init__(self, graph: Graph, anchor: Node, origin: str = "") -> None:
        self.graph = graph
        self.anchor = anchor
        self.origin = origin
        self.created: list[Node] = []
        self.initializers: list[Value] = []

    def __getattr__(self, op_type: str) -> Callable[..., Any]:
        if op_type.startswith("_"):
            raise AttributeError(op_type)

        def make(*inputs: Value | np.ndarray | None, _domain: str = "", _outputs: int = 1, _name: str = "",
                 **attrs: Any) -> Any:
            n = self.op(op_type, inputs, attrs, domain=_domain, num_outputs=_outputs, name=_name)
            return n.outputs[0] if _outputs == 1 else tuple(n.outputs)

        return make

    def op(self, op_type: str, inputs: Sequence[Value | np.ndarray | None], attrs: dict[str, Any] | None = None,
           *, domain: str = "", num_outputs: int = 1, name: str = "") -> Node:
        """Add a node (attrs may be plain values or :class:`~graphopt.ir.Attr`)."""
        ins: list[Value | None] = []
        for x in inputs:
            if x is None or isinstance(x, Value):
                ins.append(x)
            elif isinstance(x, (np.ndarray, np.generic)):
                ins.append(self.initializer(np.asarray(x)))
            else:
                raise TypeError(f"{op_type} input must be a Value, a numpy array or None, got {type(x).__name__} "
                                "(wrap Python scalars in np.float32/np.int64 so the dtype is explicit)")
        attr_objs = {k: v for k, v in (attrs or {}).items() if v is not None}
        node = Node(op_type, ins, attr_objs, domain=domain, num_outputs=num_outputs, name=name)
        if self.origin:
            node.meta["origin"] = self.origin
        self.graph.insert_before(self.anchor, node)
        self.created.append(node)
        return node

    def initializer(self, array: np.ndarray, name: str = "") -> Value:
        """Add a constant tensor (named after the rule unless ``name`` is given)."""
        base = name or (f"{self.origin}_const" if self.origin else "const")
        v = self.graph.add_initializer(self.graph.unique_name(base), np.asarray(array))
        self.initializers.append(v)
        return v

    const = initializer

    def rollback(self) -> None:
        """Undo everything this builder added (the rewrite failed or declined)."""
        for n in reversed(self.created):
            if n.graph is self.graph:
                self.graph.remove(n, safe=False)
        for v in self.initializers:
            if not v.num_uses() and self.graph.initializers.get(v.name) is v:
                self.graph.remove_initializer(v)
        self.created.clear()
        self.initializers.clear()


class Rule:
    """A rewrite rule: ``pattern`` (built with a :class:`PatternBuilder`),
    ``check`` (returns why a structural match is rejected) and ``rewrite``
    (builds the replacement with a :class:`Builder`).

    A complete rule (``Transpose(Transpose(x, p), q) -> Transpose(x, p∘q)``):

    >>> import numpy as np
    >>> from graphopt.pattern import A, MatchResult, P, Rule, RuleSet, Var, apply_rules
    >>> class MergeTransposes(Rule):
    ...     name = "merge-transposes"
    ...     benefit = 1
    ...     def pattern(self, p):
    ...         inner = p.Transpose(Var("x"), perm=A("p"), bind="inner")
    ...         return p.Transpose(inner.uses(1), perm=A("q"), bind="outer")
    ...     def check(self, m):
    ...         if len(m.attr("p")) != len(m.attr("q")):
    ...             return MatchResult.fail("perm lengths differ", m.node("outer"))
    ...         return MatchResult.ok()
    ...     def rewrite(self, b, m):
    ...         p, q = m.attr("p"), m.attr("q")
    ...         return b.Transpose(m["x"], perm=[p[i] for i in q])
    >>> RULES = RuleSet([MergeTransposes()])
    >>> from graphopt.pattern.testing import parse_model
    >>> m = parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ...   g (float[2,3,4] x) => (float[4,3,2] y) {
    ...     t = Transpose<perm=[1,0,2]>(x)
    ...     y = Transpose<perm=[2,0,1]>(t) }''')
    >>> apply_rules(m, RULES)
    {'merge-transposes': 1}
    >>> [(n.op_type, n.attr("perm"), n.meta["origin"]) for n in m.graph]
    [('Transpose', [2, 1, 0], 'merge-transposes')]
    >>> from graphopt.pattern import explain
    >>> print(explain(MergeTransposes(), m))        # why it no longer matches
    rule merge-transposes: 1 candidate root(s), 0 would rewrite
      best partial match at Transpose -> %y: 1 pattern node(s) matched
        Transpose -> %y
      failed because: Transpose(...) bind='inner' wanted, but %x is a graph input

    ``check`` must not stash state for ``rewrite``: recompute from the match.
    Set ``commutative = True`` to let every Add/Mul/... of the pattern match
    its operands in either order, and ``allow_shared_intermediates = True``
    only if duplicating a shared intermediate is acceptable (the driver
    otherwise rejects matches whose inner values are used outside the match).
    """

    name: ClassVar[str] = ""
    benefit: ClassVar[int] = 1
    commutative: ClassVar[bool] = False
    allow_shared_intermediates: ClassVar[bool] = False

    def pattern(self, p: PatternBuilder) -> ValuePattern:
        raise NotImplementedError(f"{type(self).__name__} defines no pattern")

    def check(self, m: Match) -> CheckResult:
        return MatchResult.ok()

    def rewrite(self, b: Builder, m: Match) -> Value | Sequence[Value | None] | None:
        raise NotImplementedError(f"{type(self).__name__} defines no rewrite")

    # --- used by the driver -----------------------------------------------------
    @property
    def rule_name(self) -> str:
        return self.name or type(self).__name__

    def root_pattern(self) -> ValuePattern:
        """The pattern, built once and cached (it is immutable data)."""
        cached = self.__dict__.get("_root_pattern")
        if cached is None:
            cached = self.pattern(P)
            if not isinstance(cached, ValuePattern):
                raise TypeError(f"rule {self.rule_name}: pattern() must return a ValuePattern, "
                                f"got {type(cached).__name__}")
            self.__dict__["_root_pattern"] = cached
        return cached

    def run_check(self, m: Match) -> MatchResult:
        r = self.check(m)
        if r is None or r is True:
            return MatchResult.ok()
        if r is False:
            return MatchResult.fail("check failed")
        if isinstance(r, str):
            return MatchResult.fail(r)
        return r

    def __add__(self, other: Rule | RuleSet) -> RuleSet:
        return RuleSet([self]) + other

    def __repr__(self) -> str:
        return f"<rule {self.rule_name} benefit={self.benefit}>"


class _FnRule(Rule):
    """A rule from functions: the data form of small algebraic rules."""

    def __init__(self, name: str, pattern: ValuePattern, rewrite: Callable[..., Any],
                 check: Callable[[Match], CheckResult] | None = None, benefit: int = 1,
                 commutative: bool = False) -> None:
        self._name = name
        self._pattern = pattern
        self._rewrite = rewrite
        self._check = check
        self._benefit = benefit
        self._commutative = commutative
        self._arity = len(inspect.signature(rewrite).parameters)

    @property
    def rule_name(self) -> str:  # type: ignore[override]
        return self._name

    name = property(lambda self: self._name)  # type: ignore[assignment]
    benefit = property(lambda self: self._benefit)  # type: ignore[assignment]
    commutative = property(lambda self: self._commutative)  # type: ignore[assignment]

    def pattern(self, p: PatternBuilder) -> ValuePattern:
        return self._pattern

    def check(self, m: Match) -> CheckResult:
        return None if self._check is None else self._check(m)

    def rewrite(self, b: Builder, m: Match) -> Any:
        return self._rewrite(m) if self._arity == 1 else self._rewrite(b, m)


def rule(name: str, pattern: ValuePattern, rewrite: Callable[..., Any], *,
         check: Callable[[Match], CheckResult] | None = None, benefit: int = 1,
         commutative: bool = False) -> Rule:
    """A rule from a pattern and functions; ``rewrite`` takes ``(m)`` or ``(b, m)``.

    >>> from graphopt.pattern import P, Var, rule
    >>> drop_identity = rule("remove-identity", P.Identity(Var("x")), lambda m: m["x"])
    """
    return _FnRule(name, pattern, rewrite, check, benefit, commutative)


RuleLike = Union[Rule, tuple]


class RuleSet:
    """An ordered collection of rules, composed with ``+``. Tuples
    ``(pattern, rewrite)`` or ``(pattern, rewrite, check)`` become rules named
    after ``name`` and their position.

    >>> from graphopt.pattern import P, Var, RuleSet
    >>> NOOPS = RuleSet([(P.Identity(Var("x")), lambda m: m["x"])], name="noops")
    """

    def __init__(self, rules: Iterable[RuleLike] = (), *, name: str = "rules") -> None:
        self.name = name
        self.rules: list[Rule] = []
        for i, r in enumerate(rules):
            if isinstance(r, Rule):
                self.rules.append(r)
            elif isinstance(r, tuple) and 2 <= len(r) <= 3:
                check = r[2] if len(r) == 3 else None
                self.rules.append(rule(f"{name}[{i}]", r[0], r[1], check=check))
            else:
                raise TypeError(f"RuleSet item {i} must be a Rule or a (pattern, rewrite[, check]) tuple")
        seen: set[str] = set()
        for r in self.rules:
            if r.rule_name in seen:
                raise ValueError(f"rule name {r.rule_name!r} appears twice in {name}")
            seen.add(r.rule_name)

    def __add__(self, other: Rule | RuleSet) -> RuleSet:
        more = other.rules if isinstance(other, RuleSet) else [other]
        out = RuleSet(name=self.name)
        out.rules = [*self.rules, *more]
        return out

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({self.name!r}, {[r.rule_name for r in self.rules]})"


_RULES: dict[str, Rule] = {}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator: make a rule findable by name (``explain("fuse-conv-bn", model)``).

    >>> @register_rule
    ... class DropIdentity(Rule):
    ...     name = "doc-drop-identity"
    ...     def pattern(self, p):
    ...         from graphopt.pattern import Var
    ...         return p.Identity(Var("x"))
    ...     def rewrite(self, b, m):
    ...         return m["x"]
    >>> get_rule("doc-drop-identity").rule_name
    'doc-drop-identity'
    """
    inst = cls()
    name = inst.rule_name
    other = _RULES.get(name)
    if other is not None and type(other).__qualname__ != cls.__qualname__:
        raise ValueError(f"rule name {name!r} registered twice ({type(other).__name__} and {cls.__name__})")
    _RULES[name] = inst
    return cls


def registered_rules() -> dict[str, Rule]:
    """Every rule registered with :func:`register_rule` (after importing the shipped passes)."""
    from ..pm.registry import load_providers

    load_providers()  # the pass providers register the shipped rules
    return dict(sorted(_RULES.items()))


def get_rule(name: str) -> Rule:
    if name not in _RULES:
        rules = registered_rules()
        if name not in rules:
            from ..errors import GraphoptError

            raise GraphoptError(f"unknown rule {name!r}; registered: {', '.join(rules) or 'none'}")
    return _RULES[name]
