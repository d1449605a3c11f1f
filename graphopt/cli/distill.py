"""``graphopt distill``: teacher -> student (fewer layers, or pruned heads/neurons); see :mod:`._train`."""

from __future__ import annotations

import argparse

from ._train import add_common, run_distill

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a torch teacher into a smaller student (fewer layers, or the heads "
                                       "and FFN neurons graphopt.prune keeps); writes ONNX")
    p.add_argument("--teacher", required=True, help="a transformers folder, a .pt nn.Module, or 'bbc'")
    p.add_argument("--student-layers", type=int, default=0, help="keep this many layers (DistilBERT's init)")
    p.add_argument("--heads", type=float, default=0.0, help="prune this fraction of heads first (graphopt.prune)")
    p.add_argument("--ffn", type=float, default=0.0, help="prune this fraction of FFN neurons first")
    p.add_argument("--calib", help="calibration for --heads/--ffn (default: the first 64 rows of --data)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of the KL term")
    p.add_argument("--alpha-hidden", type=float, default=1.0, help="weight of the hidden-state MSE")
    p.add_argument("--alpha-ce", type=float, default=0.0, help="weight of cross-entropy on the data's labels")
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the student's embeddings fixed")
    add_common(p)
    p.set_defaults(func=run_distill)
