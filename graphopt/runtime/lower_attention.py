"""Native lowering of graphopt::Attention (separate Q, K, V) onto the fused attention kernel:
one ``Attention`` step reading Q, K, V in place in either layout ([B, N, S, d] or heads side by
side, [B, S, N*d]), grouped K/V heads without a repeated copy, causal in the kernel; a key-padding
mask becomes a ``PaddingMask`` step, added to the Bias (per-head allowed) when both are given.
An entry of :data:`graphopt.runtime.lowering_table.LOWERING`."""

from __future__ import annotations

import math

from ..ir import DType, Node
from ..ops.attention import causal_fill
from .lower import _Lowerer

__all__ = ["attention"]

_MASK_T = (DType.INT64, DType.INT32, DType.BOOL)


def attention(lw: _Lowerer, n: Node) -> bool:
    ins = list(n.inputs) + [None] * (5 - len(n.inputs))
    q, k, v, kpm, bias = ins[:5]
    if any(lw.dt(t) != DType.FLOAT for t in (q, k, v)):
        return False
    rank = lw.rank(q)
    if rank not in (3, 4) or lw.rank(k) != rank or lw.rank(v) != rank:
        return False
    if kpm is not None and lw.dt(kpm) not in _MASK_T:
        return False
    if bias is not None and (lw.dt(bias) != DType.FLOAT or (lw.rank(bias) or 5) > 4):
        return False
    heads = int(n.attr("num_heads"))
    kv_heads = int(n.attr("kv_num_heads", 0)) or heads
    scale = float(n.attr("scale", 0.0))
    if not scale:
        d = q.shape[-1] if q.shape is not None else None
        if not isinstance(d, int):
            return False
        scale = 1.0 / math.sqrt(d // heads if rank == 3 else d)
    base = n.name or n.outputs[0].name
    mask = bias
    if kpm is not None:
        pm = lw.tmp(base + "/mask")
        lw.emit("PaddingMask", base + "/mask", [kpm], [pm], fattrs={"value": float(n.attr("mask_filter_value", -10000.0))},
                origin=[n.label()])
        if bias is not None:
            m2 = lw.tmp(base + "/mask2")
            lw.emit("Add", base + "/mask2", [pm, bias], [m2], origin=[n.label()])
            pm = m2
        mask = pm
    bf16 = int(lw.attention_bf16(n))
    bsh = int(rank == 3)
    causal, window = int(n.attr("causal", 0)), int(n.attr("window", 0))
    if window and not causal:
        return False
    fattrs = {"scale": scale}
    if causal and kpm is not None:  # causal/window keys get the padding filler (graphopt.ops.attention.causal_fill)
        fattrs["causal_fill"] = causal_fill(True, float(n.attr("mask_filter_value", -10000.0)))
    s = lw.emit("Attention", n, [q, k, v, mask], [n.outputs[0]], fattrs=fattrs,
                iattrs={"heads": heads, "kv_heads": kv_heads, "causal": causal, "window": window,
                        "padded": int(kpm is not None), "in_bsh": bsh, "out_bsh": bsh, "bf16": bf16})
    s.detail = (f"fused attention kernel ({'bf16' if bf16 else 'fp32'} products"
                f"{', causal' if causal else ''}{f', window {window}' if window else ''}{f', {kv_heads} KV heads' if kv_heads != heads else ''})")
    return True
