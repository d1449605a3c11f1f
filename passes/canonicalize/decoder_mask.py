"""canonicalize-decoder-mask: a decoder's [B, 1, S, S] mask bias on graphopt::Attention ->
``causal=1`` (+ ``window``) + the [B, Sk] key-padding mask.

transformers builds one additive mask per run for every decoder layer: ``Where(causal ∧ padding
[∧ window], 0, finfo.min)`` with ``causal = k <= q``, ``padding = attention_mask[b, k]`` and
Mistral's ``window = k > q - W``; ``fuse-sdpa`` leaves it as the Attention's Bias. The kernel
then computes the masked upper triangle and reads an S x S mask per head. This pass proves, for
every batch size and sequence length (``_mask_prover``: the cone is interpreted symbolically,
one code path for every export form), that the bias is exactly that mask, and rewrites the
Attention to ``causal=1``, ``window=W`` (when the mask has one), ``KeyPaddingMask`` = the 2-D
input and ``mask_filter_value`` = the mask's filler. The kernel gives causal and window keys the
filler too when a padding mask comes with them, so a query whose every key is masked (left
padding) still averages V over all keys, as with the exported mask.

A mask that is not proved keeps the bias: bidirectional padding, a mask read from an input, a
KV-cache offset (Sq != Sk), anything the symbolic domain does not cover.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from graphopt.ir import Model, Node, Value
from graphopt.pattern import remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_pass

from graphopt.io import infer_shapes

from ..fusion._common import GRAPHOPT, _untyped
from ._mask_prover import MaskProof, prove_mask

__all__ = ["CanonicalizeDecoderMaskPass", "attention_dims"]


def attention_dims(n: Node) -> tuple[Any, Any, Any] | None:
    """(B, Sq, Sk) of a graphopt::Attention from Q's and K's (or V's) shapes ([B, N, S, d] or [B, S, N d])."""
    q = n.inputs[0]
    if q is None or q.shape is None or len(q.shape) not in (3, 4):
        return None
    seq = 2 if len(q.shape) == 4 else 1
    kv = [t for t in n.inputs[1:3] if t is not None and t.shape is not None and len(t.shape) == len(q.shape)]
    if not kv:  # a K^T just transposed back by fuse-sdpa has no shape yet; V has the same Sk
        return None
    return q.shape[0], q.shape[seq], kv[0].shape[seq]


@register_pass
class CanonicalizeDecoderMaskPass(Pass):
    """Attention(q, k, v, -, causal ∧ padding [∧ window] mask) -> Attention(q, k, v, padding, causal=1, window)."""

    name: ClassVar[str] = "canonicalize-decoder-mask"
    description: ClassVar[str] = ("a decoder's proved causal (+ key padding, + sliding window) mask bias on "
                                  "graphopt::Attention -> causal=1, window and the [B, Sk] key-padding input")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        if not any(_candidate(n) for n in model.graph):
            return PassResult(False)
        if _untyped(model):  # fuse-sdpa's fresh K transposes: the proof compares Q's and K's dims
            infer_shapes(model)
        proofs: dict[tuple[Value, Any, int], MaskProof | None] = {}
        done = 0
        while True:
            # a mask whose shape inference left unknown hides the dims of every layer after the first
            # one rewritten: shapes are inferred again while a rewrite leaves such a layer behind
            fresh, blocked = self._round(model, proofs)
            done += fresh
            if not (fresh and blocked):
                break
            infer_shapes(model)
        return PassResult(bool(done), {"masks": done} if done else {})

    @staticmethod
    def _round(model: Model, proofs: dict[tuple[Value, Any, int], MaskProof | None]) -> tuple[int, int]:
        """(Attentions rewritten, candidates skipped for unknown dims)."""
        g = model.graph
        done = blocked = 0
        dead: list[Node] = []
        for n in list(g):
            if not _candidate(n):
                continue
            bias = n.inputs[4]
            dims = attention_dims(n)
            if dims is None:
                blocked += 1
                continue
            # causal already (graphopt's own decomposition re-fused: causal Trilu, the padding as a bias):
            # only a padding bias whose filler is what the causal keys got moves to the key-padding input
            causal = int(n.attr("causal", 0))
            key = (bias, dims, causal)  # the Value itself: an id could be reused once a dead mask is freed
            if key not in proofs:
                proofs[key] = prove_mask(bias, *dims, padding_only=bool(causal))
            proof = proofs[key]
            if proof is None:
                continue
            dt = n.inputs[0].dtype.numpy if n.inputs[0].dtype is not None else np.float32
            # finfo.min stays: a query whose every key is masked averages V over all keys, as with the
            # exported mask; -inf (sdpa) stays too: such a query gets a zero row, as the NaN guard
            # canonicalize-attention removed gave it
            filler = proof.filler if proof.filler == -np.inf else max(proof.filler, float(np.finfo(dt).min))
            if causal and filler != float(n.attr("mask_filter_value", -10000.0)):
                continue
            _rewrite(n, proof, filler)
            done += 1
            if bias.producer() is not None:
                dead.append(bias.producer())
        if dead:
            remove_dead(g, dead)
        return done, blocked


def _candidate(n: Node) -> bool:
    """A graphopt::Attention with a Bias and no key-padding input."""
    if n.domain != GRAPHOPT or n.op_type != "Attention":
        return False
    ins = list(n.inputs) + [None] * (5 - len(n.inputs))
    return ins[4] is not None and ins[3] is None


def _rewrite(n: Node, proof: MaskProof, filler: float) -> None:
    pad: Value | None = proof.padding
    n.set_inputs([*n.inputs[:3], pad] if pad is not None else list(n.inputs[:3]))
    n.set_attr("causal", 1)  # (a padding-only proof is for an Attention that is causal already)
    if proof.window:
        n.set_attr("window", int(proof.window))
    n.set_attr("mask_filter_value", float(filler))
    q, y = n.inputs[0], n.outputs[0]
    if q.shape is not None and None not in q.shape and (y.shape is None or None in y.shape):
        y.type = q.type  # the output is typed as Q (the op's shape rule); the mask had hidden its dims
