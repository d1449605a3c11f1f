"""fuse-attention: BERT/DistilBERT multi-head self-attention -> graphopt::MultiHeadAttention.

The pattern is built from named sub-patterns, each the shape exporters emit:

* ``projection(t)``   X @ W_t + b_t, or X @ W_t         (t = q, k, v; same X; no bias: T5, LLaMA)
* ``split_heads(t)``  Reshape [B, S, N, d] of it         (shape: any value, usually a Concat chain)
* ``query()``/``value()``  Transpose perm (0, 2, 1, 3)
* ``key_t()``         Transpose perm (0, 2, 3, 1), or (0, 2, 1, 3) then (0, 1, 3, 2)
* ``scores()``        MatMul(q, k^T), then Mul by scale or Div by 1/scale (optional)
* ``masked()``        Add of an additive mask (optional; the mask is any value: the
                      Where/Cast/Sub/Mul mask subgraph stays and feeds AttentionBias),
                      or masked_fill ``Where(cond, finfo.min, scores)``, which becomes the
                      additive ``Where(cond, finfo.min, 0)`` (the same numbers: s + min == min)
* ``context()``       Softmax(-1) @ v, Transpose (0, 2, 1, 3), Reshape to [B, S, H]; sdpa
                      (TorchScript) puts a no-op Reshape [B, -1, S, d] before the Transpose

The sdpa and dynamo idioms (Softmax NaN guard, scale split over Q and K, K^T built
through a 3-D Reshape) are brought to this form by ``canonicalize-attention``
(passes/canonicalize), which runs first. Matched values read by ``Shape`` nodes
outside the match (sdpa/dynamo shape chains) are allowed: each such Shape is
rebuilt from X's shape (the layouts of the matched values are known), so the
chain no longer reads the unfused graph.

The rewrite packs W_q|W_k|W_v and b_q|b_k|b_v into one weight and bias.
num_heads = H / d, where d comes from the head Reshape's static last dimension
(shape inference) or from its constant shape operand.
"""

from __future__ import annotations

import math

import numpy as np

from graphopt.ir import Value
from graphopt.pattern import A, AnyOf, Const, MatchResult, P, Rule, RuleSet, Var, const_value
from graphopt.pm import register_pass
from graphopt.quant.decision import WEIGHT_GRID, weight_grid

from ._common import GRAPHOPT, FusionPass, last_dim, matched_scale, scalar

__all__ = ["FUSE_ATTENTION", "FuseAttentionPass", "attention_pattern"]

_BSNH = [0, 2, 1, 3]


def projection(t: str):
    mm = P.MatMul(Var("x"), Const(f"w_{t}").rank(2), bind=f"mm_{t}")
    return AnyOf(P.Add(mm, Const(f"b_{t}").rank(1), bind=f"proj_{t}"), mm)  # T5/LLaMA: no bias


def split_heads(t: str):
    return P.Reshape(projection(t), Var(f"heads_shape_{t}"), bind=f"heads_{t}")


def query():
    return P.Transpose(split_heads("q"), perm=_BSNH, bind="q_t")


def value():
    return P.Transpose(split_heads("v"), perm=_BSNH, bind="v_t")


def key_t():
    k = split_heads("k")
    return AnyOf(P.Transpose(k, perm=[0, 2, 3, 1], bind="k_t"),
                 P.Transpose(P.Transpose(k, perm=_BSNH, bind="k_bnsd"), perm=[0, 1, 3, 2], bind="k_t"))


def scores():
    qk = P.MatMul(query(), key_t(), bind="qk")
    return AnyOf(P.Mul(qk, Const("scale"), bind="scaled"), P.Div(qk, Const("inv_scale"), bind="scaled"), qk)


def masked():
    s = scores()
    return AnyOf(P.Add(s, Var("mask"), bind="masked"), P.Where(Var("cond"), Const("fill"), s, bind="masked_fill"), s)


