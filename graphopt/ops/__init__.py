"""The ``graphopt`` domain: fused ops with a written spec, a numpy reference,
a shape rule, a lowering to onnxruntime and a decomposition to standard ONNX.

=====================  ===========================================================
op                     what it computes (full spec: ``OPS[op].spec``)
=====================  ===========================================================
``Linear``             act(MatMul(X, W) + B)
``Gelu``               GELU, erf or tanh approximation
``BiasGelu``           Gelu(X + B)
``SkipLayerNorm``      LayerNorm(X + Skip + Bias), and the sum
``EmbedLayerNorm``     LayerNorm(word[ids] + pos[pos_ids] + segment[seg_ids])
``MultiHeadAttention`` BERT self-attention, packed QKV, additive / key-padding mask
``FusedConv``          act(Conv(X, W, B))
``RMSNorm``            X / sqrt(mean(X^2) + eps) * Gamma
``SkipRMSNorm``        RMSNorm(X + Skip + Bias), and the sum
``Silu``, ``SiluMul``  X * Sigmoid(X); Silu(gate) * up of a packed gate|up projection
``RotaryEmbedding``    X * Cos + rotate_half(X) * Sin
=====================  ===========================================================

LayerNorm itself is ONNX ``LayerNormalization`` (opset 17+).

Public functions for exporters:

- :func:`lower_to_onnxruntime(model) <graphopt.ops.lowering.lower_to_onnxruntime>` — map every
  graphopt op to com.microsoft contrib ops / standard ONNX (the ``lower-to-onnxruntime`` pass).
- :func:`decompose_all(model) <graphopt.ops.lowering.decompose_all>` — rewrite every graphopt
  op as standard ONNX only (the ``decompose-graphopt-ops`` pass); what the OpenVINO exporter calls.
- :func:`reference` — run one op's numpy reference.

>>> import numpy as np
>>> from graphopt.ops import reference
>>> reference("BiasGelu", [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)])[0].shape
(2, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import activations, attention, decoder, linear, norms  # noqa: F401  (register the ops)
from ._registry import DOMAIN, OPS, Emitter, OpDef, get_op, register_op
from .lowering import decompose_all, lower_to_onnxruntime, replace_with

__all__ = ["DOMAIN", "OPS", "OpDef", "Emitter", "get_op", "register_op", "reference", "lower_to_onnxruntime",
           "decompose_all", "replace_with"]


def reference(op_type: str, inputs: Sequence[np.ndarray | None], **attrs: Any) -> list[np.ndarray]:
    """Run the numpy reference of ``graphopt::op_type`` (attributes default as in its spec)."""
    op = get_op(op_type)
    full = {k: attrs.get(k, d) for k, d in op.attrs.items()}
    missing = [k for k, v in full.items() if v is None]
    if missing:
        from ..errors import UnsupportedError

        raise UnsupportedError(f"{DOMAIN}::{op_type}: required attribute(s) {missing} not given")
    return op.reference(list(inputs), full)
