"""Per-node sensitivity of a quantized (QDQ) model, for choosing fp32 fallbacks.

For each quantized node, the activation Q/DQ pairs feeding it are bypassed
(the node reads the float value again, weights stay int8) and the model
output error against fp32 is measured; the drop in error is the node's
sensitivity. In transformers the activation quantization dominates, so this
leave-one-out measure ranks the nodes worth keeping in fp32. Each trial edits
the IR in place and restores it, so no copy of the model is needed.

>>> sens = node_sensitivity(q_model, fp32_outputs_fn, feeds)          # doctest: +SKIP
>>> QuantConfig(nodes=fallback_overrides(sens, k=3))                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..ir import Model, Node, Value
from .specs import PRECISION

__all__ = ["node_sensitivity", "fallback_overrides", "output_error"]

logger = logging.getLogger(__name__)


def _act_bypass(node: Node) -> list[tuple[int, Value]]:
    """(input index, float source) for each activation DQ input of ``node``."""
    out = []
    for i, v in enumerate(node.inputs):
        dq = v.producer() if v is not None else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.inputs[0].const is not None:
            continue
        q = dq.inputs[0].producer()
        if q is not None and q.op_type == "QuantizeLinear":
            out.append((i, q.inputs[0]))
    return out


def output_error(reference: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    """Mean relative L2 error over output arrays."""
    return float(np.mean([np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-12) for r, g in zip(reference, got)]))


def node_sensitivity(quant: Model, reference: Sequence[np.ndarray], feeds: dict[str, np.ndarray], *,
                     run: Callable[[Model, dict[str, np.ndarray]], Sequence[np.ndarray]] | None = None,
                     nodes: Sequence[str] | None = None) -> dict[str, float]:
    """Error reduction when each named quantized node reads float activations (larger = more sensitive).

    ``reference`` holds the fp32 model's outputs on ``feeds``; ``run`` executes a model (default:
    onnxruntime without graph rewrites).
    """
    if run is None:
        from .._ort import run_ort

        def run(m: Model, f: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
            return run_ort(m, f, optimize=True)

    base = output_error(reference, run(quant, feeds))
    result: dict[str, float] = {}
    for node in list(quant.graph):
        if not node.name or str(node.meta.get(PRECISION, "")) != "int8" or (nodes is not None and node.name not in nodes):
            continue
        bypass = _act_bypass(node)
        if not bypass:
            continue
        saved = [(i, node.inputs[i]) for i, _ in bypass]
        try:
            for i, src in bypass:
                node.set_input(i, src)
            result[node.name] = base - output_error(reference, run(quant, feeds))
        finally:
            for i, v in saved:
                node.set_input(i, v)
        logger.info("sensitivity %s: %.5f", node.name, result[node.name])
    return dict(sorted(result.items(), key=lambda kv: -kv[1]))


def fallback_overrides(sensitivity: dict[str, float], k: int) -> dict[str, str]:
    """``QuantConfig.nodes`` entries keeping the ``k`` most sensitive nodes in fp32."""
    return {name: "fp32" for name, s in list(sensitivity.items())[:k] if s > 0}
