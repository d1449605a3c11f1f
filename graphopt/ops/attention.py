"""graphopt::MultiHeadAttention (BERT-style self-attention, packed QKV projection) and
graphopt::Attention (the scaled-dot-product core on separate Q, K, V: causal, grouped KV heads,
per-head bias; what decoders and T5 fuse to)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from ..ir import DType, Node, TensorType, Value
from ._registry import MS_DOMAIN, Emitter, OpDef, register_op

__all__ = ["ATTENTION", "MULTI_HEAD_ATTENTION", "attention_ref", "sdpa_ref"]


def _heads(node_label: str, hidden: int, num_heads: int) -> int:
    if num_heads <= 0 or hidden % num_heads:
        raise UnsupportedError(f"{node_label}: hidden size {hidden} is not divisible by num_heads={num_heads}")
    return hidden // num_heads


def attention_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, num_heads: int, scale: float,
                  key_padding_mask: np.ndarray | None = None, attention_bias: np.ndarray | None = None,
                  mask_filter_value: float = -10000.0) -> np.ndarray:
    """numpy reference (float64 inside)."""
    bsz, seq, _ = x.shape
    hidden = w.shape[1] // 3
    hd = _heads("MultiHeadAttention", hidden, num_heads)
    qkv = x.astype(np.float64) @ w.astype(np.float64)
    if b is not None:
        qkv = qkv + b
    q, k, v = (qkv[..., i * hidden:(i + 1) * hidden].reshape(bsz, seq, num_heads, hd).transpose(0, 2, 1, 3)
               for i in range(3))
    s = (q @ k.transpose(0, 1, 3, 2)) * (scale if scale else 1.0 / math.sqrt(hd))
    if key_padding_mask is not None:
        s = s + np.where(key_padding_mask.astype(bool), 0.0, mask_filter_value)[:, None, None, :]
    if attention_bias is not None:
        s = s + attention_bias
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(bsz, seq, hidden)
    return y.astype(x.dtype)


def _ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    ins = list(inputs) + [None] * (5 - len(inputs))
    return [attention_ref(ins[0], ins[1], ins[2], int(attrs["num_heads"]), float(attrs["scale"]), ins[3], ins[4],
                          float(attrs["mask_filter_value"]))]


def _shape(node: Node) -> list[Any]:
    x, w = node.inputs[0], node.inputs[1]
    if x is None or w is None or x.shape is None or w.shape is None:
        return [None]
    n = w.shape[1]
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + ((n // 3) if isinstance(n, int) else None,))]


def _ins(node: Node) -> list[Value | None]:
    return list(node.inputs) + [None] * (5 - len(node.inputs))


def _bias_is_full(x: Value, bias: Value) -> bool:
    """True if the bias is known to be [.., .., S, S] with S the sequence length of x."""
    xs, bs = x.shape, bias.shape
    if xs is None or bs is None or len(xs) != 3 or len(bs) != 4:
        return False
    seq = xs[1]
    return seq is not None and bs[2] == seq and bs[3] == seq and (isinstance(seq, int) or isinstance(seq, str))


def _to_ort(node: Node, e: Emitter) -> list[Value | None]:
    x, w, b, kpm, bias = _ins(node)[:5]
    if b is None:
        raise UnsupportedError(f"{node.label()}: com.microsoft Attention needs the QKV bias input")
    mask = None
    if kpm is not None:
        mask = kpm if kpm.dtype == DType.INT32 else e.cast_once(kpm, DType.INT32)
    attrs: dict[str, Any] = {"num_heads": int(node.attr("num_heads")),
                             "mask_filter_value": float(node.attr("mask_filter_value", -10000.0))}
    if node.attr("scale", 0.0):
        attrs["scale"] = float(node.attr("scale"))
    if bias is not None and not _bias_is_full(x, bias):
        # com.microsoft Attention broadcasts attention_bias over batch and heads only: expand the
        # query and key dims to [.., .., S, S] (BERT 4.x masks are [B, 1, 1, S])
        seq = e.op("Slice", [e.op("Shape", [x]), e.const("s0", [1], np.int64), e.const("s1", [2], np.int64)])
        shape = e.op("Concat", [e.const("ones", [1, 1], np.int64), seq, seq], {"axis": 0})
        bias = e.op("Expand", [bias, shape])
    ins = [x, w, b, mask, None, bias]
    while ins[-1] is None:
        ins.pop()
    return [e.op("Attention", ins, attrs, domain=MS_DOMAIN)]


def _decompose(node: Node, e: Emitter) -> list[Value | None]:
    x, w, b, kpm, bias = _ins(node)[:5]
    n = int(node.attr("num_heads"))
    if w.shape is None or not isinstance(w.shape[1], int):
        raise UnsupportedError(f"{node.label()}: decomposition needs the static shape of the QKV weight")
    hidden = w.shape[1] // 3
    hd = _heads(node.label(), hidden, n)
    scale = float(node.attr("scale", 0.0)) or 1.0 / math.sqrt(hd)
    dt = e.dtype_np(x)
    qkv = e.op("MatMul", [x, w])
    if b is not None:
        qkv = e.op("Add", [qkv, b])
    split = e.const("split", [hidden] * 3, np.int64)
    e.op("Split", [qkv, split], {"axis": -1}, num_outputs=3) if e.opset >= 13 else \
        e.op("Split", [qkv], {"axis": -1, "split": [hidden] * 3}, num_outputs=3)
    q, k, v = e.nodes[-1].outputs
    heads = e.const("heads_shape", [0, 0, n, hd], np.int64)
    q = e.op("Transpose", [e.op("Reshape", [q, heads])], {"perm": [0, 2, 1, 3]})
    kt = e.op("Transpose", [e.op("Reshape", [k, heads])], {"perm": [0, 2, 3, 1]})
    v = e.op("Transpose", [e.op("Reshape", [v, heads])], {"perm": [0, 2, 1, 3]})
    s = e.op("Mul", [e.op("MatMul", [q, kt]), e.const("scale", scale, dt)])
    if kpm is not None:
        # (1 - mask) * filter, broadcast over heads and queries: [B, 1, 1, S]
        m = e.op("Cast", [kpm], {"to": DType.from_numpy(dt).value})
        m = e.op("Mul", [e.op("Sub", [e.const("one", 1.0, dt), m]),
                         e.const("filter", float(node.attr("mask_filter_value", -10000.0)), dt)])
        m = e.op("Unsqueeze", [m, e.const("axes", [1, 2], np.int64)]) if e.opset >= 13 else \
            e.op("Unsqueeze", [m], {"axes": [1, 2]})
        s = e.op("Add", [s, m])
    if bias is not None:
        s = e.op("Add", [s, bias])
    p = e.op("Softmax", [s], {"axis": -1})
    y = e.op("Transpose", [e.op("MatMul", [p, v])], {"perm": [0, 2, 1, 3]})
    return [e.op("Reshape", [y, e.const("out_shape", [0, 0, hidden], np.int64)])]


MULTI_HEAD_ATTENTION = register_op(OpDef(
    op_type="MultiHeadAttention",
    spec="""graphopt::MultiHeadAttention(X, W, B?, KeyPaddingMask?, AttentionBias?) -> Y

