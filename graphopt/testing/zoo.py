"""A zoo of small models in every export form users produce.

Each entry is a tiny random-weight model built from a transformers config
(2 layers, hidden 64, 4 heads, sequence 16) or a small torch CNN, exported to
ONNX in each *form*: transformers' ``eager`` or ``sdpa`` attention, through
torch's TorchScript exporter (``dynamo=False``) or the dynamo exporter
(``dynamo=True``, torch 2.13's default). CNNs have no attention, so their forms
are only ``torchscript`` and ``dynamo`` (attention ``-``).

Exports are cached under ``~/.cache/graphopt/zoo/<versions>/`` (the key holds the
torch, transformers and zoo versions), failures too: a form that does not export
is recorded with its reason (:attr:`ZooExport.error`) and not retried. Everything
is seeded; nothing is downloaded (``HF_HUB_OFFLINE=1``).

>>> from graphopt.testing.zoo import ZOO, export       # doctest: +SKIP
>>> e = export("bert", "sdpa", "dynamo")               # doctest: +SKIP
>>> e.path, e.input_names, e.feeds()["input_ids"].shape  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError

__all__ = ["ZOO", "ZooEntry", "ZooExport", "FORMS", "CNN_FORMS", "forms_of", "export", "export_all", "cache_root",
           "COVERAGE", "CoverageRow", "coverage_markdown", "make_feeds"]

logger = logging.getLogger(__name__)

#: Bump when a builder or the export recipe changes (invalidates the cache).
ZOO_VERSION = 3

#: (attention implementation, exporter) of transformer entries.
FORMS: tuple[tuple[str, str], ...] = (("eager", "torchscript"), ("sdpa", "torchscript"),
                                      ("eager", "dynamo"), ("sdpa", "dynamo"))
#: CNN entries have no attention implementation.
CNN_FORMS: tuple[tuple[str, str], ...] = (("-", "torchscript"), ("-", "dynamo"))

SEQ = 16
OPSET = 17  # TorchScript; the dynamo exporter picks its own opset (18+)


@dataclass(frozen=True)
class ZooEntry:
    """One architecture: how to build it and what it takes."""

    name: str
    kind: str                      # "encoder", "decoder", "vision", "cnn"
    build: Callable[[str], Any]    # attn implementation -> torch module (eval, seeded)
    inputs: tuple[str, ...]        # ONNX input names, in call order
    output: str = "last_hidden_state"
    vocab: int = 1000
    image: tuple[int, ...] = ()    # [C, H, W] for vision/cnn inputs
    attention_blocks: int = 2      # attention blocks per model (layers; 0 for CNNs)
    note: str = ""


@dataclass
class ZooExport:
    """One (model, form) export: the ONNX path, or why it failed."""

    entry: ZooEntry
    attn: str
    exporter: str
    path: Path | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def form(self) -> str:
        return f"{self.attn}+{self.exporter}" if self.attn != "-" else self.exporter

    @property
    def id(self) -> str:
        return f"{self.entry.name}-{self.form}"

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.entry.inputs

    def feeds(self, batch: int = 2, seq: int = SEQ, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs with padding: row 0 attends to every token, the others lose their last quarter."""
        return make_feeds(self.entry, batch, seq, seed)


