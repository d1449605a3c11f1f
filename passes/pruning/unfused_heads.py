"""Attention heads of *unfused* graphs: find them, and shrink every tensor that depends on them.

An unfused attention block is what exporters write: Q/K/V projections (linear layers with
constant weights, biases as per-channel adds), head splits (Reshape + Transpose), optional
rotary embedding (fused ``graphopt::RotaryEmbedding`` or written out with Slice/Neg/Concat),
grouped KV heads repeated by Unsqueeze + Expand + Reshape, scores = MatMul(Q, K^T), scale and
mask, Softmax, MatMul(probs, V), the merge (Transpose + Reshape) and the output projection.

Removing a unit (a head, or with grouped KV heads a whole KV group and the query heads that
share it) drops its columns from the Q/K/V weights and biases and its rows from the output
projection; every shape constant on the way that spells a head count out (Reshape/Expand
targets, also inside Concat-built shapes) gets the new count, and the value types follow.
Shape elements computed at run time (Shape -> Gather -> Concat) follow the tensors by
themselves; a side input whose size along a head axis is unknown is taken as broadcast.

The head axes are tracked, not guessed: each axis carries a *kind* - ``Cq``/``Ckv`` (query /
key-value channels, heads x head_dim), ``Hq``/``Hkv`` (query / key-value heads) - propagated
from the projections through every op of the block (Reshape by aligning old static dims from
the right, Transpose, Unsqueeze, Expand, element-wise ops, the two attention MatMuls). An op
or a side input that would mix heads (e.g. a per-head position bias) makes the block
unprunable, and it is left as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from graphopt.ir import Graph, Node, TensorType, Value

from .blocks import _replace_const, linear_weight, set_rows

__all__ = ["UnfusedHeadGroup", "unfused_head_groups"]

logger = logging.getLogger(__name__)

#: ops an attention block's head tensors pass through (path operands: those reaching a projection)
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Where", "Cast", "Identity", "Softmax", "IsNaN",
                          "graphopt::RotaryEmbedding"})
_SHAPE_OPS = frozenset({"Transpose", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Slice", "Concat"})
_PATH_OPS = _ELEMENTWISE | _SHAPE_OPS | {"MatMul"}


class _Unprunable(Exception):
    pass


@dataclass
class UnfusedHeadGroup:
    """One unfused attention block (see the module docstring)."""

    q: Node
    k: Node
    v: Node
    out_proj: Node
    region: list[Node]
    num_heads: int
    num_kv_heads: int
    head_dim: int
    axes: dict[int, dict[int, str]] = field(default_factory=dict, repr=False)  # id(value) -> {axis: kind}
    values: list[Value] = field(default_factory=list, repr=False)

    @property
    def rep(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def units(self) -> int:
        """Prunable units: KV groups (each with ``rep`` query heads)."""
        return self.num_kv_heads

    @property
    def context(self) -> Value:
        return self.out_proj.inputs[0]

    @property
    def label(self) -> str:
        return self.out_proj.name or self.out_proj.label()

    def index_sets(self, keep_units: np.ndarray) -> dict[str, np.ndarray]:
        d, rep = self.head_dim, self.rep
        heads = np.array([u * rep + r for u in keep_units for r in range(rep)], np.int64)
        return {"Hkv": np.asarray(keep_units, np.int64), "Hq": heads,
                "Ckv": np.concatenate([np.arange(u * d, (u + 1) * d) for u in keep_units]),
                "Cq": np.concatenate([np.arange(h * d, (h + 1) * d) for h in heads])}

    def context_cols(self, keep_units: np.ndarray) -> np.ndarray:
        return self.index_sets(keep_units)["Cq"]

    def shrink(self, g: Graph, keep_units: np.ndarray, wo: np.ndarray | None = None) -> None:
        """Keep ``keep_units`` (sorted KV-group indices); ``wo``: the output projection's new rows."""
        idx = self.index_sets(keep_units)
        sizes = {k: len(v) for k, v in idx.items()}
        for proj, kind in ((self.q, "Cq"), (self.k, "Ckv"), (self.v, "Ckv")):
            _replace_const(g, proj, 1, linear_weight(proj)[:, idx[kind]])
            if proj.op == "graphopt::Linear" and len(proj.inputs) > 2 and proj.inputs[2] is not None:
                _replace_const(g, proj, 2, proj.inputs[2].const.reshape(-1)[idx[kind]])
        for node in self.region:
            out_axes = self.axes.get(id(node.outputs[0]), {})
            rank = len(node.outputs[0].shape or ())
            for i, x in enumerate(node.inputs):
                if x is None or x.const is None or node.op not in _ELEMENTWISE:
                    continue  # (per-channel / per-head constants of element-wise ops: biases, scales)
                c = x.const
                new = c
                for axis, kind in out_axes.items():
                    ca = axis - (rank - c.ndim)
                    if 0 <= ca < c.ndim and c.shape[ca] > 1:
                        new = np.take(new, idx[kind], axis=ca)
                if new is not c:
                    _replace_const(g, node, i, new)
            if node.op in ("Reshape", "Expand"):
                _set_shape_elements(g, node, out_axes, sizes)
        for v in self.values:
            ax = self.axes.get(id(v), {})
            if ax and v.shape is not None:
                dims = list(v.shape)
                for a, kind in ax.items():
                    dims[a] = sizes[kind]
                v.type = TensorType(v.dtype, tuple(dims))
        set_rows(g, self.out_proj, linear_weight(self.out_proj)[idx["Cq"]] if wo is None else wo)


