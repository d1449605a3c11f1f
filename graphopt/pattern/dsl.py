"""The pattern vocabulary: small graphs of value patterns.

A pattern is built like the graph it matches::

    P.Add(P.MatMul(Var("x"), Const("w"), bind="mm"), Const("b"), commutative=True)

* :class:`Var` matches any value (the same name twice must be the same value),
* :class:`Const` matches a value whose data is known (an initializer or a
  ``Constant`` node's output), optionally equal to a given scalar,
* :class:`OpPattern` (made by ``P.<OpType>(...)``) matches a node's output,
  its inputs and its attributes (literals, :class:`A` matchers or predicates),
* :class:`Optional` matches an omitted optional input or its pattern,
* :class:`AnyOf` (also ``a | b``) matches the first alternative that fits.

Every pattern takes predicates: ``.dtype(DType.FLOAT)``, ``.rank(3)``,
``.uses(1)`` (exactly one consumer), ``.where(fn, "reason")``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import DType, Node, Value

__all__ = [
    "ValuePattern", "Var", "Const", "OpPattern", "Optional", "AnyOf", "A", "PatternBuilder", "P",
    "COMMUTATIVE_OPS",
]

#: Binary ops whose two inputs may be swapped (used by ``commutative=True``).
COMMUTATIVE_OPS = frozenset({"Add", "Mul", "Max", "Min", "Sum", "And", "Or", "Xor", "Equal", "BitwiseAnd",
                             "BitwiseOr", "BitwiseXor"})

_MISSING = object()

ValuePred = Callable[[Value], bool]


class ValuePattern:
    """Base of every pattern that matches one :class:`Value`."""

    bind: str | None = None

    def __init__(self) -> None:
        self.preds: list[tuple[ValuePred, str]] = []

    # --- predicates (each returns a new pattern, so shared patterns stay intact) ---
    def where(self, fn: ValuePred, reason: str = "predicate failed") -> ValuePattern:
        """Add a predicate on the matched value; ``reason`` is reported when it fails."""
        p = copy.copy(self)
        p.preds = [*self.preds, (fn, reason)]
        return p

    def dtype(self, *dtypes: DType) -> ValuePattern:
        """The value's element type is one of ``dtypes``."""
        want = frozenset(dtypes)
        names = "|".join(d.short for d in dtypes)
        return self.where(lambda v: v.dtype in want, f"dtype is not {names}")

    def rank(self, *ranks: int) -> ValuePattern:
        """The value's rank is known and one of ``ranks``."""
        want = frozenset(ranks)
        return self.where(lambda v: v.rank in want, f"rank is not {'|'.join(map(str, ranks))}")

    def static_shape(self) -> ValuePattern:
        """Every dimension of the value is a known integer."""
        return self.where(lambda v: v.shape is not None and all(isinstance(d, int) for d in v.shape),
                          "shape is not static")

    def uses(self, n: int) -> ValuePattern:
        """The value has exactly ``n`` uses and is not a graph output."""
        return self.where(lambda v: v.num_uses() == n and not v.is_graph_output(),
                          f"value does not have exactly {n} use(s)")

    def __or__(self, other: ValuePattern) -> AnyOf:
        return AnyOf(self, other)

    def check_preds(self, v: Value) -> str | None:
        for fn, reason in self.preds:
            try:
                ok = fn(v)
            except Exception as e:  # noqa: BLE001 - a predicate on an odd value is a mismatch, not a crash
                return f"{reason} ({type(e).__name__}: {e})"
            if not ok:
                return reason
        return None

    def describe(self) -> str:
        return type(self).__name__

    def op_types(self) -> frozenset[str] | None:
        """Op types a value matched here can be produced by (None: anything)."""
        return None


class Var(ValuePattern):
    """Any value. ``Var("x")`` binds it as ``m["x"]``; the same name used twice
    must match the same value (``P.Mul(Var("x"), P.Sigmoid(Var("x")))``)."""

    def __init__(self, bind: str | None = None) -> None:
        super().__init__()
        self.bind = bind

    def describe(self) -> str:
        return f"Var({self.bind!r})" if self.bind else "Var()"


