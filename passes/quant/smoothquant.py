"""``smoothquant``: migrate activation outliers into the weights (Xiao et al., 2023).

For an activation X feeding linear layers with constant weights W[K, N], per
input channel j: ``s_j = max|X_j|^alpha / max|W_j,:|^(1-alpha)``; then
``X' = X / s`` and ``W'_j,: = s_j W_j,:`` so ``X' W' = X W`` exactly, while X'
has flatter channels and quantizes with less error. Needs the per-channel
activation max (``value.meta[CHANNEL_MAX]``, from
``calibrate(..., kind="channel_absmax")``).

The ``1/s`` goes into the producing LayerNorm's gamma and beta (an RMSNorm's
gamma) when the norm output feeds only the smoothed layers; otherwise (a post-LN BERT
block also feeds the residual Add) a ``Mul(X, 1/s)`` is inserted for the
linear layers only.
"""

from __future__ import annotations

import logging

import numpy as np

from graphopt.ir import DType, MetaKey, Model, Node, TensorType, Value
from graphopt.pm import Pass, PassContext, PassResult, register_pass
from graphopt.quant._build import add_node, const
from graphopt.quant.specs import CHANNEL_MAX

__all__ = ["SmoothQuantPass", "smoothquant_targets", "SMOOTHED_MAX"]

logger = logging.getLogger(__name__)

#: value meta: per-channel |x| max after smoothing (CHANNEL_MAX is consumed, so a rerun is a no-op).
SMOOTHED_MAX: MetaKey[np.ndarray] = MetaKey("smoothed_channel_max")


def _linear_consumers(x: Value) -> list[tuple[Node, int]]:
    """(node, weight input index) of linear layers reading ``x`` as their activation."""
    out = []
    for node, i in x.uses():
        if i != 0:
            continue
        if node.op_type == "MatMul" or node.op in ("graphopt::FusedLinear", "graphopt::Linear"):
            w = node.inputs[1] if len(node.inputs) > 1 else None
            if w is not None and w.const is not None and w.const.ndim == 2 and not node.attr("transB", 0):
                out.append((node, 1))
        elif node.op_type == "Gemm" and not node.attr("transA", 0):
            w = node.inputs[1]
            if w.const is not None and not node.attr("transB", 0):
                out.append((node, 1))
    return out


def smoothquant_targets(model: Model) -> list[str]:
    """Activations worth a per-channel calibration for SmoothQuant (inputs of const-weight linears)."""
    out: dict[str, None] = {}
    for v in model.graph.all_values():
        if v.const is None and _linear_consumers(v):
            out[v.name] = None
    return list(out)


@register_pass
class SmoothQuantPass(Pass):
    """``SmoothQuantPass(alpha=0.5)``; run before the (range) calibration of static quantization.

    >>> SmoothQuantPass(alpha=0.5).run(model, PassContext())   # doctest: +SKIP
    PassResult(modified=True, stats={'smoothed': 24, 'folded_into_layernorm': 0, 'muls': 24})
    """

    name = "smoothquant"
    #: the activations it needs per-channel statistics of (calibrated before the pass runs)
    targets = staticmethod(smoothquant_targets)
    description = "migrate activation outliers into weights (needs per-channel activation max)"

    def __init__(self, alpha: float = 0.5, *, min_scale: float = 1e-2, max_scale: float = 1e2) -> None:
        self.alpha = alpha
        self.min_scale, self.max_scale = min_scale, max_scale

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats = {"smoothed": 0, "folded_into_layernorm": 0, "muls": 0}
        for x in list(g.all_values()):
            amax = x.meta.get(CHANNEL_MAX)
            if amax is None:
                continue
            cons = _linear_consumers(x)
            if not cons or any(n.inputs[i].const.shape[0] != amax.shape[0] for n, i in cons):
                continue
            wmax = np.max([np.abs(n.inputs[i].const).max(axis=1) for n, i in cons], axis=0)
            s = np.power(np.maximum(amax, 1e-5), self.alpha) / np.power(np.maximum(wmax, 1e-5), 1 - self.alpha)
            s = np.clip(s, self.min_scale, self.max_scale).astype(np.float32)
            for n, i in cons:
                w = n.inputs[i]
                new = const(g, f"{w.name}_smoothed", (w.const * s[:, None]).astype(w.const.dtype))
                n.set_input(i, new)
                if w.num_uses() == 0 and w.is_initializer:
                    g.remove_initializer(w)
            x.meta.pop(CHANNEL_MAX, None)
            if self._fold_into_layernorm(x, s, {id(n) for n, _ in cons}):
                stats["folded_into_layernorm"] += 1
                x.meta[SMOOTHED_MAX] = amax / s
            else:
                first = min((n for n, _ in cons), key=lambda n: _position(g, n))
                inv = const(g, f"{x.name}_smooth_inv", (1.0 / s).astype(np.float32))
                mul = add_node(g, first, "Mul", [x, inv], out_name=f"{x.name}_smoothed",
                               out_type=TensorType(DType.FLOAT, x.shape))
                for n, _ in cons:
                    n.set_input(0, mul.output)
                mul.output.meta[SMOOTHED_MAX] = amax / s
                stats["muls"] += 1
            stats["smoothed"] += 1
        return PassResult(stats["smoothed"] > 0, stats)

    @staticmethod
    def _fold_into_layernorm(x: Value, s: np.ndarray, smoothed: set[int]) -> bool:
        ln = x.producer()
        if ln is None or x.index() != 0 or x.is_graph_output():
            return False
        # (gamma, beta) input positions of the norms whose output is linear in gamma (and beta)
        where = _NORM_GAMMA_BETA.get((ln.domain, ln.op_type))
        if where is None:
            return False
        if any(id(n) not in smoothed and not (n.op_type == "Shape" and n.domain == "") for n in x.consumers()):
            return False  # another consumer (e.g. a residual Add) needs the unscaled X; a Shape reads no values
        gi, bi = where
        gamma = ln.inputs[gi] if len(ln.inputs) > gi else None
        beta = ln.inputs[bi] if bi is not None and len(ln.inputs) > bi else None
        if gamma is None or gamma.const is None or gamma.num_uses() != 1 or \
                (beta is not None and (beta.const is None or beta.num_uses() != 1)):
            return False
        g = ln.graph
        ln.set_input(gi, const(g, f"{gamma.name}_smoothed", (gamma.const / s).astype(gamma.const.dtype)))
        if beta is not None:
            ln.set_input(bi, const(g, f"{beta.name}_smoothed", (beta.const / s).astype(beta.const.dtype)))
        for old in (gamma, beta):
            if old is not None and old.num_uses() == 0 and old.is_initializer:
                g.remove_initializer(old)
        return True


#: (domain, op) -> (gamma input, beta input or None): LayerNormalization and graphopt's RMSNorms.
_NORM_GAMMA_BETA: dict[tuple[str, str], tuple[int, int | None]] = {
    ("", "LayerNormalization"): (1, 2),
    ("graphopt", "RMSNorm"): (1, None),
    ("graphopt", "SkipRMSNorm"): (2, None),
}


def _position(g, node: Node) -> int:
    for i, n in enumerate(g):
        if n is node:
            return i
    return 1 << 30