# ------------------------------------------------------------------ shape constants

def _shape_pieces(v: Value) -> list[tuple[Value, int]] | None:
    """The 1-D int pieces a shape tensor is made of: [(value, length)], or None if not constant-ish."""
    if v.const is not None:
        return [(v, int(v.const.size))]
    p = v.producer()
    if p is not None and p.op == "Concat" and int(p.attr("axis", 0)) == 0:
        pieces = []
        for x in p.inputs:
            if x is None or x.shape is None or len(x.shape) != 1 or not isinstance(x.shape[0], int):
                return None
            pieces.append((x, int(x.shape[0])))
        return pieces
    return None


def _set_shape_elements(g: Graph, node: Node, out_axes: dict[int, str], sizes: dict[str, int]) -> None:
    """Write the new head counts into the explicit elements of ``node``'s target shape."""
    if not out_axes:
        return
    shape_v = node.inputs[1]
    pieces = _shape_pieces(shape_v)
    if pieces is None:  # computed at run time from tensor shapes (Shape -> ...): it follows them
        return
    at = 0
    new_pieces: list[Value] = []
    changed = False
    for val, n in pieces:
        arr = val.const
        upd = None
        for a in range(at, at + n):
            if a in out_axes and arr is not None and arr.reshape(-1)[a - at] > 1:
                upd = arr.copy() if upd is None else upd
                upd.reshape(-1)[a - at] = sizes[out_axes[a]]
        if upd is not None:
            nv = g.add_initializer(g.unique_name((val.name or "shape") + "_pruned"), upd)
            new_pieces.append(nv)
            changed = True
        else:
            new_pieces.append(val)
        at += n
    if not changed:
        return
    if shape_v.const is not None:
        node.set_input(1, new_pieces[0])
        return
    concat = shape_v.producer()
    assert concat is not None
    if shape_v.num_uses() == 1:
        for i, nv in enumerate(new_pieces):
            concat.set_input(i, nv)
    else:  # shared with another Reshape: give this node its own Concat
        c2 = Node("Concat", new_pieces, {"axis": 0}, name=g.unique_name((concat.name or "shape") + "_pruned"))
        g.insert_before(node, c2)
        c2.outputs[0].type = shape_v.type
        node.set_input(1, c2.outputs[0])


def _refine(v: Value, known: dict[int, int]) -> None:
    """Fill unknown static dims of ``v`` that are known to be ``known[axis]``."""
    if v.shape is None:
        return
    dims = list(v.shape)
    for a, size in known.items():
        if -len(dims) <= a < len(dims) and not isinstance(dims[a], int):
            dims[a] = size
    if dims != list(v.shape):
        v.type = TensorType(v.dtype, tuple(dims))


def _refine_from_target(n: Node) -> None:
    pieces = _shape_pieces(n.inputs[1])
    if pieces is None:
        return
    elems, at = {}, 0
    for val, k in pieces:
        if val.const is not None:
            for i, e in enumerate(val.const.reshape(-1)):
                if e > 0:
                    elems[at + i] = int(e)
        at += k
    _refine(n.outputs[0], elems)


# ------------------------------------------------------------------ axis kinds

def _dims(v: Value) -> list:
    if v.shape is None:
        raise _Unprunable(f"%{v.name} has no static shape")
    return list(v.shape)