def make_feeds(entry: ZooEntry, batch: int = 2, seq: int = SEQ, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for n in entry.inputs:
        if n == "input_ids":
            out[n] = rng.integers(3, entry.vocab, size=(batch, seq), dtype=np.int64)
        elif n == "attention_mask":
            m = np.ones((batch, seq), np.int64)
            m[1:, seq - max(1, seq // 4):] = 0
            out[n] = m
        elif n == "token_type_ids":
            t = np.zeros((batch, seq), np.int64)
            t[:, seq // 2:] = 1
            out[n] = t
        elif n in ("pixel_values", "image"):
            out[n] = _image(rng, batch, entry.image)
        else:
            raise GraphoptError(f"zoo: no feed recipe for input {n!r} of {entry.name}")
    return out


def _image(rng: np.random.Generator, batch: int, chw: tuple[int, ...]) -> np.ndarray:
    """Images with structure: smooth blobs (8x8-pixel cells) plus a per-image, per-channel gain
    and offset and a little pixel noise. White noise alone averages out in a CNN's global pool,
    so every input gave nearly the same logits and parity said nothing."""
    c, h, w = chw
    cells = rng.standard_normal((batch, c, -(-h // 8), -(-w // 8)))
    smooth = np.repeat(np.repeat(cells, 8, axis=2), 8, axis=3)[:, :, :h, :w]
    gain = rng.uniform(0.5, 2.0, (batch, c, 1, 1))
    offset = rng.uniform(-1.0, 1.0, (batch, c, 1, 1))
    return (gain * smooth + offset + 0.1 * rng.standard_normal((batch, c, h, w))).astype(np.float32)


# ---------------------------------------------------------------------------------------------- builders

_H, _L, _N, _FF = 64, 2, 4, 128


def _tf() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers


def _hf(cls_name: str, cfg_name: str, **cfg: Any) -> Callable[[str], Any]:
    def build(attn: str) -> Any:
        import torch

        tf = _tf()
        torch.manual_seed(0)
        config = getattr(tf, cfg_name)(**cfg)
        cls = getattr(tf, cls_name)
        if attn == "sdpa" and not getattr(cls, "_supports_sdpa", False):
            raise _Unsupported(f"{cls_name} has no sdpa attention in transformers {tf.__version__}")
        config._attn_implementation = attn
        m = cls(config).eval()
        _perturb_vectors(m)
        got = getattr(m.config, "_attn_implementation", attn)
        if got != attn:
            raise _Unsupported(f"{cls_name} ran with {got!r} attention when {attn!r} was asked")
        return m
    return build


def _perturb_vectors(module: Any) -> None:
    """Fresh transformers models have zero biases and unit norm weights, which hides bias and
    scale mix-ups (and lets CSE merge every bias into one constant): perturb every 1-D
    parameter (seeded)."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


class _Unsupported(Exception):
    """The form does not exist for this model (not an exporter failure)."""


_BERTISH = dict(vocab_size=1000, hidden_size=_H, num_hidden_layers=_L, num_attention_heads=_N,
                intermediate_size=_FF, max_position_embeddings=64)


def _resnet(attn: str) -> Any:
    from graphopt.models.resnet import resnet50

    return resnet50(num_classes=10, seed=0, width=8, blocks=(1, 1, 1, 1))


def _mobilenet(attn: str) -> Any:
    """MobileNetV2-like: inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project), ReLU6 and
    hardswish, BN statistics calibrated on random batches so activations stay O(1)."""
    import torch

    nn = torch.nn
    torch.manual_seed(0)

    class IR(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, act: Any) -> None:
            super().__init__()
            mid = cin * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), act(),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.res = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            y = self.body(x)
            return x + y if self.res else y

    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        IR(16, 16, 1, nn.ReLU6), IR(16, 24, 2, nn.ReLU6), IR(24, 24, 1, nn.Hardswish), IR(24, 32, 2, nn.Hardswish),
        nn.Conv2d(32, 64, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    # BN statistics from the images the tests feed, averaged over the calibration batches
    # (momentum None): with the default momentum four batches moved the running stats a third
    # of the way, the last blocks stayed unnormalised and the logits barely depended on the input.
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None
            mod.reset_running_stats()
    net.train()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(4):
            net(torch.from_numpy(_image(rng, 8, (3, 32, 32))))
    return net.eval()


ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("bert", "encoder", _hf("BertModel", "BertConfig", **_BERTISH),
             ("input_ids", "attention_mask", "token_type_ids")),
    ZooEntry("roberta", "encoder", _hf("RobertaModel", "RobertaConfig", **{**_BERTISH, "max_position_embeddings": 66}),
             ("input_ids", "attention_mask")),
    ZooEntry("distilbert", "encoder", _hf("DistilBertModel", "DistilBertConfig", vocab_size=1000, dim=_H, n_layers=_L,
                                          n_heads=_N, hidden_dim=_FF, max_position_embeddings=64),
             ("input_ids", "attention_mask")),
    ZooEntry("albert", "encoder", _hf("AlbertModel", "AlbertConfig", embedding_size=32, **_BERTISH),
             ("input_ids", "attention_mask", "token_type_ids")),
    ZooEntry("electra", "encoder", _hf("ElectraModel", "ElectraConfig", embedding_size=32, **_BERTISH),
             ("input_ids", "attention_mask", "token_type_ids")),
    ZooEntry("mobilebert", "encoder", _hf("MobileBertModel", "MobileBertConfig", vocab_size=1000, hidden_size=_H,
                                          embedding_size=32, num_hidden_layers=_L, num_attention_heads=_N,
                                          intermediate_size=_FF, intra_bottleneck_size=32, true_hidden_size=32,
                                          num_feedforward_networks=2, max_position_embeddings=64),
             ("input_ids", "attention_mask", "token_type_ids")),
    ZooEntry("deberta-v2", "encoder", _hf("DebertaV2Model", "DebertaV2Config", **_BERTISH, relative_attention=True,
                                          pos_att_type=["p2c", "c2p"], position_buckets=32, max_relative_positions=64,
                                          position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True),
             ("input_ids", "attention_mask", "token_type_ids"),
             note="disentangled attention (content-to-position / position-to-content terms)"),
    ZooEntry("gpt2", "decoder", _hf("GPT2Model", "GPT2Config", vocab_size=1000, n_embd=_H, n_layer=_L, n_head=_N,
                                    n_positions=64, use_cache=False),
             ("input_ids", "attention_mask"), note="causal self-attention + padding mask"),
    ZooEntry("llama", "decoder", _hf("LlamaModel", "LlamaConfig", vocab_size=1000, hidden_size=_H, intermediate_size=_FF,
                                     num_hidden_layers=_L, num_attention_heads=_N, num_key_value_heads=2,
                                     max_position_embeddings=64, use_cache=False),
             ("input_ids", "attention_mask"), note="GQA (4 query heads, 2 KV heads), rotary, RMSNorm, SiLU-gated MLP; causal"),
    ZooEntry("mistral", "decoder", _hf("MistralModel", "MistralConfig", vocab_size=1000, hidden_size=_H,
                                       intermediate_size=_FF, num_hidden_layers=_L, num_attention_heads=_N,
                                       num_key_value_heads=2, max_position_embeddings=64, use_cache=False),
             ("input_ids", "attention_mask"), note="GQA (4 query heads, 2 KV heads), rotary, RMSNorm; causal (sliding window "
                                  "4096 > the sequence)"),
    ZooEntry("qwen2", "decoder", _hf("Qwen2Model", "Qwen2Config", vocab_size=1000, hidden_size=_H,
                                     intermediate_size=_FF, num_hidden_layers=_L, num_attention_heads=_N,
                                     num_key_value_heads=2, max_position_embeddings=64, use_cache=False),
             ("input_ids", "attention_mask"), note="GQA, Q/K/V projection biases; causal"),
    ZooEntry("t5-encoder", "encoder", _hf("T5EncoderModel", "T5Config", vocab_size=1000, d_model=_H, d_kv=16, d_ff=_FF,
                                          num_layers=_L, num_heads=_N, use_cache=False),
             ("input_ids", "attention_mask"), note="relative position bias added to the scores, no scaling"),
    ZooEntry("vit", "vision", _hf("ViTModel", "ViTConfig", image_size=32, patch_size=8, num_channels=3, hidden_size=_H,
                                  num_hidden_layers=_L, num_attention_heads=_N, intermediate_size=_FF,
                                  add_pooling_layer=False),
             ("pixel_values",), image=(3, 32, 32)),
    ZooEntry("bert-cls", "encoder", _hf("BertForSequenceClassification", "BertConfig", num_labels=3, **_BERTISH),
             ("input_ids", "attention_mask", "token_type_ids"), output="logits"),
    ZooEntry("resnet", "cnn", _resnet, ("image",), output="logits", image=(3, 32, 32), attention_blocks=0,
             note="ResNet-50 layout, width 8, one bottleneck per stage"),
    ZooEntry("mobilenet", "cnn", _mobilenet, ("image",), output="logits", image=(3, 32, 32), attention_blocks=0,
             note="MobileNetV2-like inverted residuals, ReLU6/hardswish"),
]}


def forms_of(entry: ZooEntry) -> tuple[tuple[str, str], ...]:
    return CNN_FORMS if entry.kind == "cnn" else FORMS


# ---------------------------------------------------------------------------------------------- export

def _versions() -> str:
    import torch

    try:
        import transformers

        tv = transformers.__version__
    except ImportError:
        tv = "none"
    return f"torch{torch.__version__.split('+')[0]}-tf{tv}-zoo{ZOO_VERSION}"


def cache_root(cache_dir: Path | None = None) -> Path:
    base = Path(cache_dir) if cache_dir else Path(os.path.expanduser("~/.cache/graphopt/zoo"))
    return base / _versions()


def _wrap(entry: ZooEntry, module: Any) -> Any:
    import torch

    names, out = entry.inputs, entry.output

    class W(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = module

        def forward(self, *args: Any) -> Any:
            if entry.kind == "cnn":
                return self.m(*args)
            r = self.m(**dict(zip(names, args)))
            return getattr(r, out) if hasattr(r, out) else r[0]

    return W().eval()


def _do_export(entry: ZooEntry, attn: str, exporter: str, path: Path) -> None:
    import torch

    module = entry.build(attn)
    w = _wrap(entry, module)
    feeds = make_feeds(entry, batch=2, seq=SEQ)  # batch 2: no 0/1 specialisation
    example = tuple(torch.from_numpy(feeds[n]) for n in entry.inputs)
    seq_axis = {} if entry.kind in ("vision", "cnn") else {1: "seq"}
    axes = {n: {0: "batch", **seq_axis} for n in entry.inputs}
    axes[entry.output] = {0: "batch", **(seq_axis if entry.output == "last_hidden_state" else {})}
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(w, example, str(tmp), input_names=list(entry.inputs), output_names=[entry.output],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        else:
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            dyn = torch.export.Dim.DYNAMIC
            shapes = tuple({a: dyn for a in axes[n]} for n in entry.inputs)
            prog = torch.onnx.export(w, example, input_names=list(entry.inputs), output_names=[entry.output],
                                     dynamic_shapes=(shapes,), dynamo=True, verbose=False)
            prog.save(str(tmp))
    # fold external data into one file (the tiny models fit in a protobuf)
    import onnx

    m = onnx.load(str(tmp))
    for f in tmp.parent.glob(tmp.name + ".data"):
        f.unlink()
    onnx.save(m, str(tmp))
    tmp.replace(path)


def export(name: str, attn: str, exporter: str, cache_dir: Path | None = None,
           inputs: tuple[str, ...] | None = None) -> ZooExport:
    """The cached export of zoo model ``name`` in form (``attn``, ``exporter``), or the reason it failed.

    ``inputs`` exports with a prefix of the entry's inputs instead (a decoder without its
    ``attention_mask``: the mask-less causal form)."""
    entry = ZOO[name]
    if (attn, exporter) not in forms_of(entry):
        raise GraphoptError(f"zoo: {name} has no form {attn}+{exporter}; forms: {forms_of(entry)}")
    stem = f"{name}-{attn}-{exporter}"
    if inputs is not None and tuple(inputs) != entry.inputs:
        if tuple(inputs) != entry.inputs[:len(inputs)] or not inputs:
            raise GraphoptError(f"zoo: inputs {list(inputs)} are not a prefix of {name}'s {list(entry.inputs)}")
        entry = replace(entry, inputs=tuple(inputs))
        stem += "-" + "-".join(inputs)
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    path, fail = root / f"{stem}.onnx", root / f"{stem}.error.txt"
    result = ZooExport(entry, attn, exporter)
    if path.exists():
        result.path = path
        return result
    if fail.exists():
        result.error = fail.read_text().strip()
        return result
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        _do_export(entry, attn, exporter, path)
        result.path = path
    except _Unsupported as e:
        result.error = f"no such form: {e}"
    except Exception as e:  # noqa: BLE001 - recorded: which forms fail to export, and why
        last = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0][:300]
        result.error = f"export failed: {last}"
        logger.info("zoo: %s failed to export: %s", stem, last)
    if result.error:
        tmp = fail.with_suffix(".tmp")
        tmp.write_text(result.error + "\n")
        tmp.replace(fail)
    return result


def export_all(names: list[str] | None = None, cache_dir: Path | None = None) -> list[ZooExport]:
    """Every form of every (or the named) zoo model, exported or with its failure."""
    out = []
    for n in names or list(ZOO):
        for attn, exporter in forms_of(ZOO[n]):
            out.append(export(n, attn, exporter, cache_dir))
    return out


# ---------------------------------------------------------------------------------------------- coverage

@dataclass
class CoverageRow:
    """One (model, form) line of the zoo coverage table (filled in by tests/zoo)."""

    model: str
    form: str
    attention: str = ""          # "fused/total"
    fusions: str = ""            # other graphopt ops, "Op×n"
    fallbacks: str = ""          # Python fallback nodes by op type
    fp32: str = ""               # max abs error vs onnxruntime
    bf16: str = ""               # cosine vs onnxruntime
    int8: str = ""
    notes: list[str] = field(default_factory=list)


#: Rows collected by the zoo tests of this process, by "model-form".
COVERAGE: dict[str, CoverageRow] = {}

_COLUMNS = ("model", "form", "attention fused", "other fusions", "Python fallbacks", "fp32 max err", "bf16 cos",
            "int8 cos", "notes")


def coverage_markdown(rows: list[CoverageRow] | None = None) -> str:
    """The coverage table as GitHub markdown (model order of :data:`ZOO`)."""
    rows = list(COVERAGE.values()) if rows is None else rows
    order = {n: i for i, n in enumerate(ZOO)}
    rows = sorted(rows, key=lambda r: (order.get(r.model, 99), r.form))
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for r in rows:
        cells = (r.model, r.form, r.attention, r.fusions, r.fallbacks, r.fp32, r.bf16, r.int8,
                 "; ".join(dict.fromkeys(r.notes)))
        out.append("| " + " | ".join(c.replace("|", "/") if c else "" for c in cells) + " |")
    return "\n".join(out) + "\n"
