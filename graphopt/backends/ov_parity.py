"""fp32/bf16 parity of graphopt's OpenVINO export with onnxruntime on the
models the project measures: MiniLM (real weights), DistilBERT and ResNet-50
(random weights).

``python -m graphopt.backends.ov_parity`` prints, per model and precision,
max|OpenVINO - onnxruntime| and that divided by max|onnxruntime| (the
"relative" figure the tests bound by 1e-4 in fp32), plus the cosine of the
flattened outputs.

>>> rows = measure(["resnet50"])   # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ParityRow", "measure", "MODELS"]

MODELS = ("minilm", "distilbert", "resnet50")

_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Graph compilers fuse operators so that fewer kernels touch memory.",
    "She planted tomatoes in the garden after the last frost of spring.",
    "Quantization trades a little accuracy for a large gain in speed.",
]


@dataclass(frozen=True)
class ParityRow:
    model: str
    precision: str
    max_abs: float
    max_rel: float
    cosine: float

    def __str__(self) -> str:
        return (f"{self.model:11s} {self.precision:5s} max|diff| {self.max_abs:.3g}  "
                f"max|diff|/max|ref| {self.max_rel:.3g}  cosine {self.cosine:.7f}")


def _case(name: str) -> tuple[Path, dict[str, np.ndarray]]:
    from ..models import distilbert_onnx, minilm_onnx, sample_feeds

    if name == "minilm":
        spec = minilm_onnx()
        return spec.path, sample_feeds(spec, _SENTENCES, seq=128)
    if name == "distilbert":
        spec = distilbert_onnx()
        feeds = sample_feeds(spec, batch=2, seq=128)
        feeds["attention_mask"][1, 64:] = 0
        return spec.path, feeds
    if name == "resnet50":
        from ..models.resnet import resnet50_onnx

        spec = resnet50_onnx()
        return spec.path, {"image": np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from .._ort import run_ort

    return run_ort(path, feeds)


def measure(models: Sequence[str] = MODELS, precisions: Sequence[str] = ("fp32", "bf16")) -> list[ParityRow]:
    """Export each model, run it in OpenVINO at each precision and compare with onnxruntime fp32."""
    from ..io import load
    from .openvino import compile_for_cpu, export_openvino, infer

    rows = []
    for name in models:
        path, feeds = _case(name)
        want = _ort(path, feeds)
        with tempfile.TemporaryDirectory() as tmp:
            xml = export_openvino(load(path), Path(tmp) / f"{name}.xml")
            for prec in precisions:
                got = infer(compile_for_cpu(xml, prec), feeds)
                abs_ = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
                rel = max(float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want))
                cos = min(float(np.dot(g.ravel(), w.ravel()) / (np.linalg.norm(g) * np.linalg.norm(w)))
                          for g, w in zip(got, want))
                rows.append(ParityRow(name, prec, abs_, rel, cos))
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    for row in measure(sys.argv[1:] or MODELS):
        sys.stdout.write(f"{row}\n")
