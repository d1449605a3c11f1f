"""Shared by ``graphopt distill`` and ``graphopt qat`` (their modules: ``distill.py``, ``qat.py``): thin layers over :func:`graphopt.train.distill` / ``qat``.

    graphopt distill --teacher bbc --student-layers 3 --data train.npz -o student.onnx
    graphopt distill --teacher model.pt --heads 0.5 --ffn 0.5 --data train/ -o pruned.onnx
    graphopt qat --model bbc --data train.npz --config int8.yaml -o model.qat.onnx

A torch model (``--teacher`` / ``--model``) is a transformers model folder (``config.json``:
``AutoModelForSequenceClassification``), a ``.pt`` file holding a pickled ``nn.Module``
(``torch.save(model)``; pickles run code, load only your own), or ``bbc`` (the BBC News
classifier of :mod:`graphopt.models.bbc`). Data: an ``.npz`` file or a folder of them holding
the model's inputs (and ``labels``). The result is ONNX (QDQ for QAT) that every other command
reads. Training writes ``OUT.ckpt`` as it goes: run the same command again after an interrupt
to resume; the checkpoint is removed when the run completes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from ._common import add_json, add_output, add_progress, emit, progress, say, usage


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="training data: an .npz file or a folder of .npz (inputs, labels)")
    add_output(p, "output .onnx path", dest="out")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--batch", type=int, default=16, help="rows per step")
    p.add_argument("--seq", type=int, default=0, help="truncate 2-D inputs to this many tokens (0: as given)")
    p.add_argument("--checkpoint", help="resumable state (default OUT.ckpt)")
    add_progress(p)
    add_json(p)


def load_torch(spec: str) -> Any:
    """A torch module from a transformers folder, a pickled ``.pt`` module, or ``bbc``."""
    import torch

    from ..errors import GraphoptError

    if spec == "bbc":
        from ..models.bbc import bbc_classifier, bbc_torch

        return bbc_torch(bbc_classifier())
    p = Path(spec)
    if p.is_dir() and (p / "config.json").exists():
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(str(p), attn_implementation="eager").eval()
    if p.is_file() and p.suffix in (".pt", ".pth"):
        obj = torch.load(p, map_location="cpu", weights_only=False)
        if not isinstance(obj, torch.nn.Module):
            raise GraphoptError(f"{p} holds a {type(obj).__name__}, not an nn.Module (save it with torch.save(model))")
        return obj.eval()
    raise usage(f"{spec}: not a transformers folder (config.json), a .pt file or 'bbc'")


def _data(args: argparse.Namespace) -> dict:
    from ..train._loop import as_arrays

    data = as_arrays(args.data)
    if args.seq:
        data = {k: (v[:, :args.seq] if v.ndim == 2 else v) for k, v in data.items()}
    return data


def _finish(args: argparse.Namespace, model: Any, data: dict, res: Any, ckpt: Path, extra: dict) -> int:
    from ..train import export_onnx

    example = {k: v[:2] for k, v in data.items() if k != "labels"}
    out = export_onnx(model, args.out, example)
    ckpt.unlink(missing_ok=True)
    result = {"output": str(out), "steps": res.steps, "resumed_from": res.resumed_from,
              "loss_first": res.losses[0] if res.losses else None, "loss_last": res.losses[-1] if res.losses else None,
              "seconds": round(res.seconds, 1), **extra}
    emit(args, result)
    say(args, f"wrote {out}: {res.steps} steps" + (f" (resumed at {res.resumed_from})" if res.resumed_from else "")
        + (f", loss {res.losses[0]:.4f} -> {res.losses[-1]:.4f}" if res.losses else "") + f" ({res.seconds:.0f} s)")
    return 0


def _ckpt(args: argparse.Namespace) -> Path:
    from ..io.atomic import refuse_same_file

    for src in (getattr(args, "teacher", None), getattr(args, "model", None)):
        if src and src != "bbc" and Path(src).is_file():
            refuse_same_file(src, args.out)
    return Path(args.checkpoint) if args.checkpoint else Path(str(args.out) + ".ckpt")


def run_distill(args: argparse.Namespace) -> int:
    from ..train import distill, drop_layers, export_onnx, student_from_pruned

    if not (args.student_layers or args.heads or args.ffn):
        raise usage("nothing to do: give --student-layers N and/or --heads/--ffn R")
    ckpt = _ckpt(args)
    data = _data(args)
    teacher = load_torch(args.teacher)
    student = teacher
    extra: dict[str, Any] = {}
    if args.heads or args.ffn:
        import graphopt

        example = {k: v[:2] for k, v in data.items() if k != "labels"}
        n = len(next(iter(data.values())))
        calib: Any = args.calib or [{k: data[k][i:i + 8] for k in example} for i in range(0, min(64, n), 8)]
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(teacher, os.path.join(tmp, "teacher.onnx"), example)
            _, rep = graphopt.prune(graphopt.load(path), calib, heads=args.heads, ffn=args.ffn, reconstruct=False,
                                    progress=progress(args))
        student = student_from_pruned(teacher, rep)
        extra["kept_heads"], extra["kept_neurons"] = rep.kept_heads, {k: len(v) for k, v in rep.kept_neurons.items()}
    if args.student_layers:
        student = drop_layers(student, args.student_layers)
    if args.freeze_embeddings:
        for name, p in student.named_parameters():
            if "embeddings" in name:
                p.requires_grad_(False)
    res = distill(teacher, student, data, steps=args.steps, batch=args.batch, lr=args.lr,
                  temperature=args.temperature, alpha_hidden=args.alpha_hidden, alpha_ce=args.alpha_ce,
                  checkpoint=ckpt, progress=progress(args))
    extra["params"] = int(sum(p.numel() for p in student.parameters()))
    return _finish(args, student, data, res, ckpt, extra)


def run_qat(args: argparse.Namespace) -> int:
    from ..quant import QuantConfig
    from ..train import qat

    ckpt = _ckpt(args)
    cfg = QuantConfig.load(args.config) if args.config else QuantConfig(quantize_act_matmul=False, embeddings=False)
    data = _data(args)
    model = load_torch(args.model)
    teacher = load_torch(args.teacher) if args.teacher else None
    model, res = qat(model, data, cfg, steps=args.steps, batch=args.batch, lr=args.lr, teacher=teacher,
                     checkpoint=ckpt, progress=progress(args))
    return _finish(args, model, data, res, ckpt, {})
