"""Anchored, backtracking matching of a pattern at one candidate root node.

Matching walks the pattern top-down from the root, following each value to
its producer. Alternatives (:class:`AnyOf`, commutative operand orders) are
explored lazily with generators, so the first complete match costs no more
than the pattern's size; a :class:`Tracer` remembers the deepest failure and
its reason (used by ``explain`` and by ``PassManager`` debug output).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..ir import Node, Value
from .dsl import COMMUTATIVE_OPS, AnyOf, Const, OpPattern, Optional, ValuePattern, Var
from .match import Match
from .values import const_value

__all__ = ["Matcher", "Tracer", "Failure"]


@dataclass
class Failure:
    """Where a match attempt stopped: ``depth`` pattern nodes were matched."""

    depth: float
    reason: str
    root: Node | None = None
    matched: list[Node] = field(default_factory=list)


class Tracer:
    """Keeps the deepest failure seen (ties: the first)."""

    def __init__(self) -> None:
        self.best: Failure | None = None
        self.root: Node | None = None

    def fail(self, depth: float, reason: str, matched: list[Node]) -> None:
        if self.best is None or depth > self.best.depth:
            self.best = Failure(depth, reason, self.root, list(matched))


class _State:
    __slots__ = ("values", "nodes_by_name", "attrs", "nodes", "by_pattern")

    def __init__(self) -> None:
        self.values: dict[str, Value | None] = {}
        self.nodes_by_name: dict[str, Node] = {}
        self.attrs: dict[str, Any] = {}
        self.nodes: list[Node] = []
        self.by_pattern: dict[int, Value | None] = {}  # id(pattern) -> matched value (DAG patterns)

    def copy(self) -> _State:
        s = _State()
        s.values = dict(self.values)
        s.nodes_by_name = dict(self.nodes_by_name)
        s.attrs = dict(self.attrs)
        s.nodes = list(self.nodes)
        s.by_pattern = dict(self.by_pattern)
        return s


def _label(v: Value | None) -> str:
    return "an omitted input" if v is None else f"%{v.name}"


class Matcher:
    """Match ``pattern`` at a node: ``for m in Matcher().match(pattern, node): ...``.

    ``commutative`` is the default for ops in COMMUTATIVE_OPS whose pattern
    does not say (``P.Add(..., commutative=None)``).
    """

    def __init__(self, *, commutative: bool = False, tracer: Tracer | None = None) -> None:
        self.commutative = commutative
        self.tracer = tracer

    def _fail(self, st: _State, reason: str) -> None:
        if self.tracer is not None:
            self.tracer.fail(len(st.nodes), reason, st.nodes)

    # --- entry ------------------------------------------------------------
    def match(self, pattern: ValuePattern, node: Node) -> Iterator[Match]:
        """Every match of ``pattern`` whose root value is an output of ``node``."""
        if self.tracer is not None:
            self.tracer.root = node
        for v in _root_values(pattern, node):
            for st in self._value(pattern, v, _State()):
                yield Match(root=v, values=st.values, nodes_by_name=st.nodes_by_name, attrs=st.attrs,
                            nodes=list(reversed(st.nodes)))

    # --- one value ----------------------------------------------------------
    def _value(self, pat: ValuePattern, v: Value | None, st: _State) -> Iterator[_State]:
        seen = st.by_pattern.get(id(pat), _UNSEEN)
        if seen is not _UNSEEN:  # the same pattern object reached again (a DAG pattern)
            if seen is v:
                yield st.copy()
            else:
                self._fail(st, f"{pat.describe()} matched {_label(seen)} before, now {_label(v)}")
            return
        if isinstance(pat, Optional):
            if v is None:
                st2 = st.copy()
                if pat.bind:
                    st2.values[pat.bind] = None
                st2.by_pattern[id(pat)] = None
                yield st2
                return
            for st2 in self._value(pat.inner, v, st):
                st2.by_pattern[id(pat)] = v
                yield st2
            return
        if v is None:
            self._fail(st, f"{pat.describe()} wanted, but the input is omitted")
            return
        reason = pat.check_preds(v)
        if reason is not None:
            self._fail(st, f"%{v.name}: {reason}")
            return
        if isinstance(pat, AnyOf):
            for alt in pat.alternatives:
                for st2 in self._value(alt, v, st):
                    st2 = self._bind_value(pat, v, st2)
                    if st2 is not None:
                        st2.by_pattern[id(pat)] = v
                        yield st2
            return
        if isinstance(pat, Var):
            st2 = self._bind_value(pat, v, st.copy())
            if st2 is not None:
                st2.by_pattern[id(pat)] = v
                yield st2
            return
        if isinstance(pat, Const):
            arr = const_value(v)
            if arr is None:
                self._fail(st, f"%{v.name} is not a constant")
                return
            reason = pat.check_value(arr)
            if reason is not None:
                self._fail(st, f"%{v.name}: {reason}")
                return
            st2 = self._bind_value(pat, v, st.copy())
            if st2 is not None:
                st2.by_pattern[id(pat)] = v
                yield st2
            return
        if isinstance(pat, OpPattern):
            yield from self._op(pat, v, st)
            return
        raise TypeError(f"unknown pattern type {type(pat).__name__}")

    def _bind_value(self, pat: ValuePattern, v: Value, st: _State) -> _State | None:
        if not pat.bind:
            return st
        old = st.values.get(pat.bind, _UNSEEN)
        if old is not _UNSEEN and old is not v:
            self._fail(st, f"{pat.bind!r} is bound to {_label(old)}, not %{v.name}")
            return None
        st.values[pat.bind] = v
        return st

    def _op(self, pat: OpPattern, v: Value, st: _State) -> Iterator[_State]:
        node = v.producer()
        if node is None:
            what = "an initializer" if v.const is not None else "a graph input"
            self._fail(st, f"{pat.describe()} wanted, but %{v.name} is {what}")
            return
        reason = pat.match_op(node)
        if reason is not None:
            self._fail(st, reason)
            return
        if v.index() != pat.output:
            self._fail(st, f"%{v.name} is output {v.index()} of {node.label()}, wanted output {pat.output}")
            return
        if node in st.nodes:
            self._fail(st, f"{node.label()} is matched twice by different sub-patterns")
            return
        ins = node.inputs
        n_pat = len(pat.inputs)
        if len(ins) > n_pat and not pat.extra_inputs and any(x is not None for x in ins[n_pat:]):
            self._fail(st, f"{node.label()} has {len(ins)} inputs, the pattern expects {n_pat}")
            return
        st = st.copy()
        for name, am in pat.attrs.items():
            a = node.attrs.get(name)
            reason, value = am.check(name, a is not None, None if a is None else a.value)
            if reason is not None:
                self._fail(st, f"{node.label()}: {reason}")
                return
            if am.bind:
                st.attrs[am.bind] = value
        st.nodes.append(node)
        if pat.bind:
            if pat.bind in st.nodes_by_name and st.nodes_by_name[pat.bind] is not node:
                self._fail(st, f"{pat.bind!r} is bound to another node")
                return
            st.nodes_by_name[pat.bind] = node
        st.by_pattern[id(pat)] = v
        vals = [ins[i] if i < len(ins) else None for i in range(n_pat)]
        comm = pat.commutative if pat.commutative is not None else self.commutative
        orders = [vals]
        if comm and n_pat == 2 and node.op_type in COMMUTATIVE_OPS and vals[0] is not vals[1]:
            orders.append([vals[1], vals[0]])
        for order in orders:
            yield from self._seq(pat.inputs, order, st, 0)

    def _seq(self, pats: tuple[ValuePattern, ...], vals: list[Value | None], st: _State,
             i: int) -> Iterator[_State]:
        if i == len(pats):
            yield st
            return
        for st2 in self._value(pats[i], vals[i], st):
            yield from self._seq(pats, vals, st2, i + 1)


_UNSEEN: Any = object()


def _root_values(pattern: ValuePattern, node: Node) -> list[Value]:
    """The outputs of ``node`` the root pattern may match."""
    if isinstance(pattern, OpPattern):
        k = pattern.output
        return [node.outputs[k]] if k < len(node.outputs) else []
    if isinstance(pattern, AnyOf):
        out: list[Value] = []
        for alt in pattern.alternatives:
            for v in _root_values(alt, node):
                if v not in out:
                    out.append(v)
        return out
    return list(node.outputs[:1])
