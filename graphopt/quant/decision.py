"""The per-node precision decision: made by the quantization/precision passes, read by the lowering.

A decision lives in the node's ONNX metadata (``NODE_PROPS``), so it survives a save/load and the
fusion driver carries it from the matched nodes to the fused node (:func:`merge_props`):

- ``graphopt.precision``: ``fp32``, ``bf16`` or ``int8`` -- the precision of the node's GEMM;
- ``graphopt.act_scale`` / ``graphopt.act_zp``: a static int8 node's input grid (u8 zero point);
  without them an int8 node quantizes its input at run time (dynamic);
- ``graphopt.attention``: the precision of an attention core's products (QK^T, PV): ``fp32``, or
  ``bf16``/``int8`` (the kernel's bf16 products); without it, bf16 below an fp32 compile default;
- a weight on a file's int8 grid keeps its per-output-channel scales in ``meta[WEIGHT_GRID]`` of the
  (float, dequantized) weight value, so the lowering re-derives the file's integers exactly.

>>> n = Node("MatMul", [])                                    # doctest: +SKIP
>>> decide(n, "int8", act=(0.02, 128)); precision_of(n)       # doctest: +SKIP
'int8'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import NODE_PROPS, MetaKey, Node, Value

__all__ = ["PRECISION_PROP", "ACT_SCALE_PROP", "ACT_ZP_PROP", "ATTENTION_PROP", "attention_precision", "WEIGHT_GRID", "NODE_PRECISIONS", "decide",
           "precision_of", "act_grid", "decide_attention", "apply_node_precision", "weight_grid", "merge_props", "widest",
           "decision_kind", "is_attention_core"]

PRECISION_PROP = "graphopt.precision"
ACT_SCALE_PROP = "graphopt.act_scale"
ACT_ZP_PROP = "graphopt.act_zp"
ATTENTION_PROP = "graphopt.attention"
NODE_PRECISIONS = ("fp32", "bf16", "int8")

#: per-output-channel scales (float32 [N]) of a float weight whose values are an int8 grid times them
WEIGHT_GRID: MetaKey[np.ndarray] = MetaKey("weight_grid")


def decide(n: Node, precision: str, act: tuple[float, int] | None = None) -> None:
    """Record ``n``'s precision (and, for static int8, its input grid); replaces an earlier decision."""
    if precision not in NODE_PRECISIONS:
        raise ValueError(f"node precision must be one of {NODE_PRECISIONS}, got {precision!r}")
    props = dict(n.meta.get(NODE_PROPS) or {})
    props[PRECISION_PROP] = precision
    props.pop(ACT_SCALE_PROP, None)
    props.pop(ACT_ZP_PROP, None)
    if act is not None and precision == "int8":
        props[ACT_SCALE_PROP] = repr(float(act[0]))
        props[ACT_ZP_PROP] = str(int(act[1]))
    n.meta[NODE_PROPS] = props


def precision_of(n: Node) -> str | None:
    """The decided precision of ``n``, or None (no decision recorded)."""
    p = (n.meta.get(NODE_PROPS) or {}).get(PRECISION_PROP)
    return p if p in NODE_PRECISIONS else None


def act_grid(n: Node) -> tuple[float, int] | None:
    """(scale, u8 zero point) of a static int8 node's input, or None."""
    props = n.meta.get(NODE_PROPS) or {}
    if props.get(PRECISION_PROP) != "int8" or ACT_SCALE_PROP not in props:
        return None
    return float(props[ACT_SCALE_PROP]), int(props.get(ACT_ZP_PROP, "0"))


def attention_precision(n: Node) -> str | None:
    """The decided precision of an attention core's products (``fp32`` / ``bf16`` / ``int8``), or None."""
    p = (n.meta.get(NODE_PROPS) or {}).get(ATTENTION_PROP)
    return p if p in NODE_PRECISIONS else None


def decide_attention(n: Node, precision: str) -> None:
    if precision not in NODE_PRECISIONS:
        raise ValueError(f"attention precision must be one of {NODE_PRECISIONS}, got {precision!r}")
    n.meta[NODE_PROPS] = {**(n.meta.get(NODE_PROPS) or {}), ATTENTION_PROP: precision}


_GEMMS = {("MatMul", ""), ("Gemm", ""), ("Conv", ""), ("Linear", "graphopt"), ("MultiHeadAttention", "graphopt"),
          ("FusedConv", "graphopt"), ("Attention", "graphopt"), ("EmbedLayerNorm", "graphopt")}


