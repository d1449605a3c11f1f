"""Read onnxruntime ``com.microsoft`` fused ops back as graphopt's fused ops.

The inverse of :func:`graphopt.ops.lowering.lower_to_onnxruntime` for the ops whose
mapping is one node to one node, so a file graphopt wrote (``optimize -o``, ``save``,
``export --to onnx``) imports back into the fused ops the native runtime compiles:

| com.microsoft | graphopt |
|---|---|
| Attention (2-D mask_index, no past/present) | MultiHeadAttention |
| EmbedLayerNormalization (mask_index unused) | EmbedLayerNorm |
| SkipLayerNormalization (mean/inv_std unused) | SkipLayerNorm |
| BiasGelu, FastGelu(X, B) | BiasGelu (erf / tanh) |
| Gelu, FastGelu(X) | Gelu (erf / tanh) |
| SkipSimplifiedLayerNormalization (mean/inv_std unused) | SkipRMSNorm |
| SimplifiedLayerNormalization (default domain; axis -1, inv_std unused) | RMSNorm |
| QuickGelu (alpha 1: x * sigmoid(x)) | Silu |

A contrib op outside the table (or using an output graphopt's op has not) stays as it is
and runs through onnxruntime inside the native plan.

>>> n = read_contrib_ops(graphopt.io.load("model.O2.onnx"))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir import NODE_PROPS, DType, Graph, Model, Node, Value
from ._registry import DOMAIN, MS_DOMAIN

__all__ = ["read_contrib_ops"]

_Reader = Callable[[Node], "tuple[str, list[Value | None], dict[str, Any], int] | None"]


def _unused(node: Node, *indices: int) -> bool:
    outs = node.outputs
    return all(i >= len(outs) or (outs[i].num_uses() == 0 and not outs[i].is_graph_output()) for i in indices)


def _uncast(v: Value | None) -> Value | None:
    """The int64 ids behind the ``Cast(to=int32)`` the onnxruntime mapping adds."""
    p = v.producer() if v is not None else None
    if p is not None and p.op_type == "Cast" and p.domain == "" and p.inputs and p.inputs[0] is not None \
            and p.inputs[0].dtype in (DType.INT64, DType.INT32):
        return p.inputs[0]
    return v


def _input(node: Node, i: int) -> Value | None:
    return node.inputs[i] if len(node.inputs) > i else None


def _embed(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    if not _unused(node, 1, 2) or _input(node, 7) is not None:  # mask_index / embedding sum; mask input
        return None
    ins = [_uncast(_input(node, 0)), _uncast(_input(node, 1))] + [_input(node, i) for i in range(2, 7)]
    pos_ids = _uncast(_input(node, 8))
    if pos_ids is not None:
        ins.append(pos_ids)
    return "EmbedLayerNorm", ins, {"epsilon": float(node.attr("epsilon", 1e-12))}, 1


def _skip(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    if not _unused(node, 1, 2):
        return None
    ins = [_input(node, i) for i in range(5)]
    while ins and ins[-1] is None:
        ins.pop()
    return "SkipLayerNorm", ins, {"epsilon": float(node.attr("epsilon", 1e-5))}, 2


def _attention(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    mask = _uncast(_input(node, 3))
    if not _unused(node, 1) or _input(node, 4) is not None or len(node.inputs) > 6 \
            or int(node.attr("unidirectional", 0) or 0) or node.attr("qkv_hidden_sizes", None) is not None \
            or int(node.attr("do_rotary", 0) or 0) or node.attr("past_present_share_buffer", 0):
        return None
    if mask is not None and (mask.shape is None or len(mask.shape) != 2):
        return None  # only the [B, S] key-padding form of mask_index maps to KeyPaddingMask
    bias = _input(node, 5)
    p = bias.producer() if bias is not None else None
    if p is not None and p.op_type == "Expand" and p.domain == "":
        bias = p.inputs[0]  # the [B, 1, 1, S] -> [B, 1, S, S] expansion the onnxruntime mapping adds
    attrs: dict[str, Any] = {"num_heads": int(node.attr("num_heads")),
                             "scale": float(node.attr("scale", 0.0) or 0.0),
                             "mask_filter_value": float(node.attr("mask_filter_value", -10000.0))}
    ins = [node.inputs[0], node.inputs[1], _input(node, 2), mask, bias]
    while ins and ins[-1] is None:
        ins.pop()
    return "MultiHeadAttention", ins, attrs, 1


def _skip_rms(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    if not _unused(node, 1, 2):
        return None
    ins = [_input(node, i) for i in range(4)]
    while ins and ins[-1] is None:
        ins.pop()
    return "SkipRMSNorm", ins, {"epsilon": float(node.attr("epsilon", 1e-6))}, 2


def _rms(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    """onnxruntime's SimplifiedLayerNormalization (what graphopt::RMSNorm lowers to, default domain)."""
    x, gamma = node.inputs[0], _input(node, 1)
    axis = int(node.attr("axis", -1))
    if x is None or gamma is None or not _unused(node, 1) or len(node.inputs) > 2 or \
            not (axis == -1 or (x.rank is not None and axis == x.rank - 1)) or int(node.attr("stash_type", 1)) != 1:
        return None
    return "RMSNorm", [x, gamma], {"epsilon": float(node.attr("epsilon", 1e-5))}, 1