def _reshape_groups(src: list, dst: list) -> list[tuple[list[int], list[int]]]:
    """Align two static shapes from the right into groups of equal products (ints only inside groups)."""
    groups = []
    i, j = len(src) - 1, len(dst) - 1
    while i >= 0 and j >= 0:
        a, b = src[i], dst[j]
        gi, gj = [i], [j]
        if a != b and not (isinstance(a, int) and isinstance(b, int)) and 1 in (a, b):
            groups.append(([], [j]) if b == 1 else ([i], []))  # an inserted / removed axis of size 1
            i, j = (i, j - 1) if b == 1 else (i - 1, j)
            continue
        if isinstance(a, int) and isinstance(b, int):
            pa, pb = a, b
            while pa != pb:
                side, other = (src, gi) if pa < pb else (dst, gj)
                at = (i if side is src else j) - len(other)
                if at < 0:
                    raise _Unprunable(f"cannot align reshape {src} -> {dst}")
                if not isinstance(side[at], int):  # an unknown dim closes the group: it is the quotient
                    big, small = max(pa, pb), min(pa, pb)
                    if big % small:
                        raise _Unprunable(f"cannot align reshape {src} -> {dst}")
                    side[at] = big // small
                other.append(at)
                if side is src:
                    pa *= src[at]
                else:
                    pb *= dst[at]
        groups.append((sorted(gi), sorted(gj)))
        i -= len(gi)
        j -= len(gj)
    return groups


def _merge_kind(kinds: list[str | None], sizes: list, d: int) -> str | None:
    ks = [k for k in kinds if k is not None]
    if not ks:
        return None
    if len(ks) > 1:
        raise _Unprunable("a reshape merges two head axes")
    k = ks[0]
    others = [s for kk, s in zip(kinds, sizes) if kk is None]
    if k in ("Cq", "Ckv") and not others:
        return k
    if k in ("Hq", "Hkv") and others == [d]:
        return "Cq" if k == "Hq" else "Ckv"
    if k == "Hkv" and len(others) == 1 and kinds[0] == "Hkv":
        return "Hq"  # [kv groups, rep] -> query heads (repeat_kv)
    if k in ("Hq", "Hkv") and not others:
        return k
    raise _Unprunable(f"unsupported merge of {kinds} {sizes}")