def context():
    probs = P.Softmax(masked(), axis=A(pred=lambda a: a in (-1, 3), default=-1), bind="softmax")
    pv = P.MatMul(probs, value(), bind="pv")
    # sdpa (TorchScript) reshapes P V to [B, -1, S, d] first: a no-op, proved in _check_pv_reshape
    pv = AnyOf(P.Reshape(pv, Var("pv_shape"), bind="pv_noop"), pv)
    ctx = P.Transpose(pv, perm=_BSNH, bind="ctx_t")
    return P.Reshape(ctx, Var("out_shape"), bind="out")


def attention_pattern():
    return context()


def _head_size(heads: Value, shape: Value) -> int | None:
    """d of a [B, S, N, d] head Reshape: from inference, the constant shape, or a Concat's last piece."""
    d = last_dim(heads)
    if isinstance(d, int):
        return d
    c = const_value(shape)
    if c is not None and c.size == 4 and int(c[-1]) > 0:
        return int(c[-1])
    p = shape.producer()
    if p is not None and p.op_type == "Concat" and p.inputs:
        last = const_value(p.inputs[-1])
        if last is not None and last.size == 1 and int(last.reshape(-1)[0]) > 0:
            return int(last.reshape(-1)[0])
    return None


def _leading_dims_kept(shape: Value, x: Value, heads: Value | None = None) -> bool:
    """The head Reshape's first two target dims are x's [batch, seq] (0 = copy, the static
    size, or Unsqueeze(Gather(Shape(t), i)) for dim i; or the Reshape's inferred shape
    starts with x's two named/static dims, as dynamo exports state), so heads are split per token."""
    xs = x.shape or ()
    hs = heads.shape if heads is not None else None
    if hs is not None and len(hs) == 4 and len(xs) == 3 and all(
            isinstance(a, (int, str)) and a != "" and a == b for a, b in zip(hs[:2], xs[:2])):
        return True

    def ok(i: int, dim: object) -> bool:
        if isinstance(dim, (int, np.integer)):
            return int(dim) == 0 or (len(xs) > i and isinstance(xs[i], int) and int(dim) == xs[i])
        return False

    c = const_value(shape)
    if c is not None:
        return c.size == 4 and ok(0, c[0]) and ok(1, c[1])
    p = shape.producer()
    if p is None or p.op_type != "Concat" or len(p.inputs) != 4:
        return False
    for i, piece in enumerate(p.inputs[:2]):
        pc = const_value(piece)
        if pc is not None:
            if pc.size != 1 or not ok(i, pc.reshape(-1)[0]):
                return False
            continue
        u = piece.producer()
        gather = u.inputs[0].producer() if u is not None and u.op_type == "Unsqueeze" else None
        if gather is None or gather.op_type != "Gather" or gather.inputs[0].producer() is None \
                or gather.inputs[0].producer().op_type != "Shape":
            return False
        idx = const_value(gather.inputs[1])
        if idx is None or idx.size != 1 or int(idx.reshape(-1)[0]) != i:
            return False
    return True


#: Layout of each matched value (B batch, S sequence, N heads, d head size, H hidden, _ input
#: hidden), so Shape readers of them can be proved equal to shapes of X, and sdpa's no-op
#: Reshape of P V proved a no-op. Self-attention: queries and keys share S.
_LAYOUTS = {"x": "BS_", **{f"{p}_{t}": lay for t in "qkv" for p, lay in (("mm", "BSH"), ("proj", "BSH"),
                                                                         ("heads", "BSNd"))},
            "q_t": "BNSd", "v_t": "BNSd", "k_bnsd": "BNSd", "k_t": "BNdS", "qk": "BNSS", "scaled": "BNSS",
            "masked": "BNSS", "masked_fill": "BNSS", "softmax": "BNSS", "pv": "BNSd", "pv_noop": "BNSd",
            "ctx_t": "BSNd"}


