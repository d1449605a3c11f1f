"""Kernel builders of the standard ONNX ops and the ``graphopt`` fused ops: one function per op
type, returning True when it emitted native steps (False: the node runs through the fallback).
:data:`graphopt.runtime.lowering_table.LOWERING` maps (domain, op type, precision) to them; each
checks dtypes and attributes before it commits, so the executor never meets an input it cannot
handle. The GEMM builders (:func:`dense`, Conv, MultiHeadAttention, EmbedLayerNorm) take the
node's decided precision as ``prec``.

>>> from graphopt.runtime.lowering_table import LOWERING
>>> LOWERING[("", "Softmax", "fp32")]    # doctest: +ELLIPSIS
<function _softmax at ...>
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ir import DType, Node, Value
from .lower import (_ACT, _CAST_T, _INT_T, _NUM_T, _SIZED, Tmp, _ln_native, _Lowerer, _s, sparse_kernel,
                    _static_shape, quantize_weight_s8)
from ..quant.decision import weight_grid
from .lower_epilogue import depthwise_act, emit_post_act, post_act_ok

__all__ = ["dense", "linear_plan", "conv_plan", "mha_plan"]


# ---------------------------------------------------------------- per-op lowering (standard domain)

def _same(lw: _Lowerer, n: Node, kind: str | None = None, **kw: Any) -> bool:
    lw.emit(kind or n.op_type, n, list(n.inputs), list(n.outputs), **kw)
    return True


def _binary(lw: _Lowerer, n: Node) -> bool:
    if len(n.inputs) != 2:
        return False
    a, b = (lw.dt(v) for v in n.inputs)
    if n.op_type == "Pow":
        if a == DType.FLOAT and (b == DType.FLOAT or (b in _INT_T and lw.const(n.inputs[1]) is not None
                                                      and lw.const(n.inputs[1]).size == 1)):
            return _same(lw, n)
        return False
    if n.op_type in ("And", "Or", "Xor"):
        return a == b == DType.BOOL and _same(lw, n)
    if n.op_type in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        return a == b and a in _NUM_T + (DType.BOOL,) and _same(lw, n)
    return a == b and a in _NUM_T and _same(lw, n)


def _sum(lw: _Lowerer, n: Node) -> bool:
    ins = [v for v in n.inputs if v is not None]
    dts = {lw.dt(v) for v in ins}
    if not ins or len(dts) != 1 or dts.pop() not in _NUM_T:
        return False
    if len(ins) == 1:
        lw.emit("Copy", n, ins, [n.outputs[0]])
        return True
    acc = ins[0]
    for i, v in enumerate(ins[1:]):
        out = n.outputs[0] if i == len(ins) - 2 else lw.tmp(n.outputs[0].name + "/sum")
        lw.emit("Add", n if out is n.outputs[0] else f"{n.name}/{i}", [acc, v], [out], origin=[n.label()])
        acc = out
    return True


def _unary_f32(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    fa = {}
    if n.op_type == "LeakyRelu":
        fa["alpha"] = float(n.attr("alpha", 0.01))
    ia = {}
    if n.op_type == "Gelu":
        ia["tanh"] = int(_s(n.attr("approximate", "none")) == "tanh")
    return _same(lw, n, iattrs=ia, fattrs=fa)


def _not(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[0]) == DType.BOOL and _same(lw, n)


def _clip(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    if lw.opset < 11:
        return _same(lw, n, fattrs={"min": float(n.attr("min", -3.4e38)), "max": float(n.attr("max", 3.4e38))})
    for v in n.inputs[1:]:
        if v is not None and lw.dt(v) != DType.FLOAT:
            return False
    return _same(lw, n)


def _where(lw: _Lowerer, n: Node) -> bool:
    c, x, y = (lw.dt(v) for v in n.inputs)
    return c == DType.BOOL and x == y and x in _SIZED and _same(lw, n)


def _cast(lw: _Lowerer, n: Node) -> bool:
    to = DType(int(n.attr("to")))
    src = lw.dt(n.inputs[0])
    return to in _CAST_T + (DType.BFLOAT16,) and src in _CAST_T and _same(lw, n, iattrs={"to": to.value})


def _cast_like(lw: _Lowerer, n: Node) -> bool:
    to, src = lw.dt(n.inputs[1]), lw.dt(n.inputs[0])
    if to not in _CAST_T + (DType.BFLOAT16,) or src not in _CAST_T:
        return False
    lw.emit("Cast", n, [n.inputs[0]], [n.outputs[0]], iattrs={"to": to.value})
    return True


def _mod(lw: _Lowerer, n: Node) -> bool:
    a, b = lw.dt(n.inputs[0]), lw.dt(n.inputs[1])
    fmod = int(n.attr("fmod", 0))
    if a != b or a not in _NUM_T or (a in (DType.FLOAT, DType.DOUBLE) and not fmod):
        return False
    return _same(lw, n, iattrs={"fmod": fmod})


def _log_softmax(lw: _Lowerer, n: Node) -> bool:
    return _softmax(lw, n, kind="LogSoftmax")


def _view(lw: _Lowerer, n: Node) -> bool:
    ia: dict[str, Any] = {}
    if n.op_type == "Reshape":
        ia["allowzero"] = int(n.attr("allowzero", 0))
        if len(n.inputs) < 2:
            ia["shape"] = list(n.attr("shape", []))
    elif n.op_type == "Flatten":
        ia["axis"] = int(n.attr("axis", 1))
    elif n.op_type in ("Squeeze", "Unsqueeze") and n.attr("axes") is not None:
        ia["axes"] = list(n.attr("axes"))
    lw.emit(n.op_type, n, list(n.inputs[:2]), [n.outputs[0]], iattrs=ia)
    return True


def _identity(lw: _Lowerer, n: Node) -> bool:
    if n.op_type == "Dropout":
        if len(n.outputs) > 1 and (n.outputs[1].num_uses() or n.outputs[1].is_graph_output()):
            return False
        tm = n.inputs[2] if len(n.inputs) > 2 else None
        if tm is not None and (lw.const(tm) is None or bool(lw.const(tm).reshape(-1)[0])):
            return False  # training mode: random, leave it to onnxruntime
    lw.emit("Identity", n, [n.inputs[0]], [n.outputs[0]])
    return True


def _sized(lw: _Lowerer, n: Node, **kw: Any) -> bool:
    return lw.dt(n.inputs[0]) in _SIZED and _same(lw, n, **kw)


def _transpose(lw: _Lowerer, n: Node) -> bool:
    perm = n.attr("perm")
    return _sized(lw, n, iattrs={"perm": list(perm)} if perm is not None else {})


def _concat(lw: _Lowerer, n: Node) -> bool:
    dts = {lw.dt(v) for v in n.inputs}
    return len(dts) == 1 and dts.pop() in _SIZED and _same(lw, n, iattrs={"axis": int(n.attr("axis"))})


def _slice(lw: _Lowerer, n: Node) -> bool:
    if lw.opset < 10:
        return _sized(lw, n, iattrs={k: list(n.attr(k)) for k in ("starts", "ends", "axes") if n.attr(k) is not None})
    return all(lw.dt(v) in _INT_T for v in n.inputs[1:] if v is not None) and _sized(lw, n)


def _gather(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[1]) in _INT_T and _sized(lw, n, iattrs={"axis": int(n.attr("axis", 0))})


def _shape(lw: _Lowerer, n: Node) -> bool:
    ia = {k: int(n.attr(k)) for k in ("start", "end") if n.attr(k) is not None}
    return _same(lw, n, iattrs=ia)


def _expand(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[1]) == DType.INT64 and _sized(lw, n)


def _const_of_shape(lw: _Lowerer, n: Node) -> bool:
    v = n.attr("value")
    arr = np.zeros(1, np.float32) if v is None else np.asarray(v)
    dt = DType.from_numpy(arr.dtype)
    if dt not in (DType.FLOAT, DType.DOUBLE, DType.INT64, DType.INT32, DType.BOOL, DType.UINT8, DType.INT8):
        return False
    return _same(lw, n, iattrs={"dtype": dt.value}, fattrs={"value": float(arr.reshape(-1)[0])})


def _range(lw: _Lowerer, n: Node) -> bool:
    d = {lw.dt(v) for v in n.inputs}
    return len(d) == 1 and d.pop() in (DType.FLOAT, DType.INT64, DType.INT32) and _same(lw, n)


def _split(lw: _Lowerer, n: Node) -> bool:
    ia: dict[str, Any] = {"axis": int(n.attr("axis", 0))}
    if n.attr("split") is not None:
        ia["split"] = list(n.attr("split"))
    if n.attr("num_outputs") is not None:
        nout = int(n.attr("num_outputs"))
        if nout != len(n.outputs):
            return False
    return _sized(lw, n, iattrs=ia)


def _matmul(lw: _Lowerer, n: Node) -> bool:
    """MatMul of two computed tensors (attention products left unfused): the batched kernel."""
    return lw.dt(n.inputs[0]) == DType.FLOAT and lw.dt(n.inputs[1]) == DType.FLOAT and _same(lw, n)


def linear_plan(lw: _Lowerer, n: Node) -> dict[str, Any] | None:
    """What a dense node lowers to, or None: MatMul / Gemm with a constant or DQ(int8 constant) B,
    graphopt::Linear. Reports under ``absorb`` the weight's DequantizeLinear and the input's Q/DQ
    that only this node reads (they become its packed weights and input grid)."""
    if len(n.inputs) < 2 or n.inputs[1] is None:
        return None
    x = n.inputs[0]
    if lw.dt(x) != DType.FLOAT:
        return None
    act, params = "", []
    if n.op_type == "Linear":
        act, params = _s(n.attr("activation", "")), list(n.attr("activation_params", []) or [])
        if (act not in _ACT or params) and not post_act_ok(act, params):
            return None
    trans_b = n.op_type == "Gemm" and bool(int(n.attr("transB", 0)))
    wq = lw._weight_of(n.inputs[1], trans_b)
    if wq is None:
        return None
    w, qinfo = wq
    c = n.inputs[2] if len(n.inputs) > 2 else None
    bias = lw.const(c) if c is not None else None
    if c is not None and bias is None:
        return None
    if n.op_type == "Gemm":
        if int(n.attr("transA", 0)) or lw.rank(x) != 2:
            return None
        alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
        if alpha != 1.0:
            if qinfo is not None:
                return None
            w = w * np.float32(alpha)
        if bias is not None:
            if bias.size not in (1, w.shape[1]) or (bias.ndim == 2 and bias.shape[0] != 1):
                return None
            bias = np.broadcast_to(bias.reshape(-1).astype(np.float32) * np.float32(beta), (w.shape[1],)).copy()
    x, qdq, absorb = lw.static_input(n, x, qinfo)
    dq = qinfo.get("dq") if qinfo is not None else None
    if dq is not None and dq not in absorb and lw.only_use(dq.outputs[0], n) is not None:
        absorb.append(dq)  # the weight's DequantizeLinear is folded into the packed weights
    grid = qinfo if qinfo is not None and qinfo.get("grid") else None
    return {"x": x, "w": w, "b": bias, "act": act, "params": params, "qdq": qdq, "absorb": absorb, "grid": grid}


def dense(lw: _Lowerer, n: Node, prec: str) -> bool:
    """MatMul / Gemm with a constant B, graphopt::Linear: one Linear step (packed GEMM at ``prec``,
    bias and Relu/Gelu in its epilogue; another activation as one element-wise step after it).
    A MatMul of two computed tensors is the batched MatMul step."""
    p = lw.plan(n, linear_plan)
    if p is None:
        return n.op_type == "MatMul" and _matmul(lw, n)
    act, params = p["act"], p["params"]
    post = act not in _ACT or bool(params)
    out = lw.tmp(n.outputs[0].name + "/preact") if post else n.outputs[0]
    origin = [a.label() for a in reversed(p["absorb"])] + [n.label()]
    lw._linear_step(p["x"], p["w"], p["b"], 0 if post else _ACT[act], out, origin, n.name or n.outputs[0].name,
                    prec, p["qdq"], sparse_kernel(n), p["grid"])
    if post:  # Tanh (BERT's pooler), Sigmoid, ...: one element-wise step after the GEMM
        emit_post_act(lw, n, act, params, out, n.outputs[0])
    return True


def _layernorm(lw: _Lowerer, n: Node) -> bool:
    if not _ln_native(lw, n):
        return False
    ins = [n.inputs[0], n.inputs[1], n.inputs[2] if len(n.inputs) > 2 else None]
    lw.emit("LayerNorm", n, ins, [n.outputs[0]], iattrs={"axis": int(n.attr("axis", -1))},
            fattrs={"epsilon": float(n.attr("epsilon", 1e-5))})
    return True


def _softmax(lw: _Lowerer, n: Node, kind: str = "Softmax") -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    r = lw.rank(n.inputs[0])
    axis = int(n.attr("axis", -1 if lw.opset >= 13 else 1))
    if not (axis == -1 or (r is not None and axis == r - 1)):
        return False
    return _same(lw, n, kind, iattrs={"axis": -1})


def _reduce(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    ia: dict[str, Any] = {"keepdims": int(n.attr("keepdims", 1)),
                          "noop_with_empty_axes": int(n.attr("noop_with_empty_axes", 0))}
    if n.attr("axes") is not None:
        ia["axes"] = list(n.attr("axes"))
    if len(n.inputs) > 1 and n.inputs[1] is not None and lw.dt(n.inputs[1]) != DType.INT64:
        return False
    return _same(lw, n, iattrs=ia)


def _window_attrs(n: Node) -> dict[str, Any]:
    ap = {"NOTSET": 0, "SAME_UPPER": 1, "SAME_LOWER": 2, "VALID": 3}[_s(n.attr("auto_pad", "NOTSET"))]
    ia: dict[str, Any] = {"auto_pad": ap, "ceil_mode": int(n.attr("ceil_mode", 0)),
                          "count_include_pad": int(n.attr("count_include_pad", 0))}
    for k in ("strides", "pads", "dilations", "kernel_shape"):
        if n.attr(k) is not None:
            ia[k] = list(n.attr(k))
    return ia


def _conv_weight(lw: _Lowerer, w: Value) -> tuple[np.ndarray, dict | None] | None:
    """fp32 Conv weights [M, Cg, kh, kw]: a constant, or DequantizeLinear(int8, scale per M or per tensor)."""
    c = lw.const(w)
    if c is not None:
        if c.ndim != 4 or c.dtype != np.float32:
            return None
        sc = weight_grid(w)  # a file's int8 grid (absorb-qdq): its integers, recovered exactly
        if sc is None or sc.shape != (c.shape[0],):
            return c, None
        q = np.clip(np.rint(c / sc[:, None, None, None]), -127, 127).astype(np.int8)
        return c, {"q": q, "w_scale": sc, "grid": True}
    iw = lw._int8_weight(w, 4, 0)
    if iw is None:
        return None
    q, scale, p = iw
    return q.astype(np.float32) * scale[:, None, None, None], {"q": q, "w_scale": scale, "dq": p}


def conv_plan(lw: _Lowerer, n: Node) -> dict[str, Any] | None:
    """What the native Conv lowering needs, or None; a static int8 Conv (x through Q/DQ, int8
    weights through DQ) reports the Q/DQ nodes it folds into its GEMM under ``absorb``."""
    if n.op_type == "FusedConv":
        act, params = _s(n.attr("activation", "")), list(n.attr("activation_params", []) or [])
        if act and not post_act_ok(act, params):
            return None
    x, w = n.inputs[0], n.inputs[1]
    wq = _conv_weight(lw, w) if w is not None else None
    if lw.dt(x) != DType.FLOAT or wq is None or lw.rank(x) not in (4, None):
        return None
    pads = n.attr("pads")
    if pads is not None and len(pads) != 4:
        return None
    W, qinfo = wq
    G = int(n.attr("group", 1))
    if W.shape[0] % G:
        return None
    b = None
    if len(n.inputs) > 2 and n.inputs[2] is not None:
        b = lw.const(n.inputs[2])
        if b is None:
            return None
    x, qdq, absorb = lw.static_input(n, x, qinfo)
    grid = qinfo if qinfo is not None and qinfo.get("grid") else None
    return {"x": x, "W": W, "b": b, "G": G, "qdq": qdq, "absorb": absorb, "grid": grid}


def conv(lw: _Lowerer, n: Node, prec: str, act: int = 0, out: Value | Tmp | None = None,
         post: tuple[str, list] | None = None) -> bool:
    """Conv / FusedConv at ``prec``: ``act`` 1 = ReLU in the GEMM epilogue; ``post`` = another
    activation (name, params), inline in the depthwise loop where it can be, else one step after."""
    p = lw.plan(n, conv_plan)
    if p is None:
        return False
    W, G, qdq = p["W"], p["G"], p["qdq"]
    ia = _window_attrs(n)
    M, Cg, kh, kw = W.shape
    dst = out if out is not None else n.outputs[0]
    if G > 1 and Cg == 1 and qdq is None:
        return _depthwise(lw, n, p, ia, ("Relu", []) if act == 1 else post, dst)
    if post is not None:  # GEMM into a temporary, then the activation step
        tmp = lw.tmp(dst.name + "/preact")
        if not conv(lw, n, prec, act=0, out=tmp):
            return False
        emit_post_act(lw, n, post[0], post[1], tmp, dst)
        return True
    mode = {"fp32": 0, "bf16": 1, "int8": 2}[prec]
    ia.update(group=G, kh=kh, kw=kw, M=M, act=act, mode=mode)
    fa: dict[str, float] = {}
    if qdq is not None:
        ia["a_zp"] = qdq["a_zp"]
        fa["a_scale"] = qdq["a_scale"]
    ins = [p["x"]]
    if p["b"] is not None:
        t = Tmp((n.name or n.outputs[0].name) + "/bias")
        lw.consts[t] = np.ascontiguousarray(p["b"].astype(np.float32).reshape(-1))
        ins.append(t)
    s = lw.emit("Conv", n, ins, [out if out is not None else n.outputs[0]], iattrs=ia, fattrs=fa)
    Mg = M // G
    for g in range(G):
        if mode == 2:
            wi = qdq if qdq is not None else p["grid"]
            if wi is not None:  # the calibrated int8 weights as they are: [K, Mg] with per-channel scales
                q = np.ascontiguousarray(wi["q"][g * Mg:(g + 1) * Mg].reshape(Mg, -1).T)
                sc = wi["w_scale"][g * Mg:(g + 1) * Mg].copy()
            else:
                q, sc = quantize_weight_s8(np.ascontiguousarray(W[g * Mg:(g + 1) * Mg].reshape(Mg, -1).T))
            s.weights.append((q, "s8", False, sc))
        else:
            wg = np.ascontiguousarray(W[g * Mg:(g + 1) * Mg].reshape(Mg, Cg * kh * kw))
            s.weights.append((wg, "f32" if mode == 0 else "bf16", True, None))
    what = {0: "fp32", 1: "bf16", 2: "int8 static (QDQ)" if qdq is not None else "int8 dynamic per-tensor act, per-channel s8 weights"}
    s.detail = f"im2col + {what[mode]} GEMM" + (" + relu" if act == 1 else "")
    return True


def _depthwise(lw: _Lowerer, n: Node, p: dict[str, Any], ia: dict[str, Any], post: tuple[str, list] | None,
               dst: Value | Tmp) -> bool:
    """Depthwise conv (one input channel per group) as the direct DepthwiseConv loop, fp32 at
    every precision (memory-bound; no int8/bf16 variant), the activation inline where it can be."""
    W, G = p["W"], p["G"]
    base = n.name or n.outputs[0].name
    wt = Tmp(base + "/dw_weight")
    lw.consts[wt] = np.ascontiguousarray(W.astype(np.float32))
    ins: list = [p["x"], wt, None]
    if p["b"] is not None:
        bt = Tmp(base + "/bias")
        lw.consts[bt] = np.ascontiguousarray(p["b"].astype(np.float32).reshape(-1))
        ins[2] = bt
    inline = depthwise_act(*(post or ("", [])))
    target = dst if inline is not None else lw.tmp(dst.name + "/preact")
    inline = inline or depthwise_act("", [])
    assert inline is not None
    ia = dict(ia, group=G, **inline["iattrs"])
    for k in ("kernel_shape", "count_include_pad", "ceil_mode"):
        ia.pop(k, None)
    s = lw.emit("DepthwiseConv", n, ins, [target], iattrs=ia, fattrs=inline["fattrs"])
    s.detail = "direct depthwise fp32" + (f" + {post[0].lower()}" if post and target is dst else "")
    if target is not dst:
        assert post is not None
        emit_post_act(lw, n, post[0], post[1], target, dst)
    return True


def _pool(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT or lw.rank(n.inputs[0]) not in (4, None):
        return False
    if len(n.outputs) > 1 and (n.outputs[1].num_uses() or n.outputs[1].is_graph_output()):
        return False
    if int(n.attr("storage_order", 0)):
        return False
    ia = _window_attrs(n)
    if len(ia.get("kernel_shape", [])) != 2:
        return False
    lw.emit(n.op_type, n, [n.inputs[0]], [n.outputs[0]], iattrs=ia)
    return True


def _global_pool(lw: _Lowerer, n: Node) -> bool:
    return lw.dt(n.inputs[0]) == DType.FLOAT and _same(lw, n)


def _batchnorm(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT or int(n.attr("training_mode", 0)):
        return False
    if any(o.num_uses() or o.is_graph_output() for o in n.outputs[1:]):
        return False
    if any(lw.dt(v) != DType.FLOAT for v in n.inputs[1:5]):
        return False
    lw.emit("BatchNormalization", n, list(n.inputs[:5]), [n.outputs[0]], fattrs={"epsilon": float(n.attr("epsilon", 1e-5))})
    return True


def _qdq(lw: _Lowerer, n: Node) -> bool:
    if int(n.attr("block_size", 0) or 0) or n.attr("output_dtype"):
        return False
    if lw.dt(n.inputs[1]) != DType.FLOAT:
        return False
    zp = n.inputs[2] if len(n.inputs) > 2 else None
    if n.op_type == "QuantizeLinear":
        if lw.dt(n.inputs[0]) != DType.FLOAT or (zp is not None and lw.dt(zp) not in (DType.UINT8, DType.INT8)):
            return False
    elif lw.dt(n.inputs[0]) not in (DType.UINT8, DType.INT8):
        return False
    return _same(lw, n, iattrs={"axis": int(n.attr("axis", 1))})


# ---------------------------------------------------------------- graphopt-domain fused ops

def _g_gelu(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT:
        return False
    lw.emit("Gelu", n, [n.inputs[0]], [n.outputs[0]], iattrs={"tanh": int(_s(n.attr("approximate", "none")) == "tanh")})
    return True


def _g_bias_gelu(lw: _Lowerer, n: Node) -> bool:
    if lw.dt(n.inputs[0]) != DType.FLOAT or lw.dt(n.inputs[1]) != DType.FLOAT:
        return False
    t = lw.tmp(n.outputs[0].name + "/biased")
    lw.emit("Add", n.name + "/add", [n.inputs[0], n.inputs[1]], [t], origin=[n.label()])
    lw.emit("Gelu", n, [t], [n.outputs[0]], iattrs={"tanh": int(_s(n.attr("approximate", "none")) == "tanh")})
    return True


def _g_skip_ln(lw: _Lowerer, n: Node) -> bool:
    ins = list(n.inputs) + [None] * (5 - len(n.inputs))
    x, skip, gamma, beta, bias = ins[:5]
    if any(lw.dt(v) != DType.FLOAT for v in (x, skip, gamma)) or lw.const(gamma) is None or lw.const(gamma).ndim != 1:
        return False
    outs = [n.outputs[0], n.outputs[1] if len(n.outputs) > 1 and (n.outputs[1].num_uses() or n.outputs[1].is_graph_output()) else None]
    if bias is not None:
        t = lw.tmp(n.outputs[0].name + "/biased")
        lw.emit("Add", n.name + "/bias", [x, bias], [t], origin=[n.label()])
        x = t
    s = lw.emit("LayerNorm", n, [x, gamma, beta, skip], outs, iattrs={"axis": -1},
                fattrs={"epsilon": float(n.attr("epsilon", 1e-5))})
    s.detail = "skip+layernorm"
    return True


def mha_plan(lw: _Lowerer, n: Node) -> dict[str, Any] | None:
    """What the native MultiHeadAttention lowering needs, or None when it does not apply.

    A statically quantized QKV projection (x through Q/DQ, the weight through DQ of int8)
    reports the Q/DQ nodes it folds into its GEMM under ``absorb``.
    """
    ins = list(n.inputs) + [None] * (5 - len(n.inputs))
    x, w, b, kpm, bias = ins[:5]
    wq = lw._weight_of(w) if w is not None else None
    if lw.dt(x) != DType.FLOAT or wq is None:
        return None
    W, qinfo = wq
    heads = int(n.attr("num_heads"))
    if W.shape[1] % 3 or (W.shape[1] // 3) % heads:
        return None
    if b is not None and lw.const(b) is None:
        return None
    if bias is not None:
        bs = _static_shape(lw, bias)
        if lw.dt(bias) != DType.FLOAT or bs is None or len(bs) != 4 or bs[1] not in (1, heads):  # per head: T5
            return None
    if kpm is not None and lw.dt(kpm) not in (DType.INT64, DType.INT32, DType.BOOL):
        return None
    x, qdq, absorb = lw.static_input(n, x, qinfo)
    grid = qinfo if qinfo is not None and qinfo.get("grid") else None
    return {"x": x, "W": W, "b": lw.const(b), "kpm": kpm, "bias": bias, "heads": heads, "qdq": qdq, "absorb": absorb,
            "grid": grid}


def _g_mha(lw: _Lowerer, n: Node, prec: str) -> bool:
    p = lw.plan(n, mha_plan)
    if p is None:
        return False
    x, W, kpm, bias, heads = p["x"], p["W"], p["kpm"], p["bias"], p["heads"]
    hidden = W.shape[1] // 3
    scale = float(n.attr("scale", 0.0)) or 1.0 / math.sqrt(hidden // heads)
    base = n.name or n.outputs[0].name
    qkv = lw.tmp(base + "/qkv")
    lw._linear_step(x, W, p["b"], 0, qkv, [n.label()], base + "/qkv", prec, p["qdq"], sparse_kernel(n), p["grid"])
    mask = None
    if kpm is not None:
        mask = lw.tmp(base + "/mask")
        lw.emit("PaddingMask", base + "/mask", [kpm], [mask], fattrs={"value": float(n.attr("mask_filter_value", -10000.0))},
                origin=[n.label()])
    if bias is not None:
        if mask is None:
            mask = bias
        else:
            m2 = lw.tmp(base + "/mask2")
            lw.emit("Add", base + "/mask2", [mask, bias], [m2], origin=[n.label()])
            mask = m2
    bf16 = int(lw.attention_bf16(n))
    s = lw.emit("Attention", base, [qkv, mask], [n.outputs[0]], fattrs={"scale": scale},
                iattrs={"heads": heads, "packed": 1, "in_bsh": 1, "out_bsh": 1, "bf16": bf16}, origin=[n.label()])
    s.detail = f"fused attention kernel on packed QKV ({'bf16' if bf16 else 'fp32'} products, read in place)"
    return True


def _g_fused_conv(lw: _Lowerer, n: Node, prec: str) -> bool:
    act, params = _s(n.attr("activation", "")), list(n.attr("activation_params", []) or [])
    if act in ("", "Relu"):
        return conv(lw, n, prec, act=int(act == "Relu"))  # conv_plan checks the rest
    return conv(lw, n, prec, post=(act, params))


def _g_embed_ln(lw: _Lowerer, n: Node, prec: str) -> bool:
    ins = list(n.inputs) + [None] * (8 - len(n.inputs))
    ids, seg, word, pos, segw, gamma, beta, pos_ids = ins[:8]
    if lw.dt(ids) not in _INT_T or lw.dt(word) != DType.FLOAT or lw.const(gamma) is None or lw.const(gamma).ndim != 1:
        return False
    base = n.name or n.outputs[0].name
    e = lw.tmp(base + "/word")
    table = lw.const(word)
    if prec == "int8" and table is not None and table.ndim == 2 and table.size >= (1 << 20):
        # int8 rows with one scale each (weight-only, like the other weights of an int8 model):
        # the table is most of a small encoder's memory (MiniLM: 47 MB of fp32).
        amax = np.abs(table).max(axis=1)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q, sc = Tmp(base + "/word_s8", DType.INT8), Tmp(base + "/word_scale")
        lw.consts[q] = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
        lw.consts[sc] = scale
        s = lw.emit("Gather", base + "/word", [q, ids, sc], [e], iattrs={"axis": 0, "dequant": 1}, origin=[n.label()])
        s.detail = "int8 rows, per-row scales"
    else:
        lw.emit("Gather", base + "/word", [word, ids], [e], iattrs={"axis": 0}, origin=[n.label()])
    if pos_ids is None:
        pos_ids = lw.tmp(base + "/pos_ids", DType.INT64)
        lw.emit("PositionIds", base + "/pos_ids", [ids], [pos_ids], origin=[n.label()])
    p = lw.tmp(base + "/pos")
    lw.emit("Gather", base + "/pos", [pos, pos_ids], [p], iattrs={"axis": 0}, origin=[n.label()])
    acc = lw.tmp(base + "/sum")
    lw.emit("Add", base + "/sum", [e, p], [acc], origin=[n.label()])
    if seg is not None and segw is not None:
        sg = lw.tmp(base + "/seg")
        lw.emit("Gather", base + "/seg", [segw, seg], [sg], iattrs={"axis": 0}, origin=[n.label()])
        lw.emit("LayerNorm", n, [acc, gamma, beta, sg], [n.outputs[0]], iattrs={"axis": -1},
                fattrs={"epsilon": float(n.attr("epsilon", 1e-12))})
    else:
        lw.emit("LayerNorm", n, [acc, gamma, beta, None], [n.outputs[0]], iattrs={"axis": -1},
                fattrs={"epsilon": float(n.attr("epsilon", 1e-12))})
    return True
