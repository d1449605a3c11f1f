"""What a rule sees: a typed :class:`Match` and the :class:`MatchResult` of a check."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..ir import Node, Value
from .values import const_value

__all__ = ["Match", "MatchResult", "MatchError"]


class MatchError(GraphoptError, KeyError):
    """A rule asked a :class:`Match` for a name the pattern does not bind."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class MatchResult:
    """``MatchResult.ok()`` or ``MatchResult.fail("reason", value_or_node)``; truthy when ok."""

    success: bool
    reason: str = ""
    culprits: tuple[Any, ...] = ()

    @staticmethod
    def ok() -> MatchResult:
        return _OK

    @staticmethod
    def fail(reason: str, *culprits: Value | Node | None) -> MatchResult:
        return MatchResult(False, reason, tuple(c for c in culprits if c is not None))

    def __bool__(self) -> bool:
        return self.success

    def describe(self) -> str:
        if self.success:
            return "ok"
        if not self.culprits:
            return self.reason
        names = ", ".join(c.label() if isinstance(c, Node) else f"%{c.name}" for c in self.culprits)
        return f"{self.reason} ({names})"


_OK = MatchResult(True)


@dataclass
class Match:
    """The bindings of one match. ``m["x"]`` is the value bound to ``x`` (for a
    node binding: its matched output), ``m.node("bn")`` the node, ``m.const("w")``
    the data of a constant, ``m.attr("perm")`` a bound attribute value.

    Asking for a name the pattern does not bind raises :class:`MatchError`
    listing the names it does bind (no silent typos).
    """

    root: Value
    values: dict[str, Value | None] = field(default_factory=dict)
    nodes_by_name: dict[str, Node] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    #: every node matched by an op pattern, root last (topological order)
    nodes: list[Node] = field(default_factory=list)

    # --- access ---------------------------------------------------------------
    def _missing(self, name: str, what: str) -> MatchError:
        known = sorted(set(self.values) | set(self.nodes_by_name) | set(self.attrs))
        return MatchError(f"the pattern binds no {what} named {name!r} (bound: {', '.join(known) or 'nothing'})")

    def __getitem__(self, name: str) -> Value:
        if name in self.values:
            v = self.values[name]
            if v is None:
                raise MatchError(f"optional {name!r} was not matched; use m.get({name!r})")
            return v
        if name in self.nodes_by_name:
            n = self.nodes_by_name[name]
            return n.outputs[0]
        raise self._missing(name, "value")

    def value(self, name: str) -> Value:
        """Same as ``m[name]``."""
        return self[name]

    def get(self, name: str) -> Value | None:
        """Like ``m[name]`` but ``None`` for an unmatched :class:`Optional`."""
        if name in self.values:
            return self.values[name]
        if name in self.nodes_by_name:
            return self.nodes_by_name[name].outputs[0]
        raise self._missing(name, "value")

    def __contains__(self, name: str) -> bool:
        return self.get_or_none(name) is not None

    def get_or_none(self, name: str) -> Value | None:
        try:
            return self.get(name)
        except MatchError:
            return None

    def node(self, name: str) -> Node:
        if name in self.nodes_by_name:
            return self.nodes_by_name[name]
        raise self._missing(name, "node")

    def const(self, name: str) -> np.ndarray:
        v = self[name]
        arr = const_value(v)
        if arr is None:
            raise MatchError(f"{name!r} (%{v.name}) is not a constant; bind it with Const({name!r})")
        return arr

    def consts(self, *names: str) -> list[np.ndarray]:
        return [self.const(n) for n in names]

    def const_or(self, name: str, default: Any) -> Any:
        """The constant bound to ``name``, or ``default`` if an Optional was not matched."""
        return default if self.get(name) is None else self.const(name)

    def attr(self, name: str, default: Any = ...) -> Any:
        if name in self.attrs:
            return self.attrs[name]
        if default is not ...:
            return default
        raise self._missing(name, "attribute")

    # --- structure ------------------------------------------------------------
    def has_external_uses(self, name: str) -> bool:
        """True if the value bound to ``name`` is used outside the matched nodes
        or is a graph output (e.g. a weight shared with another layer)."""
        v = self.get(name)
        if v is None:
            return False
        inside = set(self.nodes)
        return v.is_graph_output() or any(u not in inside for u, _ in v.uses())

    def escaping(self) -> list[tuple[Value, Node | None]]:
        """Outputs of matched non-root nodes used outside the match (or graph outputs)."""
        inside = set(self.nodes)
        root_node = self.root.producer()
        out: list[tuple[Value, Node | None]] = []
        for n in self.nodes:
            if n is root_node:
                continue
            for o in n.outputs:
                if o.is_graph_output():
                    out.append((o, None))
                    continue
                for u, _ in o.uses():
                    if u not in inside:
                        out.append((o, u))
                        break
        return out

    def bound_values(self) -> Iterable[Value]:
        return (v for v in self.values.values() if v is not None)
