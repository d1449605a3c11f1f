"""fuse-sdpa: the scaled-dot-product core of decoders (and any attention whose projections
``fuse-attention`` did not pack) -> graphopt::Attention on separate Q, K, V.

Matched on the canonical form ``canonicalize-attention`` leaves (the sdpa NaN guard removed, the
scale hoisted after Q K^T):

* ``scores``  MatMul(Q, K^T), then Mul by scale or Div by 1/scale (optional); K^T is
  Transpose(K, (0, 1, 3, 2)) of K [B, Nkv, Sk, d], or Transpose(K', (0, 2, 3, 1)) of K' [B, Sk, Nkv, d]
* ``repeat_kv``  Reshape(Expand(Unsqueeze(K, 2), [B, Nkv, g, S, d]), [B, Nkv g, S, d]) for grouped
  K/V heads (LLaMA, Mistral, Qwen2): dropped, ``kv_num_heads`` = Nkv (the kernel reads each K/V head
  for its g query heads in place)
* ``mask``  Add of an additive mask, masked_fill ``Where(c, fill, s)`` / ``Where(c, s, fill)``, or none.
  Key padding alone, recognised by :func:`mask_kind` (passes/fusion/fuse_attention_mask.py), becomes the
  KeyPaddingMask input (the mask subgraph then dies). A causal condition becomes the ``causal`` attribute
  (+ ``window``) only when proved (passes/canonicalize/_mask_prover.py; probing two sizes would not see a
  window wider than the probes); anything else broadcastable to [B, N, Sq, Sk] stays as the additive Bias
  input (T5's position bias), an additive causal mask too: ``canonicalize-decoder-mask`` then proves it
  and makes it ``causal`` (+ ``window``) + the KeyPaddingMask input.
* ``Softmax(-1)`` then MatMul with V (repeat_kv'd like K, or not).

Rotary embeddings (fused or not) sit on Q and K before the match and stay where they are.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from graphopt.ir import Model, Value
from graphopt.pattern import A, AnyOf, Const, MatchResult, P, Rule, RuleSet, Var, const_value
from graphopt.pm import PassContext, PassResult, register_pass

from ._common import GRAPHOPT, FusionPass, matched_scale, scalar
from .fuse_attention_mask import MaskKind, mask_kind

__all__ = ["FuseSdpaPass", "sdpa_pattern"]


def _repeat_kv(t: str):
    """repeat_kv(x, g): [B, Nkv, S, d] -> [B, Nkv g, S, d] through Unsqueeze/Expand/Reshape, or x itself."""
    src = Var(f"{t}_src")
    unsq = AnyOf(P.Unsqueeze(src, Const(f"{t}_axes"), bind=f"{t}_unsq"), P.Unsqueeze(src, bind=f"{t}_unsq"))
    rep = P.Reshape(P.Expand(unsq, Var(f"{t}_eshape"), bind=f"{t}_exp"), Var(f"{t}_rshape"), bind=f"{t}_rep")
    return AnyOf(rep, src)


def _key_t():
    return AnyOf(P.Transpose(_repeat_kv("k"), perm=[0, 1, 3, 2], bind="k_t"),
                 P.Transpose(Var("k_bsnd"), perm=[0, 2, 3, 1], bind="k_t"))


def sdpa_pattern():
    qk = P.MatMul(Var("q"), _key_t(), bind="qk")
    s = AnyOf(P.Mul(qk, Const("scale"), bind="scaled"), P.Div(qk, Const("inv_scale"), bind="scaled"), qk)
    sb = AnyOf(P.Add(s, Var("bias"), bind="biased"), s)  # a score term under masked_fill (DeBERTa)
    masked = AnyOf(P.Add(s, Var("mask"), bind="masked"),
                   P.Where(Var("cond"), Const("fill"), sb, bind="masked_fill"),
                   P.Where(Var("cond"), sb, Const("fill"), bind="masked_keep"), s)
    probs = P.Softmax(masked, axis=A(pred=lambda a: a in (-1, 3), default=-1), bind="softmax")
    return P.MatMul(probs, _repeat_kv("v"), bind="pv")


def _static(shape: Any, i: int) -> int | None:
    return shape[i] if shape is not None and len(shape) > i and isinstance(shape[i], int) else None


def _same_dim(a: Any, b: Any) -> bool:
    return isinstance(a, (int, str)) and a != "" and a == b


class FuseSdpa(Rule):
    """softmax(scale Q K^T + mask) V -> graphopt::Attention(Q, K, V, KeyPaddingMask?, Bias?)."""

    name = "fuse-sdpa"
    benefit = 4
    commutative = True

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self._masks: dict[tuple[int, Any], MaskKind | None] = {}

    def pattern(self, p):
        return sdpa_pattern()

    # --- checks -----------------------------------------------------------------
    def _kv_heads(self, m, t: str, n: int) -> int | MatchResult:
        src = m[f"{t}_src"] if f"{t}_src" in m else None
        if t == "k" and src is None:
            kb = m["k_bsnd"]
            if kb.rank != 4:
                return MatchResult.fail("K of K^T = Transpose(K, (0, 2, 3, 1)) is not 4-D", kb)
            nkv = _static(kb.shape, 2)
        else:
            if src.rank != 4:
                return MatchResult.fail(f"{t.upper()} is not 4-D [B, heads, S, d]", src)
            nkv = _static(src.shape, 1)
        if nkv is None or nkv < 1 or n % nkv:
            return MatchResult.fail(f"{t.upper()} has {nkv} heads, not a divisor of the {n} query heads", src)
        if f"{t}_rep" in m:
            axes = const_value(m[f"{t}_axes"]) if f"{t}_axes" in m else np.array(m.node(f"{t}_unsq").attr("axes", []))
            if axes is None or [int(a) for a in np.asarray(axes).reshape(-1)] != [2]:
                return MatchResult.fail("repeat_kv Unsqueeze is not on axis 2", m.node(f"{t}_unsq"))
            es, rs, ss = m[f"{t}_exp"].shape, m[f"{t}_rep"].shape, src.shape
            if rs is None or ss is None or len(rs) != 4:
                return MatchResult.fail("repeat_kv shapes are unknown", m.node(f"{t}_rep"))
            # [B, Nkv, S, d] -> Unsqueeze(2) -> Expand -> [B, N, S, d]: with B, S, d kept and N = Nkv g, the
            # element count makes the Expand [B, Nkv, g, S, d] (TorchScript leaves its shape uninferred)
            expand_ok = es is None or (len(es) == 5 and all(
                a is None or a == "" or a == b for a, b in zip(es, (ss[0], nkv, n // nkv, ss[2], ss[3]))))
            # (an unknown Reshape dim is fine: Reshape keeps the element count, N and d are static)
            if not (expand_ok and rs[1] == n and _same_dim(rs[3], ss[3]) and
                    all(a is None or a == "" or _same_dim(a, b) for a, b in zip((rs[0], rs[2]), (ss[0], ss[2])))):
                return MatchResult.fail(f"not repeat_kv: {list(ss)} -> {list(es)} -> {list(rs)}", m.node(f"{t}_rep"))
        elif nkv not in (1, n):
            return MatchResult.fail(f"{t.upper()} has {nkv} heads without repeat_kv", src)
        return nkv

    def check(self, m):
        q = m["q"]
        if q.rank != 4:
            return MatchResult.fail("Q is not 4-D [B, N, Sq, d]", q)
        n, d = _static(q.shape, 1), _static(q.shape, 3)
        if n is None or d is None:
            return MatchResult.fail("Q's head count and head size are not static", q)
        if q.dtype is None or not q.dtype.is_float:
            return MatchResult.fail("Q is not a float tensor", q)
        for t in "kv":
            r = self._kv_heads(m, t, n)
            if isinstance(r, MatchResult):
                return r
        if self._kv_heads(m, "k", n) != self._kv_heads(m, "v", n):
            return MatchResult.fail("K and V have different head counts", m.node("pv"))
        if "scaled" in m and matched_scale(m) is None:
            return MatchResult.fail("attention scale is not a positive scalar constant", m.node("scaled"))
        if "masked_fill" in m or "masked_keep" in m:
            fill = scalar(m.const("fill"))
            if fill is None or not fill <= -1e30:
                return MatchResult.fail("masked_fill value is not a scalar <= -1e30", m["fill"])
            if m["cond"].rank != 4 and self._kind(m["cond"], "masked_keep" in m) is None and \
                    self._proof(m, m["q"], m["k_src"] if "k_src" in m else None) is None:
                # a 4-D condition can always become the Bias input; a lower-rank one (a [Sq, Sk] causal
                # mask, as graphopt's own decomposition writes it) only as a recognised mask
                return MatchResult.fail("masked_fill condition is neither 4-D nor a causal/padding mask",
                                        m["cond"])
        for mask in (m.get_or_none("mask"), m.get_or_none("bias")):
            if mask is None:
                continue
            ms = mask.shape
            if mask.rank != 4 or mask.dtype != q.dtype or ms is None:
                return MatchResult.fail("additive mask is not 4-D of Q's type", mask)
            if not (ms[1] in (1, n) or not isinstance(ms[1], int)):  # unknown: checked by the kernel step
                return MatchResult.fail(f"additive mask dim 1 is {ms[1]}, not 1 or {n} heads", mask)
        return MatchResult.ok()

    def _kind(self, v: Value, keep_when: bool | None) -> MaskKind | None:
        key = (id(v), keep_when)
        if key not in self._masks:
            self._masks[key] = mask_kind(self.model, v, keep_when)
        return self._masks[key]

    # --- rewrite ----------------------------------------------------------------
    def rewrite(self, b, m):
        q = m["q"]
        n, d = q.shape[1], q.shape[3]
        k = m["k_src"] if "k_src" in m else b.Transpose(m["k_bsnd"], perm=[0, 2, 1, 3])
        v = m["v_src"]
        nkv = self._kv_heads(m, "k", n)
        scale = matched_scale(m)
        if math.isclose(scale, 1.0 / math.sqrt(d), rel_tol=1e-6):
            scale = 0.0
        dt = q.dtype.numpy
        kpm: Value | None = None
        bias: Value | None = None
        causal = 0
        filler = -10000.0
        kind: MaskKind | None = None
        # causal is set only on a proof (canonicalize-decoder-mask's prover: every size, the sliding window
        # too); a causal mask probed but not proved stays the Bias. Causal + key padding stays the Bias
        # here too: canonicalize-decoder-mask proves it and makes it causal + the key-padding input
        window = 0
        if "masked" in m:
            kind = self._kind(m["mask"], None)
            if kind is None or kind.causal:
                kind, bias = None, m["mask"]
        elif "masked_fill" in m or "masked_keep" in m:
            keep = "masked_keep" in m
            kind = self._kind(m["cond"], keep)
            if kind is None or kind.causal:
                proof = self._proof(m, q, m["k_src"] if "k_src" in m else None)
                kind = MaskKind(True, None, -1e30) if proof is not None and proof.padding is None else None
                window = proof.window if kind is not None else 0
            if kind is None:
                fill = max(scalar(m.const("fill")), float(np.finfo(dt).min))  # -inf -> finfo.min: no inf - inf
                zero, neg = np.array(0.0, dt), np.array(fill, dt)
                bias = b.Where(m["cond"], zero, neg) if keep else b.Where(m["cond"], neg, zero)
                if "biased" in m:  # fill + term ~ fill: the masked scores stay at the bottom of softmax
                    bias = b.Add(m["bias"], bias)
            elif "biased" in m:
                bias = m["bias"]
        if kind is not None:
            causal = int(kind.causal)
            kpm = kind.padding
            filler = max(kind.filler, float(np.finfo(dt).min))
            if kind.causal:  # the masked_fill value: what causal keys get (canonicalize-decoder-mask pairs
                fill = scalar(m.const("fill"))  # a padding bias of that filler with it)
                filler = fill if fill == -np.inf else max(fill, float(np.finfo(dt).min))
        return b.Attention(q, k, v, kpm, bias, num_heads=int(n), kv_num_heads=int(nkv) if nkv != n else 0,
                           scale=float(scale), causal=causal, mask_filter_value=float(filler), _domain=GRAPHOPT,
                           **({"window": window} if window else {}))

    @staticmethod
    def _proof(m, q: Value, k: Value | None):
        """The causal mask proved (canonicalize-decoder-mask's prover: graphopt's own decomposition writes
        a window as a band of two Trilu), or None -- a mask the prover does not cover (the mask-less
        exports' packed-sequence masks) stays recognised by probing alone."""
        from ..canonicalize._mask_prover import prove_mask

        if k is None or q.shape is None or k.shape is None or len(q.shape) != 4 or len(k.shape) != 4:
            return None
        target = m["mask"] if "masked" in m else m.get_or_none("cond")
        if target is None:
            return None
        return prove_mask(target, q.shape[0], q.shape[2], k.shape[2],
                          keep_when=None if "masked" in m else "masked_keep" in m)


@register_pass
class FuseSdpaPass(FusionPass):
    name: ClassVar[str] = "fuse-sdpa"
    description: ClassVar[str] = ("scaled-dot-product attention on separate Q, K, V (causal and padding masks "
                                  "recognised, grouped KV heads, additive bias) -> graphopt::Attention")
    rules = RuleSet([], name="fuse-sdpa")
    needs_shapes = True

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        self._rules = RuleSet([FuseSdpa(model)], name="fuse-sdpa")  # the rule probes masks on this model
        return super().run(model, ctx)