class Const(ValuePattern):
    """A value with known data: an initializer (not a graph input) or a
    ``Constant`` node's output. With ``value=`` every element must equal it
    (within ``rtol``/``atol`` for floats).

    >>> ONE = Const(value=1.0)
    """

    def __init__(self, bind: str | None = None, *, value: Any = _MISSING, rtol: float = 0.0,
                 atol: float = 0.0) -> None:
        super().__init__()
        self.bind = bind
        self.value = value
        self.rtol = rtol
        self.atol = atol

    def check_value(self, arr: np.ndarray) -> str | None:
        if self.value is _MISSING:
            return None
        want = np.asarray(self.value)
        try:
            if arr.dtype.kind in "fc" or want.dtype.kind in "fc":
                ok = arr.size > 0 and bool(np.allclose(arr.astype(np.float64), want.astype(np.float64),
                                                       rtol=self.rtol, atol=self.atol))
            else:
                ok = arr.size > 0 and bool(np.all(arr == want))
        except (TypeError, ValueError):
            ok = False
        return None if ok else f"constant is not {self.value!r}"

    def describe(self) -> str:
        v = "" if self.value is _MISSING else f", value={self.value!r}"
        return f"Const({self.bind!r}{v})"


@dataclass(frozen=True)
class A:
    """An attribute matcher for ``P.Op(..., attr=A(...))``.

    * ``A("p")`` binds the attribute's value as ``m.attr("p")`` (missing: fails
      unless ``default`` is given),
    * ``A(eq=1)`` requires a value, ``A(pred=lambda v: v > 0)`` a predicate,
    * ``default`` is what a missing attribute means (ONNX defaults).
    A plain literal ``perm=[1, 0]`` is short for ``A(eq=[1, 0])``; a plain
    callable is short for ``A(pred=fn)``.
    """

    bind: str | None = None
    eq: Any = _MISSING
    pred: Callable[[Any], bool] | None = None
    default: Any = _MISSING

    def check(self, name: str, present: bool, value: Any) -> tuple[str | None, Any]:
        if not present:
            if self.default is _MISSING:
                return f"attribute {name} is missing", None
            value = self.default
        if self.eq is not _MISSING and not _attr_equal(value, self.eq):
            return f"attribute {name}={_short(value)}, wanted {_short(self.eq)}", None
        if self.pred is not None:
            try:
                ok = self.pred(value)
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                return f"attribute {name}={_short(value)} rejected by predicate", None
        return None, value


def _attr_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_attr_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bytes) and isinstance(b, str):
        a = a.decode("utf-8", "replace")
    return bool(a == b)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _as_attr_matcher(v: Any) -> A:
    if isinstance(v, A):
        return v
    if callable(v) and not isinstance(v, (list, tuple, np.ndarray)):
        return A(pred=v)
    return A(eq=v)


class OpPattern(ValuePattern):
    """Output ``output`` of a node with op ``op_type`` (a name or a tuple of
    alternatives) whose inputs match ``inputs``.

    Inputs beyond those listed must be absent unless ``extra_inputs=True``;
    trailing :class:`Optional` patterns match absent inputs.
    """

    def __init__(self, op_type: str | Sequence[str], inputs: Sequence[ValuePattern | None], *,
                 domain: str = "", attrs: dict[str, Any] | None = None, bind: str | None = None,
                 commutative: bool | None = None, output: int = 0, extra_inputs: bool = False) -> None:
        super().__init__()
        self.ops = (op_type,) if isinstance(op_type, str) else tuple(op_type)
        self.domain = "" if domain == "ai.onnx" else domain
        self.inputs: tuple[ValuePattern, ...] = tuple(Var() if i is None else _as_pattern(i) for i in inputs)
        self.attrs = {k: _as_attr_matcher(v) for k, v in (attrs or {}).items()}
        self.bind = bind
        self.commutative = commutative
        self.output = output
        self.extra_inputs = extra_inputs

    def op_types(self) -> frozenset[str]:
        return frozenset(self.ops)

    def match_op(self, node: Node) -> str | None:
        if node.op_type not in self.ops or node.domain != self.domain:
            want = "|".join(self.ops)
            return f"{node.label()} is not {want}" + (f" ({self.domain})" if self.domain else "")
        return None

    def describe(self) -> str:
        b = f" bind={self.bind!r}" if self.bind else ""
        return f"{'|'.join(self.ops)}(...){b}"