def _gelu(approximate: str) -> _Reader:
    def read(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
        b = _input(node, 1)
        if b is None:
            return "Gelu", [node.inputs[0]], {"approximate": approximate}, 1
        return "BiasGelu", [node.inputs[0], b], {"approximate": approximate}, 1
    return read


def _quick_gelu(node: Node) -> tuple[str, list[Value | None], dict[str, Any], int] | None:
    """QuickGelu with alpha 1 is SiLU (what graphopt::Silu and SiluMul lower to for onnxruntime)."""
    if float(node.attr("alpha", 1.702)) != 1.0:
        return None
    return "Silu", [node.inputs[0]], {}, 1


_READERS: dict[str, _Reader] = {
    "Attention": _attention,
    "EmbedLayerNormalization": _embed,
    "SkipLayerNormalization": _skip,
    "BiasGelu": _gelu("none"),
    "Gelu": _gelu("none"),
    "FastGelu": _gelu("tanh"),
    "SkipSimplifiedLayerNormalization": _skip_rms,
    "QuickGelu": _quick_gelu,
}

#: onnxruntime contrib ops registered in the default domain
_DEFAULT_READERS: dict[str, _Reader] = {"SimplifiedLayerNormalization": _rms}


def read_contrib_ops(model: Model) -> int:
    """Replace each ``com.microsoft`` op of the table by its graphopt op, in place; returns the count."""
    count = 0

    def visit(g: Graph) -> None:
        nonlocal count
        for n in list(g):
            for sg in n.subgraphs():
                visit(sg)
            table = _READERS if n.domain == MS_DOMAIN else _DEFAULT_READERS if n.domain in ("", "ai.onnx") else {}
            if n.op_type not in table:
                continue
            read = table[n.op_type](n)
            if read is None:
                continue
            op_type, ins, attrs, nout = read
            new = Node(op_type, ins, attrs, domain=DOMAIN, num_outputs=nout, name=n.name)
            if n.meta.get(NODE_PROPS):
                new.meta[NODE_PROPS] = n.meta[NODE_PROPS]
            g.insert_before(n, new)
            olds = [n.outputs[0], n.outputs[3]] if op_type in ("SkipLayerNorm", "SkipRMSNorm") and len(n.outputs) > 3 \
                else n.outputs[:nout]
            for old, v in zip(olds, new.outputs):
                v.type = old.type
                old.replace_all_uses_with(v, outputs=True)
            n.name = ""
            g.remove(n)
            count += 1

    visit(model.graph)
    if count:
        model.opset_imports.setdefault(DOMAIN, 1)
        if not any(n.domain == MS_DOMAIN for n in model.graph.walk()):
            model.opset_imports.pop(MS_DOMAIN, None)
    return count