def _layout_of(m, v: Value) -> str | None:
    for name, lay in _LAYOUTS.items():
        if name in m and m[name] is v:
            return lay
    return None


def _shape_vector(v: Value) -> tuple[Value, list[int]] | None:
    """(t, axes) if ``v`` is the 1-D vector of t's dims ``axes``: Shape(t) (with start/end),
    or Gather(that, constant 1-D indices) (what shape-of-transpose leaves)."""
    p = v.producer()
    if p is None:
        return None
    if p.op_type == "Shape":
        t = p.inputs[0]
        if t.rank is None:
            return None
        start, end = int(p.attr("start", 0)), p.attr("end", None)
        return t, list(range(t.rank))[start:None if end is None else int(end)]
    if p.op_type == "Gather" and int(p.attr("axis", 0)) == 0:
        inner = _shape_vector(p.inputs[0])
        idx = const_value(p.inputs[1])
        if inner is None or idx is None or idx.ndim != 1:
            return None
        try:
            return inner[0], [inner[1][int(i)] for i in idx]
        except IndexError:
            return None
    return None


def _dim_source(piece: Value) -> tuple[Value, int] | None:
    """(t, i) if ``piece`` is dim i of t as a 1-element tensor: Unsqueeze(Gather(shape vector, i))
    or a one-element shape vector (Shape(t, start=i, end=i+1))."""
    p = piece.producer()
    if p is None:
        return None
    if p.op_type == "Unsqueeze":
        g = p.inputs[0].producer()
        vec = _shape_vector(g.inputs[0]) if g is not None and g.op_type == "Gather" and \
            int(g.attr("axis", 0)) == 0 else None
        idx = const_value(g.inputs[1]) if vec is not None else None
        if vec is None or idx is None or idx.size != 1:
            return None
        i = int(idx.reshape(-1)[0])
        return (vec[0], vec[1][i]) if -len(vec[1]) <= i < len(vec[1]) else None
    vec = _shape_vector(piece)
    if vec is not None and len(vec[1]) == 1:
        return vec[0], vec[1][0]
    return None


