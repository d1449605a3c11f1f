"""A compact, stable text form of the IR, one line per node (MLIR-like).

    graph main(%x: f32[batch,4]) {
      %w: f32[4,4] = const
      %y: f32[batch,4] = MatMul(%x, %w)
      return %y
    }
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._core import Attr, AttrKind, Graph, Model, Node, Value

__all__ = ["format_graph", "format_model", "format_node", "format_attr"]

_MAX_INLINE_ELEMS = 8


def _vt(v: Value) -> str:
    return f"%{v.name}: {v.type if v.type is not None else '?'}"


def _tensor(a: np.ndarray) -> str:
    from ._types import DType

    try:
        dt = DType.from_numpy(a.dtype).short
    except TypeError:
        dt = str(a.dtype)
    shape = ",".join(str(d) for d in a.shape)
    if a.size <= _MAX_INLINE_ELEMS and a.dtype != object:
        vals = ",".join(str(x) for x in np.asarray(a, dtype=a.dtype).reshape(-1).tolist())
        return f"{dt}[{shape}]{{{vals}}}"
    return f"{dt}[{shape}]"


def format_attr(a: Attr, indent: str = "") -> str:
    k, v = a.kind, a.value
    if a.ref_attr_name:
        return f"{a.name}=@{a.ref_attr_name}"
    if k is AttrKind.STRING:
        return f"{a.name}={v!r}" if isinstance(v, bytes) else f'{a.name}="{v}"'
    if k is AttrKind.TENSOR:
        return f"{a.name}={_tensor(v)}"
    if k is AttrKind.TENSORS:
        return f"{a.name}=[{', '.join(_tensor(t) for t in v)}]"
    if k is AttrKind.SPARSE_TENSOR:
        return f"{a.name}=sparse<{_tensor(v.values)}->{list(v.dims)}>"
    if k is AttrKind.GRAPH:
        return f"{a.name}=" + format_graph(v, indent).lstrip()
    if k is AttrKind.GRAPHS:
        return f"{a.name}=[" + ", ".join(format_graph(g, indent).lstrip() for g in v) + "]"
    if k in (AttrKind.FLOATS, AttrKind.INTS, AttrKind.STRINGS):
        return f"{a.name}=[{', '.join(repr(x) if isinstance(x, (str, bytes)) else str(x) for x in v)}]"
    if k in (AttrKind.TYPE_PROTO,):
        return f"{a.name}=type<{v}>"
    if k in (AttrKind.TYPE_PROTOS,):
        return f"{a.name}=[{', '.join(f'type<{t}>' for t in v)}]"
    if k is AttrKind.SPARSE_TENSORS:
        return f"{a.name}=[{len(v)} sparse]"
    return f"{a.name}={v}"


def format_node(n: Node, indent: str = "  ") -> str:
    outs = ", ".join(_vt(o) for o in n.outputs)
    ins = ", ".join("" if v is None else f"%{v.name}" for v in n.inputs)
    attrs = ""
    if n.attrs:
        attrs = "<" + ", ".join(format_attr(a, indent + "  ") for a in sorted(n.attrs.values(), key=lambda a: a.name)) + ">"
    origin = n.meta.get("origin") if n.meta else None
    tail = f"  # {origin}" if origin else ""
    lhs = f"{outs} = " if outs else ""
    return f"{indent}{lhs}{n.op}{attrs}({ins}){tail}"


def format_graph(g: Graph, indent: str = "", only: Iterable[Node] | None = None) -> str:
    """Print ``g``; with ``only`` print just those nodes (diff-style dumps)."""
    inner = indent + "  "
    lines = [f"{indent}graph {g.name or '_'}(" + ", ".join(_vt(v) for v in g.inputs) + ") {"]
    input_ids = {id(v) for v in g.inputs}
    for v in g.initializers.values():
        if id(v) not in input_ids:
            sparse = " sparse" if v.name in g.sparse_initializers else ""
            lines.append(f"{inner}{_vt(v)} = const{sparse}")
    keep = None if only is None else set(only)
    for n in g:
        if keep is None or n in keep:
            lines.append(format_node(n, inner))
    lines.append(f"{inner}return " + ", ".join(f"%{v.name}" for v in g.outputs))
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def format_model(m: Model) -> str:
    ops = ", ".join(f"{d or 'ai.onnx'}:{v}" for d, v in sorted(m.opset_imports.items()))
    return f"# ir_version={m.ir_version} opsets=[{ops}] producer={m.producer_name}\n" + format_graph(m.graph)


