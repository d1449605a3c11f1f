"""``quantize-dynamic``: int8 weights offline, activation ranges computed at run time.

MatMul(X, W[K,N]) -- and Gemm(X, W, b) in its ``X @ W (+ b)`` form (transB folded into the
weight) -- becomes, with ``contrib=True`` (default), onnxruntime's
fused ``com.microsoft::DynamicQuantizeMatMul(X, Wq, w_scale, w_zp)``; with
``contrib=False`` standard ONNX ``DynamicQuantizeLinear`` + ``MatMulInteger`` +
Cast + Mul (what any ONNX runtime runs). Weights are symmetric s8,
per output column (``per_channel``) or per tensor. Embedding tables are
quantized weight-only per row as in static mode.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType, Model, TensorType, Value
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.annotate import annotate_node
from graphopt.quant.config import QuantConfig
from graphopt.quant.specs import PRECISION, QUANT_INPUTS, QType, QuantSpec
from graphopt.quant.weights import quantize_weight

from .insert_qdq import InsertQDQPass

__all__ = ["DynamicQuantPass"]


@register_pass
class DynamicQuantPass(Pass):
    """``DynamicQuantPass(QuantConfig(mode="dynamic"), contrib=True)``."""

    name = "quantize-dynamic"
    description = "dynamic int8 quantization of MatMul weights (runtime activation ranges)"

    def __init__(self, config: QuantConfig | None = None, *, contrib: bool = True) -> None:
        self.config = config or QuantConfig(mode="dynamic")
        self.contrib = contrib

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        cfg = self.config
        cfg.validate(model)
        g = model.graph
        n_mm = n_gemm = 0
        wspec = QuantSpec(QType.S8, symmetric=True, per_channel=cfg.per_channel_dynamic)
        for node in list(g):
            plan, specs = annotate_node(node, cfg)
            if node.op_type == "Gather" and specs:
                node.meta[QUANT_INPUTS] = specs  # embeddings: materialised by insert-qdq below
                continue
            w = node.inputs[1] if len(node.inputs) > 1 else None
            if node.op_type not in ("MatMul", "Gemm") or plan.precision != "int8" or w is None or w.const is None \
                    or w.const.ndim != 2 or node.inputs[0].const is not None:
                continue
            bias = _gemm_bias(node)
            if node.op_type == "Gemm" and bias is False:
                continue  # transA, alpha/beta != 1 or a non-vector C: left in float
            wf = w.const.astype(np.float32)
            if node.op_type == "Gemm" and node.attr("transB", 0):
                wf = np.ascontiguousarray(wf.T)
            spec = wspec.with_(axis=1 if wspec.per_channel else None)
            q, qp = quantize_weight(wf, spec)
            qv = const(g, f"{w.name}_quantized", q)
            sv = const(g, f"{w.name}_scale", qp.scale.astype(np.float32).reshape(-1))
            zv = const(g, f"{w.name}_zero_point", np.zeros(np.size(qp.scale), np.int8))
            out = node.output
            ft = TensorType(DType.FLOAT, out.shape)
            b = bias if isinstance(bias, Value) else None
            if self.contrib:
                new = add_node(g, node, "DynamicQuantizeMatMul", [node.inputs[0], qv, sv, zv] + ([b] if b else []),
                               domain="com.microsoft", name=f"{node.name or 'MatMul'}_dynq", out_type=ft)
            else:
                dql = add_node(g, node, "DynamicQuantizeLinear", [node.inputs[0]], num_outputs=3,
                               out_name=f"{out.name}_x")
                xq, xs, xz = dql.outputs
                mmi = add_node(g, node, "MatMulInteger", [xq, qv, xz, zv], out_name=f"{out.name}_i32",
                               out_type=TensorType(DType.INT32, out.shape))
                cast = add_node(g, node, "Cast", [mmi.output], {"to": DType.FLOAT.value}, out_type=ft)
                m1 = add_node(g, node, "Mul", [cast.output, xs], out_type=ft)
                new = add_node(g, node, "Mul", [m1.output, sv], out_type=ft)
                if b is not None:
                    new.meta[PRECISION] = "int8"
                    new = add_node(g, node, "Add", [new.output, b], out_type=ft)
            new.meta[PRECISION] = "int8"
            out.replace_all_uses_with(new.output, outputs=True)
            g.remove(node)
            if w.num_uses() == 0 and w.is_initializer:
                g.remove_initializer(w)
            if node.op_type == "Gemm":
                n_gemm += 1
            else:
                n_mm += 1
        emb = InsertQDQPass().run(model, ctx).stats.get("embeddings", 0)
        return PassResult(n_mm + n_gemm + emb > 0, {"matmuls": n_mm, "gemms": n_gemm, "embeddings": emb})


def _gemm_bias(node) -> Value | None | bool:
    """A Gemm's bias as a [N] value for ``X @ W + b``, None without one, False if the Gemm is not
    that form (transA, alpha or beta != 1, a C that is not a vector). MatMul: None."""
    if node.op_type != "Gemm":
        return None
    if node.attr("transA", 0) or float(node.attr("alpha", 1.0)) != 1.0:
        return False
    c = node.inputs[2] if len(node.inputs) > 2 else None
    if c is None:
        return None
    if float(node.attr("beta", 1.0)) != 1.0 or c.shape is None or len(c.shape) != 1:
        return False
    return c