Self-attention of BERT-class encoders with the Q, K and V projections packed in one weight.
X: float [B, S, Hin]; W: float [Hin, 3H] = [Wq | Wk | Wv]; B: float [3H] = [bq | bk | bv].
KeyPaddingMask: optional int/bool [B, S], nonzero = attend to that key position.
AttentionBias: optional float, broadcastable to [B, N, S, S], added to the scaled scores (the additive
mask of BERT/DistilBERT exports: 0 where attended, a large negative value where masked).
Attributes: num_heads N (int, required, divides H); scale (float, 0 = 1/sqrt(H/N));
mask_filter_value (float, default -10000: added at positions where KeyPaddingMask is 0).
Q, K, V = split(X @ W + B) reshaped to [B, N, S, H/N];
P = softmax(scale * Q K^T + mask terms) over the last axis; Y = (P V) back to [B, S, H].
onnxruntime: com.microsoft Attention (mask_index = int32 KeyPaddingMask, attention_bias = AttentionBias).
Standard ONNX: MatMul/Split/Reshape/Transpose/Softmax.""",
    attrs={"num_heads": None, "scale": 0.0, "mask_filter_value": -10000.0},
    reference=_ref,
    shape_rule=_shape,
    to_onnxruntime=_to_ort,
    decompose=_decompose,
))


# --- Attention (separate Q, K, V) ---------------------------------------------

def _as_heads(x: np.ndarray, n: int) -> np.ndarray:
    """[B, S, n*d] -> [B, n, S, d]; 4-D input unchanged."""
    if x.ndim == 4:
        return x
    b, s, c = x.shape
    return x.reshape(b, s, n, c // n).transpose(0, 2, 1, 3)


def sdpa_ref(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, num_heads: int = 0, kv_num_heads: int = 0,
             scale: float = 0.0, causal: bool = False, key_padding_mask: np.ndarray | None = None,
             bias: np.ndarray | None = None, mask_filter_value: float = -10000.0, window: int = 0) -> np.ndarray:
    """numpy reference of graphopt::Attention (float64 inside); layouts as in its spec."""
    n = num_heads or (q.shape[1] if q.ndim == 4 else 0)
    nkv = kv_num_heads or (k.shape[1] if k.ndim == 4 else n)
    qh = _as_heads(q, n).astype(np.float64)
    kh, vh = (_as_heads(t, nkv).astype(np.float64) for t in (k, v))
    if nkv != qh.shape[1]:  # grouped KV heads: query head h reads K/V head h // (N / Nkv)
        g = qh.shape[1] // nkv
        kh, vh = np.repeat(kh, g, axis=1), np.repeat(vh, g, axis=1)
    d = qh.shape[-1]
    s = (qh @ kh.transpose(0, 1, 3, 2)) * (scale or 1.0 / math.sqrt(d))
    sq, sk = s.shape[-2:]
    if key_padding_mask is not None:
        s = s + np.where(key_padding_mask.astype(bool), 0.0, mask_filter_value)[:, None, None, :]
    if bias is not None:
        s = s + bias
    if causal:
        j, i = np.arange(sk)[None, :], np.arange(sq)[:, None] + (sk - sq)
        keep = (j <= i) & ((j > i - window) if window > 0 else True)
        s = np.where(keep, s, causal_fill(key_padding_mask is not None, mask_filter_value))
    mx = s.max(-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    tot = p.sum(-1, keepdims=True)
    p = np.divide(p, tot, out=np.zeros_like(p), where=tot > 0)
    y = p @ vh
    if q.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(q.shape[0], sq, -1)
    return y.astype(q.dtype)


def causal_fill(padded: bool, mask_filter_value: float) -> float:
    """The score of a key outside the causal window: the padding filler when a key-padding mask
    comes with it (a query whose every key is masked then averages V over all keys, as the
    exporters' finfo.min masks do), else -inf."""
    return float(mask_filter_value) if padded else float("-inf")


def _sdpa_ins(inputs: Sequence[Any]) -> list[Any]:
    return list(inputs) + [None] * (5 - len(inputs))


def _sdpa_ref(inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
    q, k, v, kpm, bias = _sdpa_ins(inputs)[:5]
    return [sdpa_ref(q, k, v, num_heads=int(attrs["num_heads"]), kv_num_heads=int(attrs["kv_num_heads"]),
                     scale=float(attrs["scale"]), causal=bool(attrs["causal"]), key_padding_mask=kpm, bias=bias,
                     mask_filter_value=float(attrs["mask_filter_value"]), window=int(attrs.get("window", 0)))]


def _sdpa_shape(node: Node) -> list[Any]:
    q = node.inputs[0]
    if q is None or not isinstance(q.type, TensorType):
        return [None]
    return [q.type]


def _sdpa_decompose(node: Node, e: Emitter) -> list[Value | None]:
    q, k, v, kpm, bias = _sdpa_ins(node.inputs)[:5]
    n = int(node.attr("num_heads"))
    nkv = int(node.attr("kv_num_heads", 0)) or n
    dt = e.dtype_np(q)
    three_d = q.rank == 3
    d = None
    if three_d:
        if q.shape is None or not isinstance(q.shape[-1], int):
            raise UnsupportedError(f"{node.label()}: decomposition of the [B, S, N*d] layout needs a static hidden size")
        d = q.shape[-1] // n
        split = e.const("heads", [0, 0, -1, d], np.int64)
        q = e.op("Transpose", [e.op("Reshape", [q, split])], {"perm": [0, 2, 1, 3]})
        k = e.op("Transpose", [e.op("Reshape", [k, split])], {"perm": [0, 2, 1, 3]})
        v = e.op("Transpose", [e.op("Reshape", [v, split])], {"perm": [0, 2, 1, 3]})
    elif q.shape is not None and isinstance(q.shape[-1], int):
        d = q.shape[-1]
    k_heads = k  # before repeat_kv: the causal mask reads Sk here, so the repeat stays a clean pattern
    if nkv != n:  # repeat each K/V head N/Nkv times: [B, Nkv, S, d] -> [B, Nkv, g, S, d] -> [B, N, S, d]
        if d is None:
            raise UnsupportedError(f"{node.label()}: grouped-KV decomposition needs a static head size")
        reps = e.const("kv_repeat", [1, 1, n // nkv, 1, 1], np.int64)
        flat = e.const("kv_shape", [0, n, -1, d], np.int64)

        def rep(t: Value) -> Value:
            u = e.op("Unsqueeze", [t, e.const("axes", [2], np.int64)]) if e.opset >= 13 else \
                e.op("Unsqueeze", [t], {"axes": [2]})
            return e.op("Reshape", [e.op("Expand", [u, reps]), flat])
        k, v = rep(k), rep(v)
    scale = float(node.attr("scale", 0.0))
    if not scale:
        if d is None:
            raise UnsupportedError(f"{node.label()}: the default scale needs a static head size")
        scale = 1.0 / math.sqrt(d)
    s = e.op("Mul", [e.op("MatMul", [q, e.op("Transpose", [k], {"perm": [0, 1, 3, 2]})]), e.const("scale", scale, dt)])
    if kpm is not None:  # Where, not (1 - m) * filter: the filter may be -inf (0 * -inf is NaN)
        m = e.op("Where", [e.op("Cast", [kpm], {"to": DType.BOOL.value}), e.const("zero", 0.0, dt),
                           e.const("filter", float(node.attr("mask_filter_value", -10000.0)), dt)])
        m = e.op("Unsqueeze", [m, e.const("axes", [1, 2], np.int64)]) if e.opset >= 13 else \
            e.op("Unsqueeze", [m], {"axes": [1, 2]})
        s = e.op("Add", [s, m])
    if bias is not None:
        s = e.op("Add", [s, bias])
    if int(node.attr("causal", 0)):
        # keep key j for query i iff j <= i + Sk - Sq: Trilu(ones[Sq, Sk], k = Sk - Sq), lower part.
        # Sq and Sk come from Q's and K's shapes, not the scores': a reloaded file then re-fuses (the
        # scores feed only the Where, and the mask cone is probed from Q and K)
        sq = e.op("Slice", [e.op("Shape", [q]), e.const("s2", [2], np.int64), e.const("s3", [3], np.int64)])
        sk = e.op("Slice", [e.op("Shape", [k_heads]), e.const("s2", [2], np.int64), e.const("s3", [3], np.int64)])
        ones = e.op("ConstantOfShape", [e.op("Concat", [sq, sk], {"axis": 0})], {"value": np.ones(1, dt)})
        diag = e.op("Squeeze", [e.op("Sub", [sk, sq]), e.const("ax0", [0], np.int64)]) if e.opset >= 13 else \
            e.op("Squeeze", [e.op("Sub", [sk, sq])], {"axes": [0]})
        keep = e.op("Cast", [e.op("Trilu", [ones, diag], {"upper": 0})], {"to": DType.BOOL.value})
        window = int(node.attr("window", 0))
        if window > 0:  # and not j <= i + Sk - Sq - W: the band between two diagonals
            below = e.op("Sub", [diag, e.const("window", window, np.int64)])
            outside = e.op("Cast", [e.op("Trilu", [ones, below], {"upper": 0})], {"to": DType.BOOL.value})
            keep = e.op("And", [keep, e.op("Not", [outside])])
        fill = float(np.finfo(dt).min) if kpm is None else causal_fill(True, float(node.attr("mask_filter_value", -10000.0)))
        s = e.op("Where", [keep, s, e.const("neg", fill, dt)])
    p = e.op("Softmax", [s], {"axis": -1})
    if kpm is not None and float(node.attr("mask_filter_value", -10000.0)) == -np.inf:
        # a query whose every key is -inf: a zero row (the kernel's and the reference's), not NaN
        p = e.op("Where", [e.op("IsNaN", [p]), e.const("nan0", 0.0, dt), p])
    y = e.op("MatMul", [p, v])
    if three_d:
        y = e.op("Reshape", [e.op("Transpose", [y], {"perm": [0, 2, 1, 3]}),
                             e.const("out_shape", [0, 0, n * d], np.int64)])
    return [y]


ATTENTION = register_op(OpDef(
    op_type="Attention",
    spec="""graphopt::Attention(Q, K, V, KeyPaddingMask?, Bias?) -> Y

The scaled-dot-product core of self- and cross-attention on separate Q, K, V (decoders, T5):
projections, rotary embeddings and the output projection stay ordinary nodes around it.
Layouts (K and V as Q): Q [B, N, Sq, d], K/V [B, Nkv, Sk, d], Y [B, N, Sq, d]; or the
heads side by side: Q [B, Sq, N*d], K/V [B, Sk, Nkv*d], Y [B, Sq, N*d].
Attributes: num_heads N (int, required); kv_num_heads Nkv (int, 0 = N; N a multiple of it:
grouped KV heads / GQA, query head h reads K/V head h // (N / Nkv), no repeated copy);
scale (float, 0 = 1/sqrt(d)); causal (int 0/1: key j masked for query i when j > i + Sk - Sq);
window (int, causal only, 0 = none: key j also masked when j < i + Sk - Sq - window + 1, a sliding
window of `window` keys); mask_filter_value (float, default -10000: added where KeyPaddingMask is 0).
Causal/window-masked scores are -inf, or mask_filter_value when KeyPaddingMask is given (they replace
the score; a query whose every key is masked then averages V over all keys, as the exporters'
finfo.min masks do).
KeyPaddingMask: optional int/bool [B, Sk], nonzero = attend to that key.
Bias: optional float broadcastable to [B, N, Sq, Sk] ([1|B, 1|N, 1|Sq, Sk]), added to the scaled
scores (additive masks; T5's per-head relative position bias).
Y = softmax(scale * Q K^T + mask terms + Bias, causal/window keys replaced as above) V per head.
onnxruntime: the standard-ONNX decomposition (com.microsoft GroupQueryAttention needs a KV cache).
Standard ONNX: Reshape/Transpose, Unsqueeze/Expand/Reshape (GQA), MatMul, Trilu/Where (causal),
Softmax.""",
    attrs={"num_heads": None, "kv_num_heads": 0, "scale": 0.0, "causal": 0, "window": 0, "mask_filter_value": -10000.0},
    reference=_sdpa_ref,
    shape_rule=_sdpa_shape,
    to_onnxruntime=_sdpa_decompose,
    decompose=_sdpa_decompose,
))
