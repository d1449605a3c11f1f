"""``quantize-weight-only``: int8 (per-channel) or int4 (group-wise, RTN) weights, float activations.

int8: ``DequantizeLinear(Wq, scale, axis=1) -> MatMul`` (standard ONNX).
int4: onnxruntime's ``com.microsoft::MatMulNBits`` (bits=4, block_size =
``config.group_size``), which reads the packed weight directly.
With ``config.gptq`` and a layer input carrying ``meta[GRAM]`` (from
``calibrate(kind="gram")``), rounding uses GPTQ error compensation instead of
round-to-nearest.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import DType, Model, TensorType
from graphopt.ir.mapped import release_pages
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.annotate import annotate_node
from graphopt.quant.config import QuantConfig
from graphopt.quant.gptq import GptqFactor, gptq_factor, gptq_quantize
from graphopt.quant.specs import GRAM, PRECISION, QUANT_INPUTS, QType, QuantSpec
from graphopt.quant.weights import pack_int4, quantize_int4_blocks, quantize_weight

from .insert_qdq import InsertQDQPass

__all__ = ["WeightOnlyQuantPass"]


@register_pass
class WeightOnlyQuantPass(Pass):
    """``WeightOnlyQuantPass(QuantConfig(mode="weight-only", weight_bits=4, group_size=32))``."""

    name = "quantize-weight-only"
    description = "weight-only int8/int4 (group-wise RTN) quantization of MatMul weights"

    def __init__(self, config: QuantConfig | None = None, *, only_inputs: frozenset[str] | None = None) -> None:
        self.config = config or QuantConfig(mode="weight-only")
        self.only_inputs = only_inputs  # GPTQ rounds: only the MatMuls reading these activations

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        cfg = self.config
        cfg.validate(model)
        g = model.graph
        count = 0
        factors: dict[int, GptqFactor] = {}  # by input value: q/k/v (gate/up) share one Gram and its factor
        for node in list(g):
            plan, specs = annotate_node(node, cfg)
            if node.op_type == "Gather" and specs:
                node.meta[QUANT_INPUTS] = specs
                continue
            w = node.inputs[1] if len(node.inputs) > 1 else None
            if node.op_type != "MatMul" or plan.precision != "int8" or w is None or w.const is None \
                    or w.const.ndim != 2 or node.inputs[0].const is not None \
                    or self.only_inputs is not None and node.inputs[0].name not in self.only_inputs:
                continue
            wf = np.asarray(w.const, np.float32)  # no copy of an fp32 (possibly mapped) weight
            gram = self._factor(node.inputs[0], wf.shape[0], factors) if cfg.gptq else None
            if cfg.weight_bits == 8 and gram is not None:
                qc, sc = gptq_quantize(wf, gram, bits=8, group=wf.shape[0])
                dq = add_node(g, node, "DequantizeLinear",
                              [const(g, f"{w.name}_quantized", qc), const(g, f"{w.name}_scale", sc.reshape(-1)),
                               const(g, f"{w.name}_zero_point", np.zeros(qc.shape[1], np.int8))], {"axis": 1},
                              out_name=f"{w.name}_dequantized", out_type=TensorType(DType.FLOAT, wf.shape))
                node.set_input(1, dq.output)
                node.meta[PRECISION] = "int8-weight"
            elif cfg.weight_bits == 8:
                spec = QuantSpec(QType.S8, symmetric=True, per_channel=True, axis=1,
                                 observer=plan.weight.observer)
                q, qp = quantize_weight(wf, spec)
                dq = add_node(g, node, "DequantizeLinear",
                              [const(g, f"{w.name}_quantized", q), const(g, f"{w.name}_scale", qp.scale),
                               const(g, f"{w.name}_zero_point", np.zeros(q.shape[1], np.int8))], {"axis": 1},
                              out_name=f"{w.name}_dequantized", out_type=TensorType(DType.FLOAT, wf.shape))
                node.set_input(1, dq.output)
                node.meta[PRECISION] = "int8-weight"
            else:
                k, n = wf.shape
                if gram is not None:
                    packed, scales = pack_int4(*gptq_quantize(wf, gram, bits=4, group=cfg.group_size),
                                               cfg.group_size)
                else:
                    packed, scales, _ = quantize_int4_blocks(wf, cfg.group_size, dequantized=False)
                out = node.output
                new = add_node(g, node, "MatMulNBits",
                               [node.inputs[0], const(g, f"{w.name}_int4", packed), const(g, f"{w.name}_scales", scales)],
                               {"K": k, "N": n, "bits": 4, "block_size": cfg.group_size}, domain="com.microsoft",
                               name=f"{node.name or 'MatMul'}_nbits", out_type=TensorType(DType.FLOAT, out.shape))
                new.meta[PRECISION] = "int4-weight"
                out.replace_all_uses_with(new.output, outputs=True)
                g.remove(node)
            if w.num_uses() == 0 and w.is_initializer:
                g.remove_initializer(w)
                release_pages(w.const)  # streamed: the fp32 weight's pages leave memory as we go
            count += 1
        factors.clear()
        emb = InsertQDQPass().run(model, ctx).stats.get("embeddings", 0)
        return PassResult(count + emb > 0, {"matmuls": count, "embeddings": emb})

    @staticmethod
    def _factor(x, k: int, factors: dict[int, GptqFactor]) -> GptqFactor | None:
        """GPTQ's factor of ``x``'s Gram (``meta[GRAM]``), made once per input: the Gram is consumed
        (taken off the value and factored in place), so a layer's working set is that one matrix."""
        f = factors.get(id(x))
        if f is None:
            gram = x.meta.get(GRAM)
            if gram is None or gram.shape != (k, k):
                return None
            x.meta.pop(GRAM)
            f = factors[id(x)] = gptq_factor(gram, overwrite=True)
        return f if f.u.shape == (k, k) else None
