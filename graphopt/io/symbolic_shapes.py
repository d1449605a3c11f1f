"""Symbolic dims that onnx's shape inference leaves unknown, filled in after it.

The output shape of Reshape, Range, Slice and Expand depends on the *value* of a shape tensor.
When that value is read from symbolic dims (``Shape -> Gather / Slice / Squeeze / Unsqueeze /
Concat / Cast`` chains), onnx's data propagation gives up; TorchScript exports rely on exactly that
(DeBERTa: ``Reshape(x [B, N, S, d], [-1, S, d])`` merges batch and heads, relative positions are
built with ``Range(0, S)``, sliced to ``S`` rows and expanded to ``[B N, S, S]``). Here those values
are traced symbolically and the dims filled in -- only dims that are unknown, only when the value
proves them: a ``-1`` by dividing the element count exactly (symbols cancel: ``[B, N, S, d] ->
[-1, S, d]`` gives ``N*B``; a product dim is written ``"4*batch"``), an Expand of an unknown dim
only by a number > 1 (a symbol may be 1 at run time).

>>> _quotient((2, "batch", "seq"), ("seq",))
'2*batch'
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ir import Graph, Node, TensorType, Value

__all__ = ["refine_symbolic_shapes", "sym_value"]

Dim = int | str
_INT_MAX = 2 ** 31 - 1


def _const(v: Value | None) -> np.ndarray | None:
    from ..pattern import const_value  # lazy: graphopt.pattern builds on graphopt.io

    return const_value(v)


def sym_value(v: Value | None, depth: int = 10) -> list[Dim] | None:
    """The value of a 0-d / 1-d integer tensor as numbers and dim symbols, when it is computed
    from constants and (symbolic) shapes; else None."""
    if v is None or depth < 0:
        return None
    c = _const(v)
    if c is not None:
        return [int(x) for x in c.reshape(-1)] if c.dtype.kind in "iu" and c.ndim <= 1 else None
    p = v.producer()
    if p is None or p.domain != "":
        return None
    op, ins = p.op_type, p.inputs
    if op == "Shape":
        s = ins[0].shape if ins[0] is not None else None
        if s is None or any(d is None for d in s):
            return None
        end = p.attr("end", None)
        return list(s)[int(p.attr("start", 0)):None if end is None else int(end)]
    if op in ("Squeeze", "Unsqueeze", "Identity") or (op == "Cast" and int(p.attr("to", 0)) in (6, 7)):
        return sym_value(ins[0], depth - 1)  # int32 / int64: the values stay
    if op == "Concat":
        parts = [sym_value(i, depth - 1) for i in ins]
        return None if any(x is None for x in parts) else [d for x in parts for d in x]  # type: ignore[union-attr]
    if op == "Gather" and int(p.attr("axis", 0)) == 0:
        data, idx = sym_value(ins[0], depth - 1), _const(ins[1])
        if data is None or idx is None or idx.ndim > 1:
            return None
        try:
            return [data[int(i)] for i in idx.reshape(-1)]
        except IndexError:
            return None
    if op == "Slice":
        data = sym_value(ins[0], depth - 1)
        st = _const(ins[1])
        en = _const(ins[2])
        steps = _const(ins[4]) if len(ins) > 4 and ins[4] is not None else None
        if data is None or st is None or en is None or st.size != 1 or en.size != 1 or \
                (steps is not None and int(steps.reshape(-1)[0]) != 1):
            return None
        return data[int(st.reshape(-1)[0]):int(en.reshape(-1)[0])]
    if op == "Where":  # TorchScript's expand target: Where(Equal(s, -1), 1, s), s read from shapes
        eq = ins[0].producer() if ins[0] is not None else None
        s = sym_value(ins[2], depth - 1)
        neg = _const(eq.inputs[1]) if eq is not None and eq.op_type == "Equal" and eq.domain == "" else None
        one = _const(ins[1])
        if s is None or neg is None or eq.inputs[0] is not ins[2] or not np.all(neg == -1) or one is None:
            return None
        if all(isinstance(d, str) or d >= 0 for d in s):
            return s
        if np.all(one == 1) and all(isinstance(d, str) or d >= -1 for d in s):
            return [1 if d == -1 else d for d in s]  # the -1 entries become the 1s
        return None
    return None


def _factors(d: Dim) -> tuple[int, list[str]] | None:
    """16 -> (16, []), "batch" -> (1, ["batch"]), "4*s33" -> (4, ["s33"]); None: not a product."""
    if isinstance(d, int):
        return d, []
    coef, syms = 1, []
    for f in d.split("*"):
        f = f.strip()
        if f.isdigit():
            coef *= int(f)
        elif f.isidentifier():
            syms.append(f)
        else:
            return None
    return coef, syms


def _quotient(num: tuple[Dim, ...], den: tuple[Dim, ...]) -> Dim | None:
    """prod(num) / prod(den), exactly (symbols cancel, the coefficient divides), else None."""
    coef, syms = 1, []
    for d in num:
        f = _factors(d)
        if f is None:
            return None
        coef, syms = coef * f[0], syms + f[1]
    for d in den:
        f = _factors(d)
        if f is None or f[0] == 0 or coef % f[0]:
            return None
        coef //= f[0]
        for sym in f[1]:
            if sym not in syms:
                return None
            syms.remove(sym)
    if not syms:
        return coef
    return "*".join(([str(coef)] if coef != 1 else []) + syms)


def _reshape(n: Node) -> list[Dim | None] | None:
    xs, t = n.inputs[0].shape if n.inputs[0] is not None else None, sym_value(n.inputs[1])
    if xs is None or t is None or any(d is None for d in xs) or int(n.attr("allowzero", 0)):
        return None
    out: list[Dim | None] = [xs[i] if d == 0 and i < len(xs) else d for i, d in enumerate(t)]
    if out.count(-1) > 1 or any(isinstance(d, int) and d < -1 for d in out):
        return None
    if -1 in out:
        i = out.index(-1)
        out[i] = _quotient(tuple(xs), tuple(d for d in out if d != -1))  # type: ignore[misc]
    return out


def _range(n: Node) -> list[Dim | None] | None:
    start, delta, limit = _const(n.inputs[0]), _const(n.inputs[2]), sym_value(n.inputs[1])
    if start is None or delta is None or limit is None or len(limit) != 1 or \
            float(start.reshape(-1)[0]) != 0 or float(delta.reshape(-1)[0]) != 1:
        return None
    return [limit[0]] if isinstance(limit[0], str) or limit[0] >= 0 else None


def _slice(n: Node) -> list[Dim | None] | None:
    ins = list(n.inputs) + [None] * (5 - len(n.inputs))
    xs = ins[0].shape if ins[0] is not None else None
    st, en = sym_value(ins[1]), sym_value(ins[2])
    axes = _const(ins[3]) if ins[3] is not None else None
    steps = _const(ins[4]) if ins[4] is not None else None
    if xs is None or st is None or en is None or len(st) != len(en) or (ins[3] is not None and axes is None) \
            or (steps is not None and np.any(steps != 1)) or (ins[4] is not None and steps is None):
        return None
    ax = [int(a) % len(xs) for a in (axes.reshape(-1) if axes is not None else range(len(st)))]
    out: list[Dim | None] = list(xs)
    for a, s, e in zip(ax, st, en):
        d = xs[a]
        if s == 0 and (e == d or (isinstance(e, int) and e >= _INT_MAX)):
            continue  # the whole axis
        if isinstance(s, int) and isinstance(e, int) and isinstance(d, int):
            out[a] = len(range(d)[s:e])
        else:
            out[a] = None
    return out


def _expand(n: Node) -> list[Dim | None] | None:
    xs, t = n.inputs[0].shape if n.inputs[0] is not None else None, sym_value(n.inputs[1])
    if xs is None or t is None:
        return None
    r = max(len(xs), len(t))
    a_ = [1] * (r - len(xs)) + list(xs)
    b_ = [1] * (r - len(t)) + list(t)
    out: list[Dim | None] = []
    for a, b in zip(a_, b_):
        if b == 1:
            out.append(a)
        elif a == 1 or a == b:
            out.append(b)
        elif a is None and isinstance(b, int) and b > 1:
            out.append(b)  # a is 1 or b: either way b
        elif a is None and isinstance(b, str) and _factors(b) is not None and (_factors(b) or (0,))[0] > 1:
            out.append(b)  # "4*batch" >= 4 > 1: as for a number
        else:
            out.append(None)
    return out


_RULES = {"Reshape": _reshape, "Range": _range, "Slice": _slice, "Expand": _expand}


def refine_symbolic_shapes(g: Graph) -> bool:
    """Fill unknown output dims of Reshape / Range / Slice / Expand from symbolic shape values.
    Known dims are never changed. Returns whether a dim was filled in."""
    changed = False
    for n in g:
        rule = _RULES.get(n.op_type)
        if rule is None or n.domain != "" or not isinstance(n.outputs[0].type, TensorType):
            continue
        y = n.outputs[0]
        old = y.shape
        if old is not None and all(d is not None for d in old):
            continue
        new = rule(n)
        if new is None or (old is not None and len(old) != len(new)):
            continue
        merged = tuple(new) if old is None else tuple(o if o is not None else d for o, d in zip(old, new))
        if old is None or sum(d is not None for d in merged) > sum(d is not None for d in old):
            y.type = replace(y.type, shape=merged)
            changed = True
    return changed
