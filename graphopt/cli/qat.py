"""``graphopt qat``: quantization-aware training, QDQ ONNX out; see :mod:`._train`."""

from __future__ import annotations

import argparse

from ._train import add_common, run_qat

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("qat", help="quantization-aware training (int8 fake-quant from a QuantConfig); writes QDQ ONNX")
    q.add_argument("--model", required=True, help="a transformers folder, a .pt nn.Module, or 'bbc'")
    q.add_argument("--config", help="QuantConfig YAML/JSON (default: linear layers int8, attention matmuls "
                                    "and embeddings float)")
    q.add_argument("--teacher", help="also distil from this model (KL on logits); default: labels only")
    q.add_argument("--lr", type=float, default=2e-5, help="peak learning rate")
    add_common(q)
    q.set_defaults(func=run_qat)