def _propagate(node: Node, axes: dict[int, dict[int, str]], d: int) -> dict[int, str]:
    """Kinds of ``node``'s output axes from its inputs' (raises _Unprunable)."""
    out = node.outputs[0]
    op = node.op
    path_in = [x for x in node.inputs if x is not None and id(x) in axes]
    if op == "Transpose":
        perm = list(node.attr("perm"))
        src = axes[id(node.inputs[0])]
        return {i: src[p] for i, p in enumerate(perm) if p in src}
    if op in ("Unsqueeze", "Squeeze", "Reshape"):
        src_v = node.inputs[0]
        src, sd, od = axes[id(src_v)], _dims(src_v), _dims(out)
        if not src:
            return {}
        res: dict[int, str] = {}
        for gi, gj in _reshape_groups(sd, od):
            if all(src.get(i) is None for i in gi):
                continue
            gi2 = [i for i in gi if sd[i] != 1 or i in src]   # size-1 axes come and go (Unsqueeze/Squeeze)
            gj2 = [j for j in gj if od[j] != 1]
            kinds = [src.get(i) for i in gi2]
            if len(gi2) == len(gj2) and all(sd[i] == od[j] for i, j in zip(gi2, gj2)):
                res.update({j: src[i] for i, j in zip(gi2, gj2) if i in src})
            elif len(gj2) == 1:
                res[gj2[0]] = _merge_kind(kinds, [sd[i] for i in gi2], d)  # type: ignore[assignment]
            elif len(gi2) == 1 and kinds[0] in ("Cq", "Ckv"):
                non_d = [j for j in gj2 if od[j] != d] or gj2[:1]
                if len(non_d) != 1:
                    raise _Unprunable(f"{node.label()}: cannot split the channels {sd} -> {od}")
                res[non_d[0]] = "Hq" if kinds[0] == "Cq" else "Hkv"
            else:
                raise _Unprunable(f"{node.label()}: unsupported reshape {sd} -> {od} of head axes")
        return res
    if op == "Expand":
        src, sd, od = axes[id(node.inputs[0])], _dims(node.inputs[0]), _dims(out)
        off = len(od) - len(sd)
        return {a + off: k for a, k in src.items()}
    if op in ("Slice", "Concat"):
        res = {}
        for x in path_in:
            res.update(axes[id(x)])
        rank = len(_dims(out))
        if op == "Concat":
            cut = [int(node.attr("axis")) % rank]
        else:
            ax = node.inputs[3].const if len(node.inputs) > 3 and node.inputs[3] is not None else None
            if ax is None:
                raise _Unprunable(f"{node.label()}: Slice without constant axes")
            cut = [int(a) % rank for a in ax.reshape(-1)]
        if any(a in res for a in cut):
            raise _Unprunable(f"{node.label()}: slices or concatenates along a head axis")
        if op == "Concat" and any(axes[id(x)] != res for x in path_in):
            raise _Unprunable(f"{node.label()}: concatenates tensors with different head axes")
        return res
    if op == "MatMul":
        a, b = node.inputs
        rank = len(_dims(out))
        res = {}
        for x in (a, b):
            if x is None or id(x) not in axes:
                continue
            xr = len(_dims(x))
            for ax, k in axes[id(x)].items():
                if ax >= xr - 2:
                    raise _Unprunable(f"{node.label()}: a head axis is a matrix axis")
                oa = ax + rank - xr
                if res.get(oa, k) != k and {res[oa], k} != {"Hq", "Hkv"}:
                    raise _Unprunable(f"{node.label()}: operands disagree on the head axis")
                res[oa] = "Hq" if "Hq" in (k, res.get(oa)) else k
        return res
    if op in _ELEMENTWISE:
        rank = len(_dims(out))
        res = {}
        for x in path_in:
            xr = len(_dims(x))
            res.update({a + rank - xr: k for a, k in axes[id(x)].items()})
        if op == "Softmax" and int(node.attr("axis", -1)) % rank in res:
            raise _Unprunable(f"{node.label()}: softmax over a head axis")
        od = _dims(out)
        for x in node.inputs:  # side inputs (masks, cos/sin, scales) must not vary along a head axis
            if x is None or id(x) in axes:
                continue
            xd = list(x.const.shape) if x.const is not None else (list(x.shape) if x.shape is not None else None)
            if xd is None:
                raise _Unprunable(f"{node.label()}: side input %{x.name} has no static shape")
            for a in res:
                xa = a - (rank - len(xd))
                # a known size > 1 mixes heads (per-head position bias); unknown dims are taken as broadcast
                if 0 <= xa < len(xd) and isinstance(xd[xa], int) and xd[xa] != 1 \
                        and not (x.const is not None and xd[xa] == od[a]):
                    raise _Unprunable(f"{node.label()}: side input %{x.name} varies along a head axis")
        return res
    raise _Unprunable(f"{node.label()}: {op} on the head path")


# ------------------------------------------------------------------ finding blocks

