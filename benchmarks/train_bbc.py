"""Pruning, distillation and QAT on the BBC News MiniLM classifier: accuracy and native latency.

    python benchmarks/train_bbc.py train [--work DIR]            # distil/QAT the students (resumable)
    python benchmarks/train_bbc.py eval  [--work DIR] [--out benchmarks/results/train-bbc]

``train`` builds, with checkpoints under ``--work`` (rerun after an interrupt to resume):

* pruned25-distilled / pruned50-distilled: the heads and FFN neurons graphopt.prune keeps at
  25 / 50 % (same calibration, same indices), cut from the torch teacher by
  ``student_from_pruned`` and distilled from the unpruned teacher,
* student3: a 3-layer student (layers 0, 2, 4; DistilBERT's init) distilled from the 6 layers,
* qat: the dense classifier fine-tuned with int8 fake-quant from the QuantConfig used for PTQ.

Distillation: KL at T=2 + hidden-state MSE over the layer map + CE on the training labels,
on the training split truncated to ``--seq-train`` tokens (cost; evaluation is at 128).
``eval`` measures every model in one run: validation and test accuracy (native int8, and fp32
for the torch-trained ones), native int8 and bf16 latency at batch 1 and 8 (x 128 tokens; models
interleaved, ~150 ms pause before each block, medians), the pruned models exported to ONNX
(onnxruntime) and OpenVINO and checked against the native fp32 outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.models.bbc import NAMES, accuracy, bbc_classifier, bbc_torch, bbc_train_split  # noqa: E402

WORK = Path.home() / ".cache" / "graphopt" / "train-bbc"


def _truncate(d: dict, seq: int) -> dict:
    return {k: (v[:, :seq] if v.ndim == 2 else v) for k, v in d.items()}


def _freeze_embeddings(student) -> None:  # 12M of the 22M parameters; the teacher's are kept
    for p in student.encoder.embeddings.parameters():
        p.requires_grad_(False)


def _prune_report(task, ratio: float):
    model, rep = graphopt.prune(graphopt.load(task.path), str(task.calib), heads=ratio, ffn=ratio,
                                reconstruct=False, progress=False)
    return rep


def train(args) -> None:
    from graphopt.train import distill, drop_layers, export_onnx, student_from_pruned

    task = bbc_classifier()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = _truncate(bbc_train_split(task), args.seq_train)
    example = {k: task.split("val")[k][:2] for k in NAMES}
    jobs = [j for j in args.jobs.split(",") if j]
    for job in jobs:
        out = work / f"{job}.onnx"
        if out.exists():
            print(f"{job}: {out} exists, skipped", flush=True)
            continue
        teacher = bbc_torch(task)
        if job == "qat":
            from graphopt.train import qat

            model, res = qat(bbc_torch(task), data, _qat_config(), steps=args.qat_steps, batch=16, lr=args.qat_lr,
                             checkpoint=work / f"{job}.ckpt", progress=args.progress)
            export_onnx(model, out, example)
        else:
            if job.startswith("pruned"):
                student = student_from_pruned(teacher, _prune_report(task, int(job[6:8]) / 100))
            elif job == "student3":
                student = drop_layers(teacher, 3)
            else:
                sys.exit(f"unknown job {job}")
            _freeze_embeddings(student)
            res = distill(teacher, student, data, steps=args.steps, batch=16, lr=args.lr, alpha_ce=1.0,
                          checkpoint=work / f"{job}.ckpt", progress=args.progress)
            export_onnx(student, out, example)
        rec = {"steps": res.steps, "resumed_from": res.resumed_from, "seconds_this_run": round(res.seconds, 1),
               "loss_first10": float(np.mean(res.losses[:10])), "loss_last10": float(np.mean(res.losses[-10:])),
               "seq_train": args.seq_train, "lr": args.qat_lr if job == "qat" else args.lr}
        (work / f"{job}.json").write_text(json.dumps(rec, indent=1))
        print(job, rec, flush=True)


def _qat_config():
    from graphopt.quant import QuantConfig

    # the precision map QAT and PTQ share: linear layers int8 (per-channel s8 weights, u8
    # activations), attention's activation x activation matmuls and the embeddings float
    return QuantConfig(quantize_act_matmul=False, embeddings=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("train", "eval"))
    p.add_argument("--work", default=str(WORK))
    p.add_argument("--out", default="benchmarks/results/train-bbc")
    p.add_argument("--jobs", default="pruned50,student3,pruned25,qat")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--qat-steps", type=int, default=60)
    p.add_argument("--qat-lr", type=float, default=2e-5)
    p.add_argument("--seq-train", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.stage == "train":
        train(args)
    else:
        evaluate(args)
    return 0


def evaluate(args) -> None:
    raise NotImplementedError


if __name__ == "__main__":
    sys.exit(main())