def decision_kind(n: Node) -> str | None:
    """What precision decision ``n`` takes: "gemm" (a constant weight; graphopt::MultiHeadAttention's
    packed QKV projection), "attention" (activation x activation products: a MatMul of two computed
    tensors, graphopt::Attention), "table" (an embedding table), or None."""
    from ..pattern import const_value  # lazy: graphopt.pattern's driver imports this module

    key = (n.op_type, n.domain)
    if key == ("Gather", ""):
        t = const_value(n.inputs[0]) if n.inputs and n.inputs[0] is not None else None
        return "table" if t is not None and t.ndim == 2 and t.dtype.kind == "f" else None
    if key not in _GEMMS:
        return None
    if key == ("Attention", "graphopt"):
        return "attention"
    if key == ("EmbedLayerNorm", "graphopt"):
        return "table"
    if key == ("MatMul", "") and not any(_weight_like(v, const_value) for v in n.inputs):
        return "attention"
    return "gemm"


def _weight_like(v: Value | None, const_value: Any, depth: int = 3) -> bool:
    """``v`` is a constant, or one through DequantizeLinear / QuantizeLinear / Transpose (a QDQ file's weight)."""
    while v is not None and depth >= 0:
        if const_value(v) is not None:
            return True
        p = v.producer()
        if p is None or p.domain != "" or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Transpose"):
            return False
        v, depth = p.inputs[0], depth - 1
    return False


def is_attention_core(n: Node) -> bool:
    """``n`` computes attention products (its decision is ``graphopt.attention``): an activation x
    activation MatMul, graphopt::Attention, or graphopt::MultiHeadAttention (which is also a GEMM)."""
    return decision_kind(n) == "attention" or (n.op_type, n.domain) == ("MultiHeadAttention", "graphopt")


def weight_grid(v: Value | None) -> np.ndarray | None:
    return None if v is None else v.meta.get(WEIGHT_GRID)


def widest(a: str, b: str) -> str:
    """The more precise of two precisions (a packed GEMM of an fp32 and an int8 part stays fp32)."""
    order = {"int8": 0, "bf16": 1, "fp32": 2}
    return a if order.get(a, 2) >= order.get(b, 2) else b


def merge_props(acc: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Props of a fused node from those of the nodes it replaces: the widest precision; the static
    input grid only when every part that has one agrees (else the packed GEMM quantizes at run time)."""
    out = dict(acc)
    for k, v in new.items():
        if k in (PRECISION_PROP, ATTENTION_PROP) and k in out:
            out[k] = widest(out[k], v)
        elif k in (ACT_SCALE_PROP, ACT_ZP_PROP) and k in out and out[k] != v:
            out[k] = "conflict"
        else:
            out[k] = v
    if out.get(ACT_SCALE_PROP) == "conflict" or out.get(ACT_ZP_PROP) == "conflict" or \
            out.get(PRECISION_PROP, "int8") != "int8":
        out.pop(ACT_SCALE_PROP, None)
        out.pop(ACT_ZP_PROP, None)
    return out


def _weight_names(v: Value | None, depth: int = 3) -> list[str]:
    """``v``'s name and those of the values it is computed from through DequantizeLinear /
    QuantizeLinear / Transpose (a QDQ file's weight has several names)."""
    names: list[str] = []
    while v is not None and depth >= 0:
        names.append(v.name)
        p = v.producer()
        if p is None or p.domain != "" or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Transpose"):
            break
        v, depth = p.inputs[0], depth - 1
    return names


def apply_node_precision(model: Any, prec: dict[str, str]) -> int:
    """Record the user's per-node precisions (``node_precision``: node name or ``"weight:NAME"``)
    as decisions, before the fusions: the fused node inherits them (the widest of its parts), so a
    choice for Q or K survives their packing into one attention weight, and one for an attention
    product (a MatMul of two computed tensors) becomes the fused attention's. Returns the nodes decided."""
    by_weight = {k[len("weight:"):]: v for k, v in prec.items() if k.startswith("weight:")}
    done = 0
    for n in model.graph:
        p = prec.get(n.name or n.outputs[0].name)
        if p is None and by_weight and len(n.inputs) > 1:
            p = next((by_weight[w] for w in _weight_names(n.inputs[1]) if w in by_weight), None)
        if p is not None and p in NODE_PRECISIONS:
            (decide_attention if decision_kind(n) == "attention" else decide)(n, p)
            done += 1
    return done
