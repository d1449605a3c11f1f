"""The prunable groups of a fused graph, and the one routine that shrinks them.

A *head group* is a ``graphopt::MultiHeadAttention`` with a packed constant QKV weight
whose output feeds exactly one linear layer (the output projection): removing head h
drops its columns from W_qkv/B_qkv and its rows from W_o.

A *neuron group* is ``ups -> element-wise region -> down``: linear layers with constant
weights W1 [K, F] (one, or gate and up of a SiLU-gated MLP; [K, 2F] into a fused
``graphopt::SiluMul``), element-wise ops that act on each of the F channels on their own
(bias adds, GELU fused or written out, ReLU, x * sigmoid(x) * up, ...), and a linear layer
with constant weight W2 [F, N]. Removing neuron j drops column j of every W1 (and of every
per-channel constant on the way) and row j of W2.

Removing a head or neuron gives exactly the model in which that head's W_o rows (the
neuron's W2 row) are zero, which is what the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphopt.ir import Graph, Node, TensorType, Value

__all__ = ["HeadGroup", "NeuronGroup", "head_groups", "neuron_groups", "shrink_heads", "shrink_neurons",
           "set_rows", "linear_weight"]

#: element-wise ops that keep channels apart (their other operands: per-channel constants)
_CHANNEL_WISE = frozenset({"graphopt::BiasGelu", "graphopt::Gelu", "Gelu", "Relu", "Tanh", "Erf", "Sigmoid",
                           "Add", "Mul", "Sub", "Div"})
_LINEAR_OPS = ("MatMul", "graphopt::Linear")


def linear_weight(node: Node) -> np.ndarray | None:
    """The constant 2-D weight of a MatMul / graphopt::Linear, else None."""
    if node.op not in _LINEAR_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
        return None
    w = node.inputs[1].const
    return w if w is not None and w.ndim == 2 and w.dtype.kind == "f" else None


@dataclass
class HeadGroup:
    mha: Node
    out_proj: Node

    @property
    def num_heads(self) -> int:
        return int(self.mha.attr("num_heads"))

    @property
    def hidden(self) -> int:
        return int(self.mha.inputs[1].const.shape[1] // 3)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @property
    def context(self) -> Value:
        """The attention output: the heads side by side, the input of the output projection."""
        return self.mha.outputs[0]


@dataclass
class NeuronGroup:
    """``ups -> element-wise region -> down``: F neurons feed ``down``'s F input rows.

    ``ups``: the linear layers producing the region's inputs, each with F output columns, or
    2F when ``paired`` (its output feeds a ``graphopt::SiluMul``, which halves the channels:
    neuron j is columns j and F + j). ``region``: the channel-wise ops in graph order (bias
    adds, GELU written out, SiLU gating x * sigmoid(x) * up, ...); their constants are per
    channel or scalars.
    """

    ups: list[Node]
    region: list[Node]
    down: Node
    paired: frozenset[int] = frozenset()  # id() of the ups that feed a SiluMul

    @property
    def up(self) -> Node:
        return self.ups[0]

    @property
    def chain(self) -> list[Node]:
        return self.region

    @property
    def is_chain(self) -> bool:
        """One up and a plain chain of unary/const-operand ops (what remove-zero-structures evaluates)."""
        return len(self.ups) == 1 and not self.paired and all(
            sum(1 for x in n.inputs[1:] if x is not None and x.const is None) == 0 for n in self.region)

    @property
    def hidden(self) -> Value:
        """The input of ``down``: the F neuron activations."""
        return self.down.inputs[0]

    @property
    def width(self) -> int:
        return int(linear_weight(self.down).shape[0])


def _single_linear_consumer(v: Value) -> Node | None:
    if v.num_uses() != 1 or v.is_graph_output():
        return None
    node, i = v.uses()[0]
    return node if i == 0 and linear_weight(node) is not None else None


def head_groups(g: Graph) -> list[HeadGroup]:
    out = []
    for node in g:
        if node.op != "graphopt::MultiHeadAttention" or node.attr("num_kv_heads", 0) not in (0, node.attr("num_heads")):
            continue
        w = node.inputs[1]
        b = node.inputs[2] if len(node.inputs) > 2 else None
        if w is None or w.const is None or w.const.ndim != 2 or (b is not None and b.const is None):
            continue
        proj = _single_linear_consumer(node.outputs[0])
        if proj is not None and linear_weight(proj).shape[0] == w.const.shape[1] // 3:
            out.append(HeadGroup(node, proj))
    return out


def const_value(v: Value | None) -> np.ndarray | None:
    """``v``'s constant data: an initializer, or the output of a ``Constant`` node (graphs as imported)."""
    if v is None:
        return None
    if v.const is not None:
        return v.const
    p = v.producer()
    if p is not None and p.op == "Constant" and "value" in p.attrs and isinstance(p.attr("value"), np.ndarray):
        return p.attr("value")
    return None


def _per_channel_const(v: Value | None, width: int) -> bool:
    c = const_value(v)
    return c is not None and c.ndim <= 1 and c.size in (1, width)


def _linear_bias_ok(p: Node, cols: int) -> bool:
    return not (p.op == "graphopt::Linear" and len(p.inputs) > 2 and p.inputs[2] is not None
                and not _per_channel_const(p.inputs[2], cols))


