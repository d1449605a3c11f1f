"""fuse-attention-mask: an additive padding mask computed from a 2-D ``attention_mask``
input becomes the key-padding-mask input of graphopt::MultiHeadAttention.

BERT-class exports build the additive mask ``M[b, 0, q, k] = 0 if attention_mask[b, k]
else c`` (c = -10000 or finfo.min) from the 2-D input with a subgraph whose form
changes with every transformers release: ``(1 - Cast(Unsqueeze(Unsqueeze(mask)))) * c``
in 4.x, an index-arithmetic ``Gather(Flatten(mask), b * S + k)`` plus ``And``/``Expand``/
``Where`` in 5.x (vmap-built masks). Passing the 2-D mask to the attention kernel
instead (onnxruntime's ``mask_index``) drops that subgraph and the per-head bias add.

Why a plain Pass and not a pattern: the subgraph is not one structure but a family
(and each member is 20-40 nodes of shape arithmetic), while what must hold is a
simple semantic fact. The pass therefore checks the fact directly: the mask's
producer cone must read nothing but the 2-D integer input (plus *shapes* of other
values and constants), and evaluating that cone in onnxruntime on random masks of
two different batch/sequence sizes must give exactly 0 at attended and one constant
c at masked key positions, broadcast over heads and queries. Only then is the
rewrite done, with ``mask_filter_value = c``, so the numbers are unchanged.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from graphopt.ir import Model, Node, Value
from graphopt.pattern import remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_pass

from ._common import GRAPHOPT
from ._cone import cone, evaluate, probe_feed

__all__ = ["FuseAttentionMaskPass", "MaskKind", "mask_kind", "padding_mask_source"]

logger = logging.getLogger(__name__)

_PROBES = ((2, 5), (3, 7))


def _probe(model: Model, nodes: list, mask: Value, src: Value | None, shape_only: list,
           ) -> list[tuple[int, int, np.ndarray, np.ndarray]] | None:
    """``mask``'s cone evaluated at each probe size: (b, s, attention mask [b, s] bool, mask value with
    the [1|b, 1, 1|s, s] shape of a score mask). Random attention masks (seeded; key 0 always kept,
    one key masked) feed ``src``; None when a shape input cannot be fed, the cone does not run or the
    result is not shaped like a score mask."""
    rng = np.random.default_rng(0)
    out = []
    for b, s in _PROBES:
        feeds: dict[Value, np.ndarray] = {}
        am = np.ones((b, s), bool)
        if src is not None:
            am = rng.random((b, s)) < 0.6
            am[:, 0] = True  # every query attends somewhere (key 0 is never masked)
            am[0, -1] = False
            feeds[src] = am.astype(src.dtype.numpy)
        for v in shape_only:
            f = probe_feed(v, b, s)
            if f is None:
                return None
            feeds[v] = f
        try:
            m = evaluate(model, nodes, mask, feeds)
        except Exception as e:  # noqa: BLE001 - a cone onnxruntime cannot run is simply not a mask
            logger.debug("mask cone of %%%s did not evaluate: %s", mask.name, e)
            return None
        if not 2 <= m.ndim <= 4:
            return None
        m = m.reshape((1,) * (4 - m.ndim) + m.shape)  # [S, S] / [1, S, S] broadcast as a score mask
        if m.shape[0] not in (1, b) or m.shape[1] != 1 or m.shape[2] not in (1, s) or m.shape[3] != s:
            return None
        out.append((b, s, am, m))
    return out


def padding_mask_source(model: Model, mask: Value) -> tuple[Value, float] | None:
    """``(attention_mask input, c)`` if ``mask`` is the additive padding mask of a 2-D input, else None."""
    found = cone(mask)
    if found is None:
        return None
    nodes, data_inputs, shape_only = found
    if len(data_inputs) != 1:
        return None
    src = data_inputs[0]
    if src.rank != 2 or src.dtype is None or not (src.dtype.is_integer or src.dtype.name == "BOOL"):
        return None
    probes = _probe(model, nodes, mask, src, shape_only)
    if probes is None:
        return None
    filler: float | None = None
    for b, s, am, m in probes:
        keep = np.broadcast_to(am[:, None, None, :], (b, 1, m.shape[2], s))
        m = np.broadcast_to(m, keep.shape)
        if not np.all(m[keep] == 0):
            return None
        masked = np.unique(m[~keep])
        if masked.size != 1 or not masked[0] < -1e3:
            return None
        if filler is not None and float(masked[0]) != filler:
            return None
        filler = float(masked[0])
    return src, float(filler)


class MaskKind:
    """What a score mask is: ``causal`` (key j masked for query i > j), ``padding`` (the 2-D
    integer input whose zeros mask keys, or None) and the additive value ``filler`` of masked scores."""

    def __init__(self, causal: bool, padding: Value | None, filler: float) -> None:
        self.causal, self.padding, self.filler = causal, padding, filler

    def __repr__(self) -> str:
        return f"MaskKind(causal={self.causal}, padding={self.padding.name if self.padding else None}, " \
               f"filler={self.filler})"


def mask_kind(model: Model, mask: Value, keep_when: bool | None = None) -> MaskKind | None:
    """Recognise a decoder's score mask by evaluating its producer cone on probe inputs.

    ``mask`` is additive (``keep_when`` None: 0 where attended, one constant c < -1e3 where
    masked) or boolean (``keep_when``: the value that means "attend"). It is recognised when,
    broadcast to [B, 1, S, S], it equals causal and/or key padding by a 2-D integer input on
    random masks of two batch/sequence sizes -- the Range/Trilu/Where/Less/GatherND chains of every
    exporter are then one fact, checked rather than pattern-matched. None otherwise."""
    found = cone(mask)
    if found is None:
        return None
    nodes, data_inputs, shape_only = found
    if len(data_inputs) > 1 or not nodes:
        return None
    src = data_inputs[0] if data_inputs else None
    if src is not None and (src.rank != 2 or src.dtype is None or
                            not (src.dtype.is_integer or src.dtype.name == "BOOL")):
        return None
    probes = _probe(model, nodes, mask, src, shape_only)
    if probes is None:
        return None
    filler: float | None = -1e30 if keep_when is not None else None
    verdict: tuple[bool, bool] | None = None
    for b, s, am, m in probes:
        m = np.broadcast_to(m, (b, 1, s, s))
        if keep_when is None:
            keep = m == 0
            masked = np.unique(m[~keep])
            if masked.size > 1 or (masked.size == 1 and not masked[0] < -1e3):
                return None
            if masked.size == 1:
                if filler is not None and float(masked[0]) != filler:
                    return None
                filler = float(masked[0])
        else:
            keep = m.astype(bool) == keep_when
        tri = np.tril(np.ones((s, s), bool))[None, None]
        pad = am[:, None, None, :]
        for causal, padded in ((True, True), (True, False), (False, True)):
            want = (tri if causal else True) & (pad if padded else True)
            if np.array_equal(keep, np.broadcast_to(want, keep.shape)):
                if padded and src is None:
                    continue
                if verdict is not None and verdict != (causal, padded):
                    return None
                verdict = (causal, padded)
                break
        else:
            return None
    if verdict is None or filler is None:
        return None
    return MaskKind(verdict[0], src if verdict[1] else None, filler)


@register_pass
class FuseAttentionMaskPass(Pass):
    """MultiHeadAttention(..., AttentionBias = padding mask of M) -> MultiHeadAttention(..., KeyPaddingMask = M)."""

    name: ClassVar[str] = "fuse-attention-mask"
    description: ClassVar[str] = ("additive padding mask computed from a 2-D attention_mask -> the attention's "
                                  "key-padding-mask input (the mask subgraph is removed)")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        by_mask: dict[Value, list[Node]] = {}
        for n in g:
            if n.domain == GRAPHOPT and n.op_type == "MultiHeadAttention" and len(n.inputs) > 4 \
                    and n.inputs[4] is not None and (len(n.inputs) < 4 or n.inputs[3] is None):
                by_mask.setdefault(n.inputs[4], []).append(n)
        fused = 0
        for mask, users in by_mask.items():
            found = padding_mask_source(model, mask)
            if found is None:
                continue
            src, filler = found
            filler = max(filler, float(np.finfo(np.float32).min))  # -inf (sdpa) -> finfo.min: no inf - inf
            producer = mask.producer()
            for n in users:
                n.set_input(3, src)
                n.set_input(4, None)
                n.set_inputs(list(n.inputs[:4]))
                n.set_attr("mask_filter_value", filler)
                fused += 1
            if producer is not None and producer.graph is g:
                remove_dead(g, [producer])
        return PassResult(bool(fused), {"masks": fused} if fused else {})
