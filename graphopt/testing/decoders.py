"""Tiny LLaMA-style decoders (random weights) exported to ONNX, for the decoder fusion tests.

``decoder_onnx("llama", dynamo=False, attn="sdpa")`` builds a 2-layer model from a
transformers config (hidden 64, 4 heads, 2 KV heads, intermediate 128), exports it
with torch.onnx (TorchScript or dynamo exporter) and caches the file under
``cache_dir`` (default: a per-user temp folder). The graph has
``input_ids`` and ``attention_mask`` [batch, seq] as inputs, and one output, ``logits``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DECODER_CONFIGS", "decoder_onnx", "decoder_feeds"]

_COMMON = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=128, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)

#: family -> (transformers config class, model class, config keywords)
DECODER_CONFIGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_COMMON, sliding_window=None)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_COMMON)),
}

_DEFAULT_CACHE = Path(tempfile.gettempdir()) / f"graphopt-decoders-{os.getuid() if hasattr(os, 'getuid') else 0}"


def decoder_onnx(family: str = "llama", *, dynamo: bool = False, attn: str = "sdpa", opset: int = 18,
                 cache_dir: Path | None = None) -> Path:
    """Path of the exported tiny ``family`` decoder (built and exported on first use)."""
    import torch
    import transformers

    cfg_name, model_name, kw = DECODER_CONFIGS[family]
    key = hashlib.sha1(repr(("ids+mask", family, sorted(kw.items()), dynamo, attn, opset, torch.__version__,
                             transformers.__version__)).encode()).hexdigest()[:10]
    d = Path(cache_dir) if cache_dir else _DEFAULT_CACHE
    path = d / f"{family}-{'dynamo' if dynamo else 'ts'}-{attn}-{key}.onnx"
    if path.exists():
        return path
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_name)(**kw)
    cfg._attn_implementation = attn
    model = getattr(transformers, model_name)(cfg).eval()
    with torch.no_grad():  # random init leaves the norms at 1: perturb them so a lost gamma shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))

    class _Logits(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.randint(0, kw["vocab_size"], (1, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    names = ["input_ids", "attention_mask"]
    tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=kw["max_position_embeddings"])
            torch.onnx.export(_Logits(model), (ids, mask), str(tmp), input_names=names, output_names=["logits"],
                              dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                              opset_version=opset, dynamo=True, external_data=False)
        else:
            axes = {n: {0: "batch", 1: "seq"} for n in (*names, "logits")}
            torch.onnx.export(_Logits(model), (ids, mask), str(tmp), input_names=names, output_names=["logits"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
    tmp.replace(path)
    return path


def decoder_feeds(batch: int = 2, seq: int = 16, seed: int = 0, vocab: int = 256) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, vocab, size=(batch, seq), dtype=np.int64),
            "attention_mask": np.ones((batch, seq), np.int64)}
