"""Export a trained torch model (a distilled student, a QAT model) to ONNX that graphopt loads.

The TorchScript exporter is used (opset 17, dynamic batch and sequence): it writes the
fake-quant ops of a QAT model as QuantizeLinear/DequantizeLinear pairs, which the dynamo
exporter does not. The file is written atomically.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..io.atomic import atomic_output

__all__ = ["export_onnx"]


def export_onnx(model: Any, path: str | os.PathLike, example: dict[str, np.ndarray], *,
                output_names: tuple[str, ...] = ("logits",), opset: int = 17) -> Path:
    """Write ``model(**example)`` as ONNX; every 2-D input gets dims (batch, seq), outputs (batch, ...)."""
    import torch

    names = tuple(example)
    if not names:
        raise GraphoptError("export_onnx: the example feeds are empty")
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    axes: dict[str, dict[int, str]] = {n: ({0: "batch", 1: "seq"} if a.dim() == 2 else {0: "batch"})
                                        for n, a in zip(names, args)}
    for o in output_names:
        axes[o] = {0: "batch"}

    class _Positional(torch.nn.Module):  # the exporter passes inputs positionally; the model takes keywords
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *xs: Any) -> Any:
            from .distill import logits_of
            return logits_of(self.inner(**dict(zip(names, xs))))

    was_training = model.training
    model.eval()
    try:
        with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Positional(), args, str(tmp), input_names=list(names), output_names=list(output_names),
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
    finally:
        model.train(was_training)
    return Path(path)