def _neuron_group(down: Node, width: int) -> NeuronGroup | None:
    """The region feeding ``down`` (see :class:`NeuronGroup`), or None."""
    ups: list[Node] = []
    paired: set[int] = set()
    region: dict[Node, None] = {}
    todo, seen = [down.inputs[0]], set()
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        p = v.producer()
        if p is None or v.is_graph_output() or const_value(v) is not None:
            return None
        w1 = linear_weight(p)
        if w1 is not None and v is p.outputs[0] and w1.shape[1] == width and _linear_bias_ok(p, width):
            ups.append(p)
            continue
        if p.op == "graphopt::SiluMul" and len(p.outputs) == 1 and len(p.inputs) == 1:
            src = p.inputs[0].producer() if p.inputs[0] is not None else None
            w1 = linear_weight(src) if src is not None else None
            if w1 is None or w1.shape[1] != 2 * width or not _linear_bias_ok(src, 2 * width) \
                    or p.inputs[0].num_uses() != 1 or p.inputs[0].is_graph_output():
                return None
            region[p] = None
            ups.append(src)
            paired.add(id(src))
            continue
        if p.op not in _CHANNEL_WISE or len(p.outputs) != 1:
            return None
        region[p] = None
        for i, x in enumerate(p.inputs):
            if x is None:
                return None
            if const_value(x) is not None:
                if not _per_channel_const(x, width):
                    return None
            else:
                todo.append(x)
    if not ups:
        return None
    inside = set(region) | {down}
    for n in list(region) + ups:  # nothing of the region is used outside it
        for o in n.outputs:
            if o.is_graph_output() or any(u not in inside for u in o.consumers()):
                return None
    order = {n: i for i, n in enumerate(down.graph)} if down.graph is not None else {}
    return NeuronGroup(sorted(dict.fromkeys(ups), key=lambda n: order.get(n, 0)),
                       sorted(region, key=lambda n: order.get(n, 0)), down, frozenset(paired))


def neuron_groups(g: Graph) -> list[NeuronGroup]:
    out = []
    for down in g:
        w2 = linear_weight(down)
        if w2 is None or w2.shape[0] < 2:
            continue
        grp = _neuron_group(down, w2.shape[0])
        if grp is not None:
            out.append(grp)
    return out


def _set_last_dim(v: Value, n: int) -> None:
    if v.shape is not None and len(v.shape) >= 1:
        v.type = TensorType(v.dtype, tuple(v.shape[:-1]) + (n,))


def _replace_const(g: Graph, node: Node, i: int, arr: np.ndarray) -> None:
    """Point input ``i`` of ``node`` at a new initializer holding ``arr`` (the old one may be shared)."""
    old = node.inputs[i]
    new = g.add_initializer(g.unique_name(old.name or "pruned"), np.ascontiguousarray(arr))
    node.set_input(i, new)


def set_rows(g: Graph, node: Node, rows: np.ndarray) -> None:
    """Give a linear layer new weight rows (its input width changes)."""
    _replace_const(g, node, 1, rows.astype(linear_weight(node).dtype))


def shrink_heads(g: Graph, grp: HeadGroup, keep: np.ndarray, wo: np.ndarray | None = None) -> None:
    """Keep heads ``keep`` (sorted indices); ``wo``: the output projection's new rows (default: sliced)."""
    d, h = grp.head_dim, grp.hidden
    cols = np.concatenate([np.arange(k * d, (k + 1) * d) for k in keep])
    qkv_cols = np.concatenate([cols, cols + h, cols + 2 * h])
    mha = grp.mha
    _replace_const(g, mha, 1, mha.inputs[1].const[:, qkv_cols])
    if len(mha.inputs) > 2 and mha.inputs[2] is not None:
        _replace_const(g, mha, 2, mha.inputs[2].const[qkv_cols])
    if not mha.attr("scale", 0.0):
        mha.set_attr("scale", float(1.0 / np.sqrt(d)))  # unchanged value, now explicit
    mha.set_attr("num_heads", len(keep))
    set_rows(g, grp.out_proj, linear_weight(grp.out_proj)[cols] if wo is None else wo)
    _set_last_dim(grp.context, len(cols))


def shrink_neurons(g: Graph, grp: NeuronGroup, keep: np.ndarray, w2: np.ndarray | None = None) -> None:
    """Keep neurons ``keep`` (sorted indices); ``w2``: ``down``'s new rows (default: sliced)."""
    width = grp.width
    for up in grp.ups:
        cols = np.concatenate([keep, keep + width]) if id(up) in grp.paired else keep
        n_cols = 2 * width if id(up) in grp.paired else width
        _replace_const(g, up, 1, linear_weight(up)[:, cols])
        if up.op == "graphopt::Linear" and len(up.inputs) > 2 and up.inputs[2] is not None:
            b = up.inputs[2].const
            if b.size == n_cols:
                _replace_const(g, up, 2, b.reshape(-1)[cols])
        _set_last_dim(up.outputs[0], len(cols))
    for node in grp.region:
        for i in range(len(node.inputs)):
            c = const_value(node.inputs[i])
            if c is not None and c.size == width and width > 1:
                _replace_const(g, node, i, c.reshape(-1)[keep])
        _set_last_dim(node.outputs[0], len(keep))
    set_rows(g, grp.down, linear_weight(grp.down)[keep] if w2 is None else w2)
