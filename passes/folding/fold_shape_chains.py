"""fold-shape-chains: fold Shape -> Gather/Slice -> Unsqueeze -> Concat -> Reshape
chains where the dims they compute are known.

A plain pass, not a pattern: it is a data-flow analysis over int64 "shape
vectors" (each element a known int, or a symbolic dim of some value), which
exporters spell in many ways (Gather or Slice, Unsqueeze or Reshape, Cast,
Concat of any arity). Symbolic dims come from one fresh run of onnx shape
inference (``data_prop=True``) on the current graph, so equal symbols mean
equal sizes.

* a shape vector whose elements are all known ints becomes a constant;
* ``Reshape(x, s)`` whose target elements are known ints or x's own dims at
  the same position gets a constant target (``0`` copies a dim; one unknown
  element becomes ``-1``), which frees the chain for remove-unused.
"""

from __future__ import annotations

import logging
from typing import Union

import numpy as np

from graphopt.ir import DType, Graph, Model, Node, TensorType, Value
from graphopt.pattern import can_replace, const_value, remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_pass

__all__ = ["FoldShapeChains", "infer_local_shapes"]

logger = logging.getLogger(__name__)

Dim = Union[int, str, None]
_BIG = 4096


def infer_local_shapes(model: Model) -> dict[int, tuple[Dim, ...] | None]:
    """Shapes of every value from one onnx inference run (id(value) -> dims),
    without touching the IR's own types."""
    import onnx

    from graphopt.io import to_onnx
    from graphopt.io.onnx_import import type_from_proto

    g = model.graph
    big = frozenset(n for n, v in g.initializers.items() if v.const is not None and v.const.nbytes > _BIG)
    proto = to_onnx(model, value_info=False, omit_initializer_data=big)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds from C++
        logger.info("fold-shape-chains: shape inference failed: %s", e)
        return {}
    types = {vi.name: type_from_proto(vi.type) for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    out: dict[int, tuple[Dim, ...] | None] = {}
    for v in g.all_values():
        t = types.get(v.name)
        if isinstance(t, TensorType) and t.shape is not None:
            out[id(v)] = tuple(t.shape)
        elif isinstance(v.type, TensorType) and v.type.shape is not None and (v.is_graph_input or v.const is not None):
            out[id(v)] = tuple(v.type.shape)
    return out


class _Sym:
    """Symbolic int64 vectors: value -> tuple of dims (int, or (value-shape-id, symbol))."""

    def __init__(self, shapes: dict[int, tuple[Dim, ...] | None]) -> None:
        self.shapes = shapes
        self.vec: dict[int, tuple[Dim, ...]] = {}
        self.scalar: set[int] = set()  # values that are 0-d (Gather with a scalar index)

    def shape_of(self, v: Value) -> tuple[Dim, ...] | None:
        # Only the shapes of this one inference run: symbols from another run
        # (stale IR types) could equal by accident.
        s = self.shapes.get(id(v))
        return None if s is None else tuple(s)

    def get(self, v: Value | None) -> tuple[Dim, ...] | None:
        if v is None:
            return None
        if id(v) in self.vec:
            return self.vec[id(v)]
        c = const_value(v)
        if c is not None and c.dtype.kind == "i" and c.ndim <= 1 and c.size <= 64:
            return tuple(int(x) for x in c.reshape(-1))
        return None

    def is_scalar(self, v: Value) -> bool:
        if id(v) in self.scalar:
            return True
        c = const_value(v)
        return c is not None and c.ndim == 0

    def visit(self, n: Node) -> None:
        op = n.op_type
        if n.domain != "" or not n.outputs:
            return
        out = n.outputs[0]
        res: tuple[Dim, ...] | None = None
        scalar = False
        ins = n.inputs
        if op == "Shape" and ins and ins[0] is not None:
            s = self.shape_of(ins[0])
            if s is not None:
                dims = tuple(d if isinstance(d, int) else (str(d) if d is not None else None) for d in s)
                res = dims[n.attr("start", 0):n.attr("end", None)]
        elif op == "Gather" and len(ins) == 2 and n.attr("axis", 0) == 0:
            data, idx = self.get(ins[0]), const_value(ins[1])
            if data is not None and idx is not None and idx.ndim <= 1:
                try:
                    res = tuple(data[int(i)] for i in idx.reshape(-1))
                    scalar = idx.ndim == 0
                except IndexError:
                    res = None
        elif op in ("Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten") and ins:
            data = self.get(ins[0])
            if data is not None:
                if op == "Unsqueeze" and self.is_scalar(ins[0]):
                    res = data
                elif op in ("Identity",) and not self.is_scalar(ins[0]):
                    res = data
                elif op == "Squeeze" and len(data) == 1:
                    res, scalar = data, True
                elif op == "Reshape" and not self.is_scalar(ins[0]):
                    tgt = self.get(ins[1]) if len(ins) > 1 else None
                    if tgt is not None and len(tgt) == 1 and tgt[0] in (-1, len(data)):
                        res = data
        elif op == "Cast" and ins and n.attr("to") in (DType.INT64.value, DType.INT32.value):
            data = self.get(ins[0])
            if data is not None:
                res, scalar = data, self.is_scalar(ins[0])
        elif op == "Concat" and n.attr("axis", 0) in (0, -1):
            parts = [self.get(v) for v in ins]
            if parts and all(p is not None for p in parts) and not any(self.is_scalar(v) for v in ins if v):
                res = tuple(d for p in parts for d in p)  # type: ignore[union-attr]
        elif op == "Slice" and len(ins) >= 3:
            data = self.get(ins[0])
            starts, ends = const_value(ins[1]), const_value(ins[2])
            axes = const_value(ins[3]) if len(ins) > 3 and ins[3] is not None else np.array([0])
            steps = const_value(ins[4]) if len(ins) > 4 and ins[4] is not None else np.array([1])
            if data is not None and starts is not None and ends is not None and axes is not None \
                    and steps is not None and starts.size == 1 and list(axes.reshape(-1)) in ([0], [-1]):
                st, en, sp = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0]), int(steps.reshape(-1)[0])
                if sp != 0:
                    res = tuple(data[slice(st, en, sp)])
        if res is not None and len(res) <= 64:
            self.vec[id(out)] = res
            if scalar:
                self.scalar.add(id(out))


