"""Prove what a decoder's score mask is, by evaluating its producer cone symbolically.

transformers builds a decoder's mask from index arithmetic, in a different form per export
(vmap-built ``Range``/``Unsqueeze``/``LessOrEqual``/``GatherND`` under dynamo, ``Flatten`` +
``Gather(b * S + k)`` under TorchScript, Mistral's ``Greater(k, q - W)`` window, GPT-2's own
``Where(.., 0, finfo.min)``). Instead of one pattern per form, the cone is interpreted over a small
symbolic domain whose every rule is exact:

* integer *shape values* (``Shape``, ``Gather``/``Squeeze``/``Unsqueeze``/``Concat`` of them,
  ``Mul``/``Div``/``Add``/``Sub`` of dims): vectors of :class:`Poly` (products of dim symbols);
* *index tensors*: a rank and an expression over ``iota(axis)`` -- the index along an axis, made
  by ``Range(0, n, 1)`` with its extent n recorded -- constants, shape symbols, elements of a
  graph input (``am[e0, e1]``, reached through ``GatherND`` or a flattened ``Gather``) and
  element-wise ops; ``Unsqueeze``, broadcasting, ``Expand`` and unit-dim ``Reshape`` move axes.

Anything else (an op outside the domain, an unknown dim, a start that is not 0, ...) is not a
proof: :func:`prove_mask` returns None and the caller keeps the mask as it is. A proved mask
is, in the [B, 1, Sq, Sk] frame of the scores, ``0 where C else c`` with C a conjunction of
``k <= q`` (causal), ``k > q - W`` (sliding window) and ``am[b, k] != 0`` (key padding).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphopt.ir import Node, Value
from graphopt.pattern import const_value

__all__ = ["MaskProof", "Poly", "prove_mask"]

logger = logging.getLogger(__name__)

MAX_NODES = 256  # mask cones are tens of nodes


class NotProved(Exception):
    """The cone leaves the symbolic domain; the message says where (for debugging)."""


@dataclass(frozen=True)
class Poly:
    """coef * product of dim symbols (a dim of a shape: an int, or a symbolic dim or product)."""

    coef: int
    syms: tuple[str, ...] = ()

    @staticmethod
    def of(d: Any) -> Poly:
        if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            return Poly(int(d))
        if isinstance(d, str) and d:
            return Poly(1, (d,))
        raise NotProved(f"unknown dim {d!r}")

    def __mul__(self, o: Poly) -> Poly:
        return Poly(self.coef * o.coef, tuple(sorted(self.syms + o.syms)))

    def div(self, o: Poly) -> Poly:
        """self // o: exact when o divides self, else an opaque dim named after the quotient
        (the same dims divided the same way give the same name; nothing else is assumed of it)."""
        left = Counter(self.syms)
        left.subtract(o.syms)
        if o.coef == 0:
            raise NotProved("division by 0")
        if self.coef % o.coef or any(v < 0 for v in left.values()):
            return Poly(1, (f"({self})//({o})",))
        return Poly(self.coef // o.coef, tuple(sorted(left.elements())))

    def __str__(self) -> str:
        return "*".join([str(self.coef)] * (self.coef != 1 or not self.syms) + list(self.syms))

    @property
    def const(self) -> int | None:
        return self.coef if not self.syms else None


@dataclass(frozen=True)
class Vec:
    """A shape value: a 0-D (scalar) or 1-D integer/bool tensor with known symbolic elements."""

    items: tuple[Any, ...]  # Poly, or bool for comparisons
    scalar: bool = False


# Expressions are tuples: ("iota", axis) | ("const", v) | ("sym", Poly) | ("data", src, (e...)) |
# ("flat", src, e) (Flatten(f(src)) for a Gather: e in src's own frame) | (op, *args) for element-wise ops.
Expr = tuple


@dataclass(frozen=True)
class Ten:
    """An index tensor: rank, expression in its own frame and the extent of every axis it reads."""

    rank: int
    expr: Expr
    ext: tuple[tuple[int, Poly], ...] = ()  # (axis, extent)
    kind: str = "int"  # "int", "bool" or "float"

    @property
    def extents(self) -> dict[int, Poly]:
        return dict(self.ext)


def _axes(e: Expr) -> set[int]:
    if e[0] == "flat":
        raise NotProved("a flattened tensor used other than by Gather")
    if e[0] == "iota":
        return {e[1]}
    if e[0] in ("const", "sym"):
        return set()
    if e[0] == "data":
        return set().union(*(_axes(x) for x in e[2]))
    return set().union(*(_axes(x) for x in e[1:]))


def _remap(e: Expr, f: dict[int, Expr]) -> Expr:
    """Substitute iota(a) -> f[a] (an expression) everywhere in e."""
    if e[0] == "flat":
        raise NotProved("a flattened tensor used other than by Gather")
    if e[0] == "iota":
        return f[e[1]]
    if e[0] in ("const", "sym"):
        return e
    if e[0] == "data":
        return ("data", e[1], tuple(_remap(x, f) for x in e[2]))
    return (e[0], *(_remap(x, f) for x in e[1:]))


def _moved(t: Ten, rank: int, axis_map: dict[int, int]) -> Ten:
    if t.expr[0] == "flat":  # its expression is in the source's frame: only Gather reads it
        raise NotProved("a flattened tensor used other than by Gather")
    e = _remap(t.expr, {a: ("iota", b) for a, b in axis_map.items()})
    return Ten(rank, e, tuple(sorted((axis_map[a], x) for a, x in t.ext)), t.kind)


def _broadcast(t: Ten, rank: int) -> Ten:
    return _moved(t, rank, {a: a + rank - t.rank for a in range(t.rank)})


def _source(e: Expr) -> Value | None:
    """The graph input src of e = f(src[iota(0), iota(1), ...]) (an element-wise function of it)."""
    if e[0] == "data":
        return e[1] if e[2] == tuple(("iota", a) for a in range(len(e[2]))) else None
    if e[0] == "ne0":
        return _source(e[1])
    return None


def _kind(v: Value) -> str:
    dt = v.dtype
    if dt is None:
        raise NotProved(f"%{v.name} has no dtype")
    if dt.name == "BOOL":
        return "bool"
    return "float" if dt.is_float else "int"


class _Eval:
    def __init__(self) -> None:
        self.memo: dict[int, Vec | Ten] = {}
        self.count = 0
        self.leaf_ext: dict[int, tuple[Poly, ...]] = {}  # id(value) -> extents of a data leaf

    def leaf(self, v: Value, ext: tuple[Poly, ...]) -> Ten:
        """v itself as data: element v[iota(0), iota(1), ...]."""
        self.leaf_ext[id(v)] = ext
        return Ten(len(ext), ("data", v, tuple(("iota", a) for a in range(len(ext)))), tuple(enumerate(ext)), _kind(v))

    # ---- entry --------------------------------------------------------------------------
    def value(self, v: Value) -> Vec | Ten:
        if id(v) in self.memo:
            return self.memo[id(v)]
        c = const_value(v)
        if c is not None:
            r = self._const(v, c)
        elif v.producer() is None:
            if not v.is_graph_input or v.rank is None:
                raise NotProved(f"%{v.name} is neither computed, constant nor a graph input")
            r = self.leaf(v, tuple(Poly.of(d) for d in v.shape))
        else:
            self.count += 1
            if self.count > MAX_NODES:
                raise NotProved("cone too large")
            n = v.producer()
            if n.domain not in ("", "ai.onnx") or n.subgraphs():
                raise NotProved(f"{n.label()} is not a plain ONNX op")
            fn = getattr(self, "op_" + n.op_type, None)
            if fn is None:
                raise NotProved(f"{n.label()}: {n.op_type} is outside the mask domain")
            r = fn(n)
        self.memo[id(v)] = r
        return r

    def vec(self, v: Value) -> Vec:
        r = self.value(v)
        if isinstance(r, Ten):
            raise NotProved(f"%{v.name} is not a shape value")
        return r

    def ten(self, v: Value) -> Ten:
        r = self.value(v)
        if isinstance(r, Vec):
            return self._vec_as_ten(r, v)
        return r

    def _vec_as_ten(self, r: Vec, v: Value) -> Ten:
        if r.scalar or len(r.items) == 1:
            x = r.items[0]
            e = ("const", x) if isinstance(x, bool) else (("const", x.const) if x.const is not None else ("sym", x))
            return Ten(0 if r.scalar else 1, e, (), _kind(v))
        raise NotProved(f"%{v.name}: a shape vector used as an index tensor")

    def _const(self, v: Value, c: np.ndarray) -> Vec | Ten:
        if c.size == 1:
            x = c.reshape(-1)[0]
            if c.dtype == np.bool_:
                item: Any = bool(x)
            elif np.issubdtype(c.dtype, np.integer):
                item = Poly(int(x))
            else:
                return Ten(c.ndim, ("const", float(x)), (), "float")
            if c.ndim <= 1:
                return Vec((item,), scalar=c.ndim == 0)
            return Ten(c.ndim, ("const", item if isinstance(item, bool) else int(x)), (), _kind(v))
        if c.ndim == 1 and (np.issubdtype(c.dtype, np.integer) or c.dtype == np.bool_):
            return Vec(tuple(bool(x) if c.dtype == np.bool_ else Poly(int(x)) for x in c))
        raise NotProved(f"%{v.name}: a constant tensor of {c.size} elements")

    @staticmethod
    def _ints(n: Node, i: int, attr: str) -> list[int] | None:
        if len(n.inputs) > i and n.inputs[i] is not None:
            c = const_value(n.inputs[i])
            if c is None:
                raise NotProved(f"{n.label()}: {attr} is not constant")
            return [int(x) for x in np.asarray(c).reshape(-1)]
        a = n.attr(attr, None)
        return None if a is None else [int(x) for x in a]

    # ---- shape values -------------------------------------------------------------------------
    def op_Shape(self, n: Node) -> Vec:
        shape = self.dims(n.inputs[0])
        if shape is None:
            raise NotProved(f"{n.label()}: the shape of %{n.inputs[0].name} is unknown")
        r = len(shape)
        start, end = int(n.attr("start", 0)), n.attr("end", None)
        start = start + r if start < 0 else start
        end = r if end is None else (int(end) + r if int(end) < 0 else int(end))
        return Vec(tuple(shape[max(start, 0):min(end, r)]))

    def op_Squeeze(self, n: Node) -> Vec | Ten:
        x = self.value(n.inputs[0])
        if isinstance(x, Vec):
            if len(x.items) != 1:
                raise NotProved(f"{n.label()}: squeezes a shape vector of {len(x.items)}")
            return Vec(x.items, scalar=True)
        raise NotProved(f"{n.label()}: Squeeze of an index tensor")

    def op_Cast(self, n: Node) -> Vec | Ten:
        x = self.value(n.inputs[0])
        out = _kind(n.outputs[0])
        if isinstance(x, Vec):
            if out == "int" and all(isinstance(i, Poly) for i in x.items):
                return x
            raise NotProved(f"{n.label()}: Cast of a shape value to {out}")
        if out == x.kind or (out == "int" and x.kind == "bool"):
            return Ten(x.rank, x.expr, x.ext, out if out != "int" else x.kind)
        if out == "bool":
            return Ten(x.rank, ("ne0", x.expr), x.ext, "bool")
        raise NotProved(f"{n.label()}: Cast from {x.kind} to {out}")

    def op_Gather(self, n: Node) -> Vec | Ten:
        data = self.value(n.inputs[0])
        axis = int(n.attr("axis", 0))
        if isinstance(data, Vec):
            idx = const_value(n.inputs[1])
            if idx is None or axis != 0:
                raise NotProved(f"{n.label()}: gathers a shape value at a non-constant index")
            ii = [int(i) for i in np.asarray(idx).reshape(-1)]
            items = tuple(data.items[i] for i in ii)
            return Vec(items, scalar=np.asarray(idx).ndim == 0)
        # am flattened row-major: Gather(Flatten(am), b * S + k, axis 0) = am[b, k] (k < S)
        if axis != 0 or data.expr[0] != "flat":
            raise NotProved(f"{n.label()}: Gather of an index tensor that is not a flattened input")
        _, src, inner = data.expr
        idx = self.ten(n.inputs[1])
        s_am = Poly.of(src.shape[1])
        lin = _linear(idx.expr)
        kb = [k for k in lin if isinstance(k, tuple)]
        ks = [k for k in lin if isinstance(k, int)]
        if len(kb) != 1 or len(ks) != 1 or len(lin) != 2 or kb[0][1] != s_am or lin[kb[0]] != 1 or lin[ks[0]] != 1 \
                or idx.extents.get(ks[0]) != s_am:
            raise NotProved(f"{n.label()}: the flat index is not b * S + k with k < S")
        # [N, 1] gathered at idx: idx's axes, then the unit axis
        e = _remap(inner, {0: ("iota", kb[0][0]), 1: ("iota", ks[0])})
        return Ten(idx.rank + 1, e, idx.ext, data.kind)

    def op_Flatten(self, n: Node) -> Ten:
        x = self.ten(n.inputs[0])
        src = _source(x.expr)
        if src is None or src.rank != 2 or int(n.attr("axis", 1)) != 2 or x.rank != 2:
            raise NotProved(f"{n.label()}: Flatten of anything but an element-wise function of a 2-D graph input")
        return Ten(2, ("flat", src, x.expr), (), x.kind)

    def op_Unsqueeze(self, n: Node) -> Vec | Ten:
        x = self.value(n.inputs[0])
        axes = self._ints(n, 1, "axes") or []
        if isinstance(x, Vec):
            if x.scalar and axes in ([0], [-1]):
                return Vec(x.items)
            raise NotProved(f"{n.label()}: Unsqueeze of a shape vector")
        r = x.rank + len(axes)
        ins = sorted(a + r if a < 0 else a for a in axes)
        keep = [a for a in range(r) if a not in ins]
        return _moved(x, r, {old: new for old, new in enumerate(keep)})

    def op_Concat(self, n: Node) -> Vec | Ten:
        vals = [self.value(i) for i in n.inputs]
        if all(isinstance(v, Vec) for v in vals):
            return Vec(tuple(x for v in vals for x in v.items))
        ts = [self.ten(i) for i in n.inputs]
        r = ts[0].rank
        axis = int(n.attr("axis", 0))
        if any(t.rank != r for t in ts) or axis not in (-1, r - 1) or any(r - 1 in t.extents for t in ts):
            raise NotProved(f"{n.label()}: not a stack of index tensors along a new last axis")
        shapes = [i.shape for i in n.inputs]
        if any(s is None or s[-1] != 1 for s in shapes):
            raise NotProved(f"{n.label()}: a stacked index is not [..., 1]")
        ext: dict[int, Poly] = {}
        for t in ts:
            for a, x in t.ext:
                if ext.setdefault(a, x) != x:
                    raise NotProved(f"{n.label()}: axis {a} has extents {ext[a]} and {x}")
        return Ten(r, ("stack", *(t.expr for t in ts)), tuple(sorted(ext.items())), ts[0].kind)

    def op_Slice(self, n: Node) -> Vec:
        x = self.vec(n.inputs[0])
        starts, ends = self._ints(n, 1, "starts"), self._ints(n, 2, "ends")
        axes, steps = self._ints(n, 3, "axes"), self._ints(n, 4, "steps")
        if starts is None or ends is None or len(starts) != 1 or (axes not in (None, [0], [-1])) or \
                (steps not in (None, [1])):
            raise NotProved(f"{n.label()}: not a unit-step slice of a shape vector")
        return Vec(x.items[slice(starts[0], ends[0])])

    def op_Trilu(self, n: Node) -> Ten:
        x = self.ten(n.inputs[0])
        k = self.vec(n.inputs[1]).items[0] if len(n.inputs) > 1 and n.inputs[1] is not None else Poly(0)
        if x.rank < 2 or not isinstance(k, Poly) or k.const is None:
            raise NotProved(f"{n.label()}: Trilu with a symbolic diagonal")
        r = x.rank
        diff = ("sub", ("iota", r - 1), ("iota", r - 2))  # j - i
        keep = ("ge", diff, ("const", k.const)) if int(n.attr("upper", 1)) else ("le", diff, ("const", k.const))
        zero: Expr = ("const", False if x.kind == "bool" else (0 if x.kind == "int" else 0.0))
        shape = n.outputs[0].shape
        if shape is None or len(shape) != r:
            raise NotProved(f"{n.label()}: Trilu's shape is unknown")
        ext = x.extents
        for a in (r - 2, r - 1):
            if ext.setdefault(a, Poly.of(shape[a])) != Poly.of(shape[a]):
                raise NotProved(f"{n.label()}: axis {a} extents disagree")
        return Ten(r, ("where", keep, x.expr, zero), tuple(sorted(ext.items())), x.kind)

    def op_Not(self, n: Node) -> Ten:
        x = self.ten(n.inputs[0])
        return Ten(x.rank, ("not", x.expr), x.ext, "bool")

    def op_Range(self, n: Node) -> Ten:
        start, limit, delta = (self.vec(i) for i in n.inputs)
        if start.items != (Poly(0),) or delta.items != (Poly(1),) or not isinstance(limit.items[0], Poly):
            raise NotProved(f"{n.label()}: not Range(0, n, 1)")
        return Ten(1, ("iota", 0), ((0, limit.items[0]),), "int")

    def op_ConstantOfShape(self, n: Node) -> Ten:
        shape = self.vec(n.inputs[0])
        val = n.attr("value", None)
        arr = np.zeros(1, np.float32) if val is None else np.asarray(val.to_dense() if hasattr(val, "to_dense") else val)
        x = arr.reshape(-1)[0]
        k = "bool" if arr.dtype == np.bool_ else ("int" if np.issubdtype(arr.dtype, np.integer) else "float")
        c = bool(x) if k == "bool" else (int(x) if k == "int" else float(x))
        return Ten(len(shape.items), ("const", c), (), k)

    def op_Expand(self, n: Node) -> Ten:
        x = self.ten(n.inputs[0])
        target = self.vec(n.inputs[1])
        r = max(len(target.items), x.rank)
        t = _broadcast(x, r)
        ext = t.extents
        off = r - len(target.items)
        for i, d in enumerate(target.items):
            a = i + off
            if a in ext and d != Poly(1) and d != ext[a]:
                raise NotProved(f"{n.label()}: expands axis {a} of extent {ext[a]} to {d}")
        return t

    def op_Reshape(self, n: Node) -> Vec | Ten:
        x_in = n.inputs[0]
        # Reshape(Reshape(x, s1), s2) = Reshape(x, s2): row-major order is kept by both
        while x_in.producer() is not None and x_in.producer().op_type == "Reshape" and \
                const_value(x_in) is None:
            x_in = x_in.producer().inputs[0]
        x = self.value(x_in)
        if isinstance(x, Vec):
            return Vec(x.items)
        target = self.vec(n.inputs[1])
        src = x_in.shape
        if src is None:
            raise NotProved(f"{n.label()}: the reshaped shape is unknown")
        if x.expr[0] == "data" and _source(x.expr) is not None and x_in is n.inputs[0]:
            return self._reshaped_leaf(n, x, target)
        src_p = [Poly.of(d) for d in src]
        if any(d == Poly(0) or d == Poly(-1) for d in target.items) or not all(isinstance(d, Poly) for d in target.items):
            raise NotProved(f"{n.label()}: a 0/-1 Reshape target")
        # only unit dims move: the non-unit dims are the same, in order
        keep_src = [a for a, d in enumerate(src_p) if d != Poly(1)]
        keep_dst = [a for a, d in enumerate(target.items) if d != Poly(1)]
        if [src_p[a] for a in keep_src] != [target.items[a] for a in keep_dst]:
            raise NotProved(f"{n.label()}: {src} -> {target.items} is not a unit-dim reshape")
        if not all(a in keep_src for a in _axes(x.expr)):
            raise NotProved(f"{n.label()}: reads a unit axis")
        return _moved(x, len(target.items), dict(zip(keep_src, keep_dst)))

    def _reshaped_leaf(self, n: Node, x: Ten, target: Vec) -> Ten:
        """Reshape(src, target) of a whole data tensor (GPT-2's view(B, -1) of the attention mask):
        the output is a new data leaf with the target's dims (-1: the element count divided by the rest)."""
        if int(n.attr("allowzero", 0)) and any(d == Poly(0) for d in target.items):
            raise NotProved(f"{n.label()}: allowzero Reshape to a 0 dim")
        ext = self.leaf_ext.get(id(x.expr[1]))
        if ext is None or not all(isinstance(d, Poly) for d in target.items):
            raise NotProved(f"{n.label()}: reshapes a tensor of unknown extents")
        dims = list(target.items)
        total = Poly(1)
        for d in ext:
            total = total * d
        if sum(d == Poly(-1) for d in dims) > 1 or any(d == Poly(0) for d in dims):
            raise NotProved(f"{n.label()}: Reshape target {dims}")
        if Poly(-1) in dims:
            rest = Poly(1)
            for d in dims:
                if d != Poly(-1):
                    rest = rest * d
            dims[dims.index(Poly(-1))] = total.div(rest)
        return self.leaf(n.outputs[0], tuple(dims))

    def op_GatherND(self, n: Node) -> Ten:
        data, idx = self.ten(n.inputs[0]), self.ten(n.inputs[1])
        if int(n.attr("batch_dims", 0)) != 0 or idx.expr[0] != "stack" or _source(data.expr) is None:
            raise NotProved(f"{n.label()}: not a GatherND of a graph input at stacked indices")
        comps = idx.expr[1:]
        if len(comps) != data.rank:
            raise NotProved(f"{n.label()}: gathers {len(comps)} of {data.rank} dims")
        r = idx.rank - 1
        return Ten(r, _remap(data.expr, dict(enumerate(comps))), tuple((a, x) for a, x in idx.ext if a < r), data.kind)

    # ---- element-wise -------------------------------------------------------------------------
    def _merge(self, n: Node, ins: list[Value]) -> tuple[int, list[Ten], dict[int, Poly]]:
        """Broadcast operands: their iotas on one axis must have one extent, and an operand that does
        not read an axis another iota runs along must be 1 or that extent there (an iota of extent 1
        broadcast to 5 would read 0, not its index)."""
        ts = [self.ten(v) for v in ins]
        r = max(t.rank for t in ts)
        ts = [_broadcast(t, r) for t in ts]
        ext: dict[int, Poly] = {}
        for t in ts:
            for ax, x in t.ext:
                if ext.setdefault(ax, x) != x:
                    raise NotProved(f"{n.label()}: axis {ax} has extents {ext[ax]} and {x}")
        for v, t in zip(ins, ts):
            own = t.extents
            for ax, x in ext.items():
                if ax not in own and self._size(v, ax - (r - (v.rank or 0))) not in (Poly(1), x):
                    raise NotProved(f"{n.label()}: %{v.name} may broadcast axis {ax} of extent {x}")
        return r, ts, ext

    def _size(self, v: Value, axis: int) -> Poly | None:
        """v's size along axis (negative: a broadcast leading axis, size 1)."""
        if axis < 0:
            return Poly(1)
        try:
            dims = self.dims(v)
        except NotProved:
            return None
        return dims[axis] if dims is not None and axis < len(dims) else None

    def dims(self, v: Value) -> tuple[Poly, ...] | None:
        """v's shape: the iota extents where v is an index tensor, its inferred shape elsewhere."""
        shape = v.shape
        t = None
        if v.dtype is not None and not v.dtype.is_float:
            try:
                r = self.value(v)
                t = r if isinstance(r, Ten) else None
            except NotProved:
                t = None
        if shape is None or (t is not None and len(shape) != t.rank):
            return None
        ext = t.extents if t is not None else {}
        out = []
        for a, d in enumerate(shape):
            if a in ext:
                out.append(ext[a])
            else:
                try:
                    out.append(Poly.of(d))
                except NotProved:
                    return None
        return tuple(out)

    def _binary(self, n: Node, op: str, kind: str | None = None) -> Vec | Ten:
        a, b = (self.value(i) for i in n.inputs[:2])
        if isinstance(a, Vec) and isinstance(b, Vec):
            return self._vec_binary(n, op, a, b)
        r, (ta, tb), ext = self._merge(n, list(n.inputs[:2]))
        return Ten(r, (op, ta.expr, tb.expr), tuple(sorted(ext.items())), kind or ta.kind)

    def _vec_binary(self, n: Node, op: str, a: Vec, b: Vec) -> Vec:
        if len(a.items) != len(b.items):
            if len(a.items) == 1:
                a = Vec(a.items * len(b.items))
            elif len(b.items) == 1:
                b = Vec(b.items * len(a.items))
            else:
                raise NotProved(f"{n.label()}: shape vectors of different lengths")
        out = []
        for x, y in zip(a.items, b.items):
            if op == "mul":
                out.append(x * y)
            elif op == "div":
                out.append(x.div(y))
            elif op in ("add", "sub") and x.const is not None and y.const is not None:
                out.append(Poly(x.const + y.const if op == "add" else x.const - y.const))
            elif op == "sub" and x == y:
                out.append(Poly(0))
            elif op in ("add", "sub") and y == Poly(0):
                out.append(x)
            elif op == "add" and x == Poly(0):
                out.append(y)
            elif op == "eq":
                if x == y:
                    out.append(True)
                elif (x.const is not None and y.const is not None) or \
                        (x.const is not None and x.const < 0) or (y.const is not None and y.const < 0):
                    out.append(False)  # a dim is never negative
                else:
                    raise NotProved(f"{n.label()}: cannot decide {x} == {y}")
            else:
                raise NotProved(f"{n.label()}: {op} of shape values")
        return Vec(tuple(out), scalar=a.scalar and b.scalar)

    def op_Add(self, n): return self._binary(n, "add")
    def op_Sub(self, n): return self._binary(n, "sub")
    def op_Mul(self, n): return self._binary(n, "mul")

    def op_Div(self, n):
        a, b = (self.value(i) for i in n.inputs)
        if isinstance(a, Vec) and isinstance(b, Vec):
            return self._vec_binary(n, "div", a, b)
        raise NotProved(f"{n.label()}: Div of index tensors")

    def op_LessOrEqual(self, n): return self._binary(n, "le", "bool")
    def op_Less(self, n): return self._binary(n, "lt", "bool")
    def op_GreaterOrEqual(self, n): return self._binary(n, "ge", "bool")
    def op_Greater(self, n): return self._binary(n, "gt", "bool")

    def op_Equal(self, n):
        return self._binary(n, "eq", "bool")

    def op_And(self, n): return self._binary(n, "and", "bool")
    def op_Max(self, n: Node) -> Vec | Ten:  # dynamo's broadcast shape of two index tensors
        if len(n.inputs) != 2:
            raise NotProved(f"{n.label()}: Max of {len(n.inputs)} inputs")
        return self._binary(n, "max")


    def op_Where(self, n: Node) -> Vec | Ten:
        c, x, y = (self.value(i) for i in n.inputs)
        if all(isinstance(v, Vec) for v in (c, x, y)):
            m = max(len(c.items), len(x.items), len(y.items))
            ci, xi, yi = ((v.items * m if len(v.items) == 1 else v.items) for v in (c, x, y))
            if not all(isinstance(z, bool) for z in ci):
                raise NotProved(f"{n.label()}: Where on an undecided shape condition")
            return Vec(tuple(a if z else b for z, a, b in zip(ci, xi, yi)))
        r, (tc, tx, ty), ext = self._merge(n, list(n.inputs))
        return Ten(r, ("where", tc.expr, tx.expr, ty.expr), tuple(sorted(ext.items())), tx.kind)


# ---- deciding the mask ---------------------------------------------------------------------------

def _linear(e: Expr) -> dict[Any, int]:
    """e as sum coef * term, term = iota axis (int), 1 (None) or a Poly of dims; NotProved if not linear."""
    op = e[0]
    if op == "iota":
        return {e[1]: 1}
    if op == "const":
        if isinstance(e[1], bool) or not isinstance(e[1], int):
            raise NotProved(f"non-integer constant {e[1]!r} in an index")
        return {None: e[1]} if e[1] else {}
    if op == "sym":
        return {e[1]: 1}
    if op in ("add", "sub"):
        out = dict(_linear(e[1]))
        for k, v in _linear(e[2]).items():
            out[k] = out.get(k, 0) + (v if op == "add" else -v)
        return {k: v for k, v in out.items() if v}
    if op == "mul":
        a, b = _linear(e[1]), _linear(e[2])
        for x, y in ((a, b), (b, a)):
            if set(y) <= {None}:  # times an integer
                return {k: v * y.get(None, 0) for k, v in x.items() if v * y.get(None, 0)}
            if len(y) == 1 and isinstance(next(iter(y)), Poly) and all(isinstance(k, int) for k in x):
                p, c = next(iter(y.items()))
                return {(k, p): v * c for k, v in x.items()}  # iota(k) * dim p
        raise NotProved("a product of two index terms")
    raise NotProved(f"{op} inside an index")


@dataclass
class MaskProof:
    """A proved mask, in the [B, 1, Sq, Sk] frame: 0 where (k <= q) [and k > q - window] [and
    padding[b, k] != 0], ``filler`` elsewhere."""

    causal: bool
    window: int = 0
    padding: Value | None = None
    filler: float = 0.0
    notes: list[str] = field(default_factory=list)


_NEGATED = {"le": "gt", "gt": "le", "lt": "ge", "ge": "lt"}


def _truth(e: Expr) -> Expr:
    """e as a boolean expression: ne0(where(c, x, 0)) with a constant x != 0 is c; not(a < b) is a >= b."""
    if e[0] == "ne0":
        inner = e[1]
        if inner[0] == "where" and inner[2][0] == "const" and inner[2][1] and inner[3][0] == "const" \
                and not inner[3][1]:
            return _truth(inner[1])
    if e[0] == "where" and e[2] == ("const", True) and e[3] == ("const", False):
        return _truth(e[1])
    if e[0] == "not":
        inner = _truth(e[1])
        if inner[0] in _NEGATED:
            return (_NEGATED[inner[0]], *inner[1:])
    return e


def _atoms(e: Expr, out: list[Expr]) -> None:
    e = _truth(e)
    if e[0] == "and":
        _atoms(e[1], out)
        _atoms(e[2], out)
    elif e == ("const", True):
        return
    else:
        out.append(e)


def _padding_atom(e: Expr, b_ext: Poly, exts: dict[int, Poly], leaf_ext: dict[int, tuple[Poly, ...]]) -> Value | None:
    """pad[b, k] != 0 for a 2-D integer/bool tensor pad of extents [B, mask's key extent], read at
    (iota 0, iota 3)."""
    if e[0] == "ne0":
        e = e[1]
    elif not (e[0] == "data" and e[1].dtype is not None and e[1].dtype.name == "BOOL"):
        return None
    if e[0] != "data" or e[2] != (("iota", 0), ("iota", 3)):
        return None
    src = e[1]
    if src.rank != 2 or src.dtype is None or not (src.dtype.is_integer or src.dtype.name == "BOOL"):
        return None
    ext = leaf_ext.get(id(src))
    # pad's own batch may be another symbol (dynamo names every input's dims apart), and a padding term
    # may run over it rather than over the scores' batch: the kernel requires a key-padding mask of
    # exactly [B, Sk] at run time
    if ext is None or exts.get(0) not in (b_ext, ext[0]) or exts.get(3) != ext[1]:
        return None
    return src


def prove_mask(mask: Value, batch: Any, sq: Any, sk: Any, keep_when: bool | None = None,
               padding_only: bool = False) -> MaskProof | None:
    """What ``mask`` is, proved for every batch size and sequence length, or None.

    ``mask`` is additive (``keep_when`` None: ``Where(C, 0, c)`` or ``Where(C', c, 0)``) or a
    boolean condition (``keep_when`` = the value that means "attend"); ``batch``, ``sq``, ``sk``
    are the scores' dims (symbols or ints). Sq must be Sk (no KV-cache offset). ``padding_only`` asks
    for a key-padding mask alone (``0 where pad[b, k] else c``; ``causal`` False in the proof)."""
    try:
        b_ext, q_ext, k_ext = Poly.of(batch), Poly.of(sq), Poly.of(sk)
        if q_ext != k_ext:
            return None
        ev = _Eval()
        t = ev.ten(mask)
        if not 2 <= t.rank <= 4:
            return None
        t = _broadcast(t, 4)
        filler = -np.inf
        if keep_when is None:
            if t.kind != "float" or t.expr[0] != "where":
                return None
            _, c, x, y = t.expr
            if x == ("const", 0.0) and y[0] == "const" and isinstance(y[1], float):
                cond, filler = c, y[1]
            elif y == ("const", 0.0) and x[0] == "const" and isinstance(x[1], float):
                cond, filler = ("not", _truth(c)), x[1]  # Where(masked, c, 0): one negated comparison
            else:
                return None
            if not filler <= -1e30:
                return None
        else:
            if t.kind != "bool" or not keep_when:
                return None
            cond = t.expr
        exts = t.extents
        atoms: list[Expr] = []
        _atoms(cond, atoms)
        causal, window, padding = False, 0, None
        for a in atoms:
            if a[0] in ("le", "lt", "ge", "gt"):
                lin = _linear(("sub", a[1], a[2]) if a[0] in ("le", "lt") else ("sub", a[2], a[1]))
                c0 = -lin.pop(None, 0) - (1 if a[0] in ("lt", "gt") else 0)  # lin <= c0
                if lin == {3: 1, 2: -1} and c0 == 0 and not causal:
                    causal = True  # k - q <= 0
                elif lin == {2: 1, 3: -1} and c0 >= 0 and not window:
                    window = c0 + 1  # q - k <= W - 1
                else:
                    return None
                continue
            src = _padding_atom(a, b_ext, exts, ev.leaf_ext)
            if src is None or padding is not None:
                return None
            padding = src
        if padding_only:
            if causal or window or padding is None or set(exts) - {0, 3} or \
                    not (exts.get(3) == k_ext or exts.get(3) == ev.leaf_ext[id(padding)][1]):
                return None
            return MaskProof(False, 0, padding, float(filler))
        # the key extent is Sk, or the padding mask's length: the kernel checks that it is Sk at run time
        pad_b = ev.leaf_ext[id(padding)][0] if padding is not None else b_ext
        if not causal or exts.get(2) != q_ext or (0 in exts and exts[0] not in (b_ext, pad_b)) or \
                not (exts.get(3) == k_ext or (padding is not None and exts.get(3) == ev.leaf_ext[id(padding)][1])):
            return None
        if set(exts) - {0, 2, 3}:
            return None
        return MaskProof(True, window, padding, float(filler))
    except NotProved as e:
        logger.debug("mask %%%s not proved: %s", mask.name, e)
        return None
