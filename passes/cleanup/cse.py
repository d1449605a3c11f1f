"""cse: common-subexpression elimination.

A plain pass, not a pattern: it needs a table of every node seen so far
(value numbering), which no local pattern can express.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphopt.ir import Attr, AttrKind, Graph, Model, Node
from graphopt.pattern import can_replace, remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_pass

__all__ = ["CSE"]

# Ops whose result is not a function of their inputs (or that have effects).
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                               "Multinomial", "Bernoulli"})
_BIG = 1 << 16  # tensor attributes bigger than this (bytes) are keyed by identity, not content


def _tensor_key(a: np.ndarray) -> Any:
    if a.nbytes > _BIG or a.dtype == object:
        return ("id", id(a))
    return (str(a.dtype), a.shape, a.tobytes())


def _attr_key(a: Attr) -> Any:
    v = a.value
    if a.ref_attr_name:
        return ("ref", a.ref_attr_name)
    if a.kind is AttrKind.TENSOR:
        return _tensor_key(v)
    if a.kind is AttrKind.TENSORS:
        return tuple(_tensor_key(t) for t in v)
    if a.kind in (AttrKind.FLOATS, AttrKind.INTS, AttrKind.STRINGS):
        return tuple(v)
    if a.kind in (AttrKind.FLOAT, AttrKind.INT, AttrKind.STRING):
        return v
    return ("id", id(v))  # types, sparse tensors: only identical objects are equal


def _key(n: Node) -> Any | None:
    if n.op_type in _NONDETERMINISTIC or n.subgraphs() or not n.outputs:
        return None
    if n.op_type == "Dropout" and len(n.inputs) > 2 and n.inputs[2] is not None:
        return None  # training-mode dropout is random
    return (n.domain, n.op_type, n.overload, len(n.outputs), tuple(id(v) if v is not None else None for v in n.inputs),
            tuple(sorted((k, a.kind.value, _attr_key(a)) for k, a in n.attrs.items())))


def _dedup_initializers(g: Graph) -> int:
    """Small initializers with equal content become one (their users can then merge)."""
    keep = {id(v) for v in g.inputs} | {id(v) for v in g.outputs}
    canon: dict[Any, Any] = {}
    merged = 0
    for v in list(g.initializers.values()):
        if id(v) in keep or v.const is None or v.const.nbytes > _BIG or v.const.dtype == object:
            continue
        k = (str(v.const.dtype), v.const.shape, v.const.tobytes())
        first = canon.setdefault(k, v)
        if first is not v and v.type == first.type:
            v.replace_all_uses_with(first)
            g.remove_initializer(v)
            merged += 1
    return merged


def _cse_graph(g: Graph) -> tuple[int, int]:
    """(nodes merged, initializers merged) in ``g`` and its subgraphs."""
    seen: dict[Any, Node] = {}
    inits = _dedup_initializers(g)
    merged = 0
    for n in g:
        for sg in n.subgraphs():
            a, b = _cse_graph(sg)
            merged += a
            inits += b
        k = _key(n)
        if k is None:
            continue
        first = seen.get(k)
        if first is None:
            seen[k] = n
            continue
        if any(can_replace(o, f) for o, f in zip(n.outputs, first.outputs)):
            continue  # both are graph outputs (or similar): keep the duplicate
        for o, f in zip(n.outputs, first.outputs):
            if f.type is None and o.type is not None:
                f.type = o.type
            o.replace_all_uses_with(f, outputs=True)
        remove_dead(g, [n])
        merged += 1
    return merged, inits


@register_pass
class CSE(Pass):
    """Merge nodes with the same op, attributes and inputs (in order), so each
    value is computed once. Random ops and nodes with subgraphs are left alone.

    >>> CSE().run(model, PassContext()).stats     # doctest: +SKIP
    {'nodes': 12, 'initializers': 40}
    """

    name = "cse"
    description = "common-subexpression elimination (same op, attributes and inputs)"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        nodes, inits = _cse_graph(model.graph)
        stats = {k: v for k, v in (("nodes", nodes), ("initializers", inits)) if v}
        return PassResult(bool(stats), stats)