def _known(vec: tuple[Dim, ...]) -> bool:
    return all(isinstance(d, int) for d in vec)


class _Folder:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.g: Graph = model.graph
        self.stats = {"constants": 0, "reshapes": 0}

    def has_work(self) -> bool:
        """Shape inference costs the most here: skip it when no Shape/Size is
        read and no Reshape takes a computed target."""
        for n in self.g:
            if n.domain:
                continue
            if n.op_type in ("Shape", "Size") and (n.outputs[0].num_uses() or n.outputs[0].is_graph_output()):
                return True
            if n.op_type == "Reshape" and len(n.inputs) > 1 and n.inputs[1] is not None \
                    and const_value(n.inputs[1]) is None:
                return True
        return False

    def run(self) -> None:
        if not self.has_work():
            return
        sym = _Sym(infer_local_shapes(self.model))
        for n in list(self.g):
            if n.graph is not self.g:
                continue
            sym.visit(n)
            if n.op_type == "Reshape" and n.domain == "" and len(n.inputs) >= 2:
                self._reshape(n, sym)
        # Replace fully known vectors that still have users (not already constants).
        for n in list(self.g):
            if n.graph is not self.g or not n.outputs or n.op_type == "Constant" or n.domain != "":
                continue
            o = n.outputs[0]
            vec = sym.vec.get(id(o))
            if vec is None or not _known(vec) or not (o.num_uses() or o.is_graph_output()):
                continue
            if len(n.outputs) > 1 and any(x.num_uses() for x in n.outputs[1:]):
                continue
            arr = np.array(vec, dtype=np.int64)
            if id(o) in sym.scalar:
                arr = arr.reshape(())
            if o.dtype is not None and o.dtype.value and o.dtype is not DType.INT64:
                try:
                    arr = arr.astype(o.dtype.numpy)
                except TypeError:
                    continue
            if o.shape is not None and len(o.shape) != arr.ndim:
                continue
            new = self.g.add_initializer(Value(self.g.unique_name(o.name), const=arr))
            if can_replace(o, new) is not None:
                self.g.remove_initializer(new)
                continue
            o.replace_all_uses_with(new, outputs=True)
            remove_dead(self.g, [n])
            self.stats["constants"] += 1

    def _reshape(self, n: Node, sym: _Sym) -> None:
        x, s = n.inputs[0], n.inputs[1]
        if x is None or s is None or const_value(s) is not None:
            return
        vec = sym.get(s)
        if vec is None:
            return
        allowzero = n.attr("allowzero", 0)
        xs = sym.shape_of(x)
        target: list[int] = []
        unknown = 0
        for i, d in enumerate(vec):
            if isinstance(d, int):
                if d == 0 and not allowzero:
                    target.append(0)  # already a copy of x's dim i
                elif d == -1:
                    unknown += 1
                    target.append(-1)
                else:
                    target.append(d)
            elif not allowzero and xs is not None and i < len(xs) and isinstance(d, str) \
                    and isinstance(xs[i], str) and xs[i] == d:
                target.append(0)
            else:
                unknown += 1
                target.append(-1)
        if unknown > 1:
            return
        c = self.g.add_initializer(self.g.unique_name(s.name or "shape"), np.array(target, dtype=np.int64))
        n.set_input(1, c)
        producer = s.producer()
        if producer is not None and not s.num_uses() and not s.is_graph_output():
            remove_dead(self.g, [producer])
        self.stats["reshapes"] += 1


@register_pass
class FoldShapeChains(Pass):
    """Fold shape computations whose dims are known: constant shape vectors
    become initializers and Reshape targets become constants (``0`` copies an
    input dim, ``-1`` the one unknown).

    >>> FoldShapeChains().run(model, PassContext()).stats    # doctest: +SKIP
    {'reshapes': 24, 'constants': 3}
    """

    name = "fold-shape-chains"
    description = "fold Shape->Gather->Unsqueeze->Concat->Reshape chains where dims are known"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        f = _Folder(model)
        f.run()
        stats = {k: v for k, v in f.stats.items() if v}
        return PassResult(bool(stats), stats)