class Optional(ValuePattern):
    """An optional input: absent (omitted or ``None``), or matching ``inner``."""

    def __init__(self, inner: ValuePattern) -> None:
        super().__init__()
        self.inner = _as_pattern(inner)
        self.bind = self.inner.bind

    def describe(self) -> str:
        return f"Optional({self.inner.describe()})"


class AnyOf(ValuePattern):
    """The first alternative that matches (the matcher backtracks into later
    ones when the rest of the pattern fails)."""

    def __init__(self, *alternatives: ValuePattern, bind: str | None = None) -> None:
        super().__init__()
        if not alternatives:
            raise ValueError("AnyOf needs at least one alternative")
        alts: list[ValuePattern] = []
        for a in alternatives:
            alts.extend(a.alternatives if isinstance(a, AnyOf) and not a.preds and a.bind is None else [a])
        self.alternatives = tuple(_as_pattern(a) for a in alts)
        self.bind = bind

    def op_types(self) -> frozenset[str] | None:
        out: set[str] = set()
        for a in self.alternatives:
            t = a.op_types()
            if t is None:
                return None
            out |= t
        return frozenset(out)

    def describe(self) -> str:
        return " | ".join(a.describe() for a in self.alternatives)


def _as_pattern(x: Any) -> ValuePattern:
    if isinstance(x, ValuePattern):
        return x
    if isinstance(x, str):
        return Var(x)
    raise TypeError(f"expected a pattern (Var/Const/P.Op/...), got {type(x).__name__}: {x!r}")


class PatternBuilder:
    """``p.Conv(x, w, bind="conv", group=1)`` makes an :class:`OpPattern`.

    Reserved keywords: ``bind``, ``domain``, ``commutative``, ``output``,
    ``extra_inputs``, and ``attrs`` (a dict, for attribute names that clash
    with these). Every other keyword is an attribute matcher.
    """

    def __init__(self, domain: str = "") -> None:
        self._domain = domain

    def __getattr__(self, op_type: str) -> Callable[..., OpPattern]:
        if op_type.startswith("_"):
            raise AttributeError(op_type)

        def make(*inputs: ValuePattern | None, bind: str | None = None, domain: str | None = None,
                 commutative: bool | None = None, output: int = 0, extra_inputs: bool = False,
                 attrs: dict[str, Any] | None = None, **attr_kw: Any) -> OpPattern:
            all_attrs = {**(attrs or {}), **attr_kw}
            return OpPattern(op_type, inputs, domain=self._domain if domain is None else domain,
                             attrs=all_attrs, bind=bind, commutative=commutative, output=output,
                             extra_inputs=extra_inputs)

        return make

    def op(self, op_types: str | Iterable[str], *inputs: ValuePattern | None, **kw: Any) -> OpPattern:
        """Alternatives of op types: ``p.op(("Relu", "LeakyRelu"), x)``."""
        ops = (op_types,) if isinstance(op_types, str) else tuple(op_types)
        attrs = kw.pop("attrs", None) or {}
        reserved = {k: kw.pop(k) for k in ("bind", "domain", "commutative", "output", "extra_inputs") if k in kw}
        if "domain" not in reserved:
            reserved["domain"] = self._domain
        return OpPattern(ops, inputs, attrs={**attrs, **kw}, **reserved)


#: The default-domain pattern builder: ``P.Relu(Var("x"))``.
P = PatternBuilder()
