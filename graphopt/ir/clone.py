"""Deep copy of a Model (nodes, values, subgraphs, metadata).

Constant data is shared, not copied: the clone's arrays are read-only views
of the original's, so a pass that wrote into an initializer in place (instead
of replacing ``value.const``) fails loudly rather than silently changing the
model it was given. Use ``copy_constants=True`` for fully independent data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._core import Attr, AttrKind, Graph, Meta, Model, Node, SparseTensor, Value

__all__ = ["clone", "clone_graph"]


def _array(a: np.ndarray, copy: bool) -> np.ndarray:
    if copy:
        return np.array(a, copy=True)
    view = a.view()
    view.flags.writeable = False
    return view


class _Cloner:
    def __init__(self, copy_constants: bool) -> None:
        self.copy = copy_constants
        self.vmap: dict[int, Value] = {}

    def value(self, v: Value, const: np.ndarray | None = None) -> Value:
        nv = Value(v.name, v.type, const=const, doc_string=v.doc_string)
        nv.meta = Meta(v.meta)
        self.vmap[id(v)] = nv
        return nv

    def lookup(self, v: Value | None, where: Node | str) -> Value | None:
        if v is None:
            return None
        nv = self.vmap.get(id(v))
        if nv is None:
            label = where.label() if isinstance(where, Node) else where
            raise ValueError(f"clone: {label} reads %{v.name}, which is not defined before it")
        return nv

    def attr_value(self, a: Attr, parent: Node) -> Any:
        k, v = a.kind, a.value
        if v is None:
            return None
        if k is AttrKind.GRAPH:
            return self.graph(v, parent)
        if k is AttrKind.GRAPHS:
            return [self.graph(g, parent) for g in v]
        if k is AttrKind.TENSOR:
            return _array(v, self.copy)
        if k is AttrKind.TENSORS:
            return [_array(t, self.copy) for t in v]
        if k is AttrKind.SPARSE_TENSOR:
            return SparseTensor(v.values, v.indices, v.dims, v.name)
        if isinstance(v, list):
            return list(v)
        return v

    def graph(self, g: Graph, parent: Node | None) -> Graph:
        ng = Graph(g.name, parent=parent, doc_string=g.doc_string)
        ng.meta = Meta(g.meta)
        for v in g.inputs:
            ng.add_input(self.value(v))
        for name, v in g.initializers.items():
            nv = self.vmap.get(id(v)) if any(v is i for i in g.inputs) else None
            if nv is not None:  # an input with a default value
                nv.const = _array(v.const, self.copy)
                ng.initializers[name] = nv
            else:
                ng.add_initializer(self.value(v, _array(v.const, self.copy)))
        ng.sparse_initializers = set(g.sparse_initializers)
        for n in g:
            outs = [self.value(o) for o in n.outputs]
            nn = Node(n.op_type, [self.lookup(v, n) for v in n.inputs], domain=n.domain,
                      outputs=outs, name=n.name, doc_string=n.doc_string)
            nn.overload = n.overload
            nn.meta = Meta(n.meta)
            for k, a in n.attrs.items():
                nn.attrs[k] = Attr(a.name, a.kind, self.attr_value(a, nn), a.doc_string, a.ref_attr_name)
            ng.append(nn)
        ng.outputs = [self.lookup(v, f"graph {g.name!r} output") for v in g.outputs]  # type: ignore[misc]
        return ng


def clone_graph(graph: Graph, *, copy_constants: bool = False) -> Graph:
    """A deep copy of a top-level graph."""
    return _Cloner(copy_constants).graph(graph, None)


def clone(model: Model, *, copy_constants: bool = False) -> Model:
    """A deep copy of ``model``; constant data is shared read-only unless
    ``copy_constants``.

    >>> from graphopt.ir.clone import clone
    >>> snapshot = clone(model)      # doctest: +SKIP
    """
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    fields["graph"] = clone_graph(model.graph, copy_constants=copy_constants)
    fields["opset_imports"] = dict(model.opset_imports)
    fields["metadata_props"] = dict(model.metadata_props)
    fields["meta"] = Meta(model.meta)
    return Model(**fields)