class _Finder:
    def __init__(self, g: Graph) -> None:
        self.g = g
        self.memo: dict[int, frozenset[Node]] = {}

    def reaches(self, v: Value) -> frozenset[Node]:
        """Projections (linear layers with a constant weight) ``v`` is computed from through path ops."""
        key = id(v)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = frozenset()  # cycles cannot happen in a DAG; this guards re-entry
        p = v.producer()
        res: frozenset[Node] = frozenset()
        if p is not None and v.const is None:
            if linear_weight(p) is not None and v is p.outputs[0]:
                res = frozenset({p})
            elif p.op in _PATH_OPS and not (p.op == "MatMul" and p.inputs[1] is not None and p.inputs[1].const is not None):
                acc: set[Node] = set()
                for x in p.inputs:
                    if x is not None and x.const is None:
                        acc |= self.reaches(x)
                res = frozenset(acc)
        self.memo[key] = res
        return res

    def upstream(self, v: Value | None, depth: int = 8) -> Node | None:
        """The scores MatMul (two dynamic operands) above the softmax, through element-wise ops,
        following the operand computed from the projections (not the mask)."""
        for _ in range(depth):
            p = v.producer() if v is not None else None
            if p is None:
                return None
            if p.op == "MatMul" and all(x is not None and x.const is None for x in p.inputs):
                return p
            if p.op not in _ELEMENTWISE:
                return None
            v = next((x for x in p.inputs if x is not None and x.const is None and self.reaches(x)), None)
        return None

    def one(self, v: Value, what: str) -> Node:
        r = self.reaches(v)
        if len(r) != 1:
            raise _Unprunable(f"{what} comes from {len(r)} projections")
        return next(iter(r))

    def block(self, sm: Node) -> UnfusedHeadGroup:
        g = self.g
        # scores MatMul: the dynamic MatMul upstream of the softmax, through element-wise ops
        qk = self.upstream(sm.inputs[0])
        ctx = _downstream(sm.outputs[0], lambda n, v: n.op == "MatMul" and n.inputs[0] is v)
        if qk is None or ctx is None:
            raise _Unprunable("no scores / context MatMul around the softmax")
        q, k, vproj = self.one(qk.inputs[0], "Q"), self.one(qk.inputs[1], "K"), self.one(ctx.inputs[1], "V")
        if len({q, k, vproj}) != 3:
            raise _Unprunable("Q, K and V share a projection (packed QKV)")
        # output projection: forward from the context through single-use shape ops
        v = ctx.outputs[0]
        out_proj = None
        for _ in range(6):
            uses = [(n, i) for n, i in v.uses() if n.op != "Shape"]  # Shape reads follow the tensor
            if len(uses) != 1 or v.is_graph_output():
                break
            n, i = uses[0]
            if linear_weight(n) is not None and i == 0:
                out_proj = n
                break
            if n.op not in ("Transpose", "Reshape", "Identity") or i != 0:
                break
            v = n.outputs[0]
        if out_proj is None:
            raise _Unprunable("no output projection after the context")
        qd = _dims(qk.inputs[0])
        d = qd[-1]
        cq, ckv = linear_weight(q).shape[1], linear_weight(k).shape[1]
        if not isinstance(d, int) or cq % d or ckv % d or linear_weight(vproj).shape[1] != ckv \
                or linear_weight(out_proj).shape[0] != cq:
            raise _Unprunable(f"inconsistent sizes: head_dim {d}, Q {cq}, K/V {ckv}")
        heads, kv = cq // d, ckv // d
        if heads % kv:
            raise _Unprunable(f"{heads} query heads do not group over {kv} KV heads")
        # the region: nodes on a path from a projection to the context
        region: dict[Node, None] = {}
        todo, seen = [out_proj.inputs[0]], set()
        while todo:
            x = todo.pop()
            if id(x) in seen:
                continue
            seen.add(id(x))
            p = x.producer()
            if p is None or p in (q, k, vproj):
                continue
            region[p] = None
            todo.extend(y for y in p.inputs if y is not None and y.const is None and self.reaches(y))
        inside = set(region) | {out_proj}
        for n in list(region) + [q, k, vproj]:
            for o in n.outputs:
                if o.is_graph_output() or any(u not in inside and u.op != "Shape" for u in o.consumers()):
                    raise _Unprunable(f"%{o.name} is used outside the attention block")
        order = {n: i for i, n in enumerate(g)}
        nodes = sorted(region, key=lambda n: order[n])
        for n in nodes:  # static dims a Reshape target spells out, and the context's channels (true facts)
            if n.op == "Reshape":
                _refine_from_target(n)
        _refine(out_proj.inputs[0], {-1: cq})
        axes: dict[int, dict[int, str]] = {}
        for proj, kind in ((q, "Cq"), (k, "Ckv"), (vproj, "Ckv")):
            o = proj.outputs[0]
            axes[id(o)] = {len(_dims(o)) - 1: kind}
        values = []
        for n in nodes:
            ax = _propagate(n, axes, d)
            axes[id(n.outputs[0])] = ax
            values.append(n.outputs[0])
        ctx_axes = axes.get(id(out_proj.inputs[0]), {})
        if list(ctx_axes.values()) != ["Cq"] or max(ctx_axes) != len(_dims(out_proj.inputs[0])) - 1:
            raise _Unprunable(f"the context's head axes are {ctx_axes}, not its query channels")
        values += [q.outputs[0], k.outputs[0], vproj.outputs[0]]
        return UnfusedHeadGroup(q, k, vproj, out_proj, nodes, heads, kv, d, axes, values)


def _downstream(v: Value, want, depth: int = 6) -> Node | None:
    frontier = [v]
    for _ in range(depth):
        nxt = []
        for x in frontier:
            for n, _i in x.uses():
                if want(n, x):
                    return n
                if n.op in _ELEMENTWISE:
                    nxt.append(n.outputs[0])
        frontier = nxt
    return None


def unfused_head_groups(g: Graph) -> list[UnfusedHeadGroup]:
    """Every prunable unfused attention block of ``g`` (blocks that are not prunable are logged)."""
    f = _Finder(g)
    out, done = [], set()
    for n in g:
        if n.op != "Softmax":
            continue
        try:
            grp = f.block(n)
        except _Unprunable as e:
            logger.info("%s: attention heads not prunable: %s", n.label(), e)
            continue
        if id(grp.out_proj) not in done:
            done.add(id(grp.out_proj))
            out.append(grp)
    return out