def _dims(m) -> dict[str, int]:
    hidden = m.const("w_q").shape[1]
    d = _head_size(m["heads_q"], m["heads_shape_q"])
    return {"N": hidden // d, "d": d, "H": hidden}


def _check_pv_reshape(m) -> MatchResult:
    """sdpa's Reshape(P V, [B, -1, S, d]) keeps P V's shape [B, N, S, d]."""
    if "pv_noop" not in m:
        return MatchResult.ok()
    node, shape = m.node("pv_noop"), m["pv_shape"]
    dims = _dims(m)
    c = const_value(shape)
    if c is not None:
        pieces: list[Value | int] = [int(x) for x in c.reshape(-1)]
    else:
        p = shape.producer()
        if p is None or p.op_type != "Concat" or len(p.inputs) != 4:
            return MatchResult.fail("P V Reshape's shape is not a 4-piece Concat", node)
        pieces = [int(pc.reshape(-1)[0]) if (pc := const_value(v)) is not None and pc.size == 1 else v
                  for v in p.inputs]
    if len(pieces) != 4:
        return MatchResult.fail("P V Reshape is not 4-D", node)
    free = 0
    for i, (want, piece) in enumerate(zip("BNSd", pieces)):
        if isinstance(piece, int):
            if piece == -1:
                free += 1
            elif piece == 0 and not node.attr("allowzero", 0):
                pass
            elif want not in dims or dims[want] != piece:
                return MatchResult.fail(f"P V Reshape dim {i} is {piece}, not {want}", node)
            continue
        src = _dim_source(piece)
        lay = _layout_of(m, src[0]) if src is not None else None
        if lay is None or lay[src[1]] != want:
            return MatchResult.fail(f"P V Reshape dim {i} is not provably {want}", node)
    if free > 1:
        return MatchResult.fail("P V Reshape has more than one -1", node)
    return MatchResult.ok()


def _check_escapes(m) -> MatchResult:
    """Only Shape nodes may read matched intermediates (sdpa/dynamo shape chains); they are
    rebuilt from X in the rewrite."""
    for v, user in m.escaping():
        lay = _layout_of(m, v)
        if user is None or user.op_type != "Shape" or lay is None or "_" in lay:
            where = "is a graph output" if user is None else f"is used by {user.label()} outside the match"
            return MatchResult.fail(f"intermediate %{v.name} {where}", user or v)
    return MatchResult.ok()


def _rebuild_shape_readers(b, m) -> None:
    g = b.graph
    dims = _dims(m)
    for v, user in m.escaping():
        lay = _layout_of(m, v)
        first = len(b.created)
        sx = b.Shape(m["x"])
        parts = [b.Slice(sx, np.array([0], np.int64), np.array([1], np.int64)) if ch == "B" else
                 b.Slice(sx, np.array([1], np.int64), np.array([2], np.int64)) if ch == "S" else
                 np.array([dims[ch]], np.int64) for ch in lay]
        new = b.Concat(*parts, axis=0)
        if user.attrs:
            start, end = int(user.attr("start", 0)), user.attr("end", None)
            new = b.Slice(new, np.array([start], np.int64),
                          np.array([np.iinfo(np.int64).max if end is None else int(end)], np.int64))
        for n in b.created[first:]:
            g.move_before(user, n)
        user.outputs[0].replace_all_uses_with(new)
        g.remove(user)


def _biases(m) -> list[np.ndarray]:
    """b_q, b_k, b_v (zeros for a projection without bias)."""
    return [m.const(f"b_{t}") if f"b_{t}" in m else np.zeros(m.const(f"w_{t}").shape[1], m.const(f"w_{t}").dtype)
            for t in "qkv"]


def _check_projections(m) -> MatchResult:
    ws = [m.const(f"w_{t}") for t in "qkv"]
    bs = _biases(m)
    if len({w.shape for w in ws}) != 1 or len({b.shape for b in bs}) != 1:
        return MatchResult.fail("Q, K and V projections have different shapes", m.node("mm_k"))
    if bs[0].shape[0] != ws[0].shape[1]:
        return MatchResult.fail("projection bias length differs from the projection width", m.get_or_none("b_q"))
    return MatchResult.ok()


def _check_heads(m) -> MatchResult:
    hidden = m.const("w_q").shape[1]
    ds = {t: _head_size(m[f"heads_{t}"], m[f"heads_shape_{t}"]) for t in "qkv"}
    if None in ds.values():
        bad = next(t for t, d in ds.items() if d is None)
        return MatchResult.fail("head size is unknown (the head Reshape's shape is not static)",
                                m.node(f"heads_{bad}"))
    if len(set(ds.values())) != 1 or hidden % ds["q"]:
        return MatchResult.fail(f"head sizes {ds} do not split hidden size {hidden}", m.node("heads_q"))
    for t in "qkv":
        if m[f"heads_{t}"].rank not in (None, 4):
            return MatchResult.fail("head Reshape is not 4-D", m.node(f"heads_{t}"))
        if not _leading_dims_kept(m[f"heads_shape_{t}"], m["x"], m[f"heads_{t}"]):
            return MatchResult.fail("head Reshape does not provably keep [batch, seq] as its leading dims",
                                    m.node(f"heads_{t}"))
    return MatchResult.ok()


def _check_output(m) -> MatchResult:
    hidden = m.const("w_q").shape[1]
    out = m["out"]
    od = last_dim(out)
    if out.rank not in (None, 3) or (isinstance(od, int) and od != hidden) or \
            (not isinstance(od, int) and not _out_shape_is(m["out_shape"], hidden)):
        return MatchResult.fail(f"output Reshape does not give [batch, seq, {hidden}]", m.node("out"))
    return MatchResult.ok()


def _check_mask(m) -> MatchResult:
    if "masked_fill" in m:
        fill = scalar(m.const("fill"))
        if fill is None or not fill <= -1e30:
            return MatchResult.fail("masked_fill value is not a scalar <= -1e30 (finfo.min or -inf)", m["fill"])
        if m["cond"].rank != 4:
            return MatchResult.fail("masked_fill condition is not 4-D", m["cond"])
    mask = m.get_or_none("mask")
    x = m["x"]
    if mask is not None and (mask.rank != 4 or
                             (mask.dtype is not None and mask.dtype.value and mask.dtype != x.dtype)):
        return MatchResult.fail("additive mask is not a 4-D tensor of the input's type", mask)
    return MatchResult.ok()


class FuseAttention(Rule):
    """Self-attention subgraph -> MultiHeadAttention(X, Wqkv, bqkv, AttentionBias=mask)."""

    name = "fuse-attention"
    benefit = 5
    commutative = True
    allow_shared_intermediates = True  # only Shape readers, see _check_escapes

    def pattern(self, p):
        return attention_pattern()

    def check(self, m):
        x = m["x"]
        if x.rank != 3:
            return MatchResult.fail(f"attention input rank is {x.rank}, expected [batch, seq, hidden]", x)
        for part in (_check_projections, _check_heads, _check_output, self._check_scale, _check_mask,
                     _check_pv_reshape, _check_escapes):
            res = part(m)
            if not res:
                return res
        return MatchResult.ok()

    def _check_scale(self, m) -> MatchResult:
        if "scaled" in m and matched_scale(m) is None:
            return MatchResult.fail("attention scale is not a positive scalar constant", m.node("scaled"))
        return MatchResult.ok()

    def rewrite(self, b, m):
        _rebuild_shape_readers(b, m)
        d = _head_size(m["heads_q"], m["heads_shape_q"])
        ws = [m.const(f"w_{t}") for t in "qkv"]
        bs = _biases(m)
        hidden = ws[0].shape[1]
        scale = matched_scale(m)
        if math.isclose(scale, 1.0 / math.sqrt(d), rel_tol=1e-6):
            scale = 0.0  # the default: stated by omission, as onnxruntime does
        w = b.initializer(np.concatenate(ws, axis=1), name=f"{m.node('mm_q').name or 'attn'}/qkv_weight")
        grids = [weight_grid(m[f"w_{t}"]) for t in "qkv"]
        if all(gr is not None for gr in grids):  # a file's int8 grid (absorb-qdq): the packed weight keeps it
            w.meta[WEIGHT_GRID] = np.concatenate(grids)
        bias = b.initializer(np.concatenate(bs, axis=0), name=f"{m.node('mm_q').name or 'attn'}/qkv_bias")
        mask = m.get_or_none("mask")
        if "masked_fill" in m:
            dt = m.const("w_q").dtype
            fill = max(scalar(m.const("fill")), float(np.finfo(dt).min))  # -inf -> finfo.min: no inf - inf
            mask = b.Where(m["cond"], np.array(fill, dt), np.array(0.0, dt))
        return b.MultiHeadAttention(m["x"], w, bias, None, mask, num_heads=hidden // d,
                                    scale=float(scale), _domain=GRAPHOPT)


def _out_shape_is(shape: Value, hidden: int) -> bool:
    c = const_value(shape)
    if c is not None:
        return c.size == 3 and int(c[-1]) in (hidden, -1)
    p = shape.producer()
    if p is not None and p.op_type == "Concat" and len(p.inputs) == 3:
        last = const_value(p.inputs[-1])
        return last is not None and last.size == 1 and int(last.reshape(-1)[0]) in (hidden, -1)
    return False


FUSE_ATTENTION = RuleSet([FuseAttention()], name="fuse-attention")


@register_pass
class FuseAttentionPass(FusionPass):
    name = "fuse-attention"
    description = "BERT-style multi-head self-attention -> graphopt::MultiHeadAttention"
    rules = FUSE_ATTENTION
    needs_shapes = True
