"""Quantization-aware training: int8 fake-quant from the same :class:`QuantConfig` PTQ uses.

Every ``nn.Linear`` whose plan is int8 (``QuantConfig.plan`` of a ``Gemm`` node named like the
module: ``op_types``, ``node_patterns`` and ``nodes`` overrides apply) gets

* weights: fake-quant per the weight spec (per output channel, symmetric s8 by default:
  scale = max|w| / 127, as graphopt's PTQ computes it),
* inputs: fake-quant per the activation spec (u8 asymmetric per tensor by default) over a
  running min/max (first batch, then an exponential average; frozen in eval mode),

with the straight-through estimator (torch's ``fake_quantize_*`` ops: gradient 1 inside the
range, 0 outside). :func:`graphopt.train.export_onnx` writes the fake-quant ops as
QuantizeLinear/DequantizeLinear, which graphopt imports as an ordinary QDQ model and runs int8.

>>> from graphopt.train import qat, export_onnx                                  # doctest: +SKIP
>>> model, result = qat(model, train_split, QuantConfig(quantize_act_matmul=False), steps=200)  # doctest: +SKIP
>>> export_onnx(model, "model.qat.onnx", example)                                # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..errors import GraphoptError
from ..quant.config import QuantConfig
from ..quant.specs import QuantSpec
from ._loop import TrainResult, as_arrays, batch_at, run_loop

__all__ = ["qat", "prepare_qat", "FakeQuantLinear", "calibrate_qat"]


def _fq_linear_class() -> Any:
    import torch
    import torch.nn.functional as F

    def affine(lo: Any, hi: Any, s: QuantSpec) -> tuple[Any, Any]:
        """Scale and zero point (int32) of [lo, hi] widened to 0, as ``qparams_from_range`` computes them."""
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        qmin, qmax = s.dtype.qmin, s.dtype.qmax
        if s.symmetric:
            amax = torch.maximum(lo.abs(), hi.abs())
            if s.dtype.signed:  # the symmetric range excludes qmin (-128)
                return (amax / qmax).clamp(min=1e-12), torch.zeros_like(amax, dtype=torch.int32)
            return (2 * amax / (qmax - qmin)).clamp(min=1e-12), \
                torch.full_like(amax, (qmax + qmin + 1) // 2, dtype=torch.int32)
        scale = ((hi - lo) / (qmax - qmin)).clamp(min=1e-12)
        return scale, (qmin - lo / scale).round().clamp(qmin, qmax).to(torch.int32)

    class FakeQuantLinear(torch.nn.Module):
        """``nn.Linear`` with fake-quantized weights and input (see the module docstring)."""

        lo: Any  # buffers: the running activation range, and whether a batch was seen
        hi: Any
        seen: Any

        def __init__(self, lin: Any, weight: QuantSpec, activation: QuantSpec, momentum: float = 0.01) -> None:
            super().__init__()
            self.in_features, self.out_features = lin.in_features, lin.out_features
            self.weight, self.bias = lin.weight, lin.bias
            self.wspec, self.aspec, self.momentum = weight, activation, momentum
            self.register_buffer("lo", torch.zeros(()))
            self.register_buffer("hi", torch.zeros(()))
            self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

        def weight_qparams(self) -> tuple[Any, Any]:
            w = self.weight.detach()
            if self.wspec.per_channel:  # per output channel: rows of nn.Linear's [out, in] weight
                return affine(w.amin(dim=1), w.amax(dim=1), self.wspec)
            return affine(w.min(), w.max(), self.wspec)

        def act_qparams(self) -> tuple[Any, Any]:
            return affine(self.lo, self.hi, self.aspec)

        def forward(self, x: Any) -> Any:
            if self.training:
                with torch.no_grad():
                    lo, hi = x.detach().min(), x.detach().max()
                    if not bool(self.seen):
                        self.lo.copy_(lo)
                        self.hi.copy_(hi)
                        self.seen.fill_(True)
                    else:  # an exponential average of the batch ranges
                        self.lo.lerp_(lo, self.momentum)
                        self.hi.lerp_(hi, self.momentum)
            a, w = self.aspec.dtype, self.wspec.dtype
            if bool(self.seen):
                s, z = self.act_qparams()
                if self.training:
                    x = torch.fake_quantize_per_tensor_affine(x, s, z, a.qmin, a.qmax)
                else:  # python numbers: constants in an exported graph
                    x = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), a.qmin, a.qmax)
            s, z = self.weight_qparams()
            if not self.training:  # via numpy: constants in an exported graph, not ops on the weight
                s, z = torch.from_numpy(s.detach().numpy().copy()), torch.from_numpy(z.detach().numpy().copy())
            if self.wspec.per_channel:
                wq = torch.fake_quantize_per_channel_affine(self.weight, s, z, 0, w.qmin, w.qmax)
            else:
                wq = torch.fake_quantize_per_tensor_affine(self.weight, float(s), int(z), w.qmin, w.qmax)
            return F.linear(x, wq, self.bias)

    return FakeQuantLinear


_CLASS: Any = None


def FakeQuantLinear(*a: Any, **k: Any) -> Any:  # noqa: N802 - the class is built on first use (torch is lazy)
    global _CLASS
    if _CLASS is None:
        _CLASS = _fq_linear_class()
    return _CLASS(*a, **k)


class _Probe:
    """A stand-in node for ``QuantConfig.plan``: a Linear is a Gemm named like its module."""

    op_type = op = "Gemm"

    def __init__(self, name: str) -> None:
        self.name = name


def prepare_qat(model: Any, config: QuantConfig | None = None, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Swap int8-planned ``nn.Linear`` modules for fake-quant ones, in place; the names swapped.

    ``skip``: module names kept float (e.g. a classifier head)."""
    import torch

    cfg = config or QuantConfig()
    if cfg.mode != "static":
        raise GraphoptError(f"QAT simulates static int8 (weights and activations); config mode is '{cfg.mode}'")
    swapped = []
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, torch.nn.Linear) or name in skip:
            continue
        plan = cfg.plan(_Probe(name))  # type: ignore[arg-type]
        if plan.precision != "int8":
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr,
                FakeQuantLinear(mod, plan.weight, plan.activation))
        swapped.append(name)
    if not swapped:
        raise GraphoptError("QAT: the config plans no nn.Linear of the model as int8")
    return swapped


def calibrate_qat(model: Any, data: Any, batches: int = 8, batch: int = 16, seed: int = 0) -> None:
    """Initialise the activation ranges from ``batches`` batches (train-mode forward, no update)."""
    import torch

    arrays = as_arrays(data)
    names = [k for k in arrays if k != "labels"]
    was = model.training
    model.train()
    with torch.no_grad():
        for i in range(batches):
            b = batch_at(arrays, i, batch, seed)
            model(**{n: torch.from_numpy(np.ascontiguousarray(b[n])) for n in names})
    model.train(was)


def qat(model: Any, data: Any, config: QuantConfig | None = None, *, steps: int = 200, batch: int = 16,
        lr: float = 2e-5, teacher: Any = None, temperature: float = 2.0, seed: int = 0, skip: tuple[str, ...] = (),
        checkpoint: str | os.PathLike | None = None, every: int = 50, progress: bool | None = None,
        freeze: tuple[str, ...] = (), evaluate: Callable[[Any], float] | None = None, eval_every: int = 0,
        patience: int = 0, teacher_cache: str | os.PathLike | None = None,
        restore_best: bool = True) -> tuple[Any, TrainResult]:
    """Fine-tune ``model`` (in place) with fake-quant; returns (model, result).

    The loss is cross-entropy on ``labels`` when the data has them, and KL at ``temperature`` to
    ``teacher``'s logits when one is given (both when both; ``teacher=model``: the float model before
    QAT). ``data`` as for :func:`distill`. ``freeze``: parameters whose name starts with one of these
    prefixes are not trained (e.g. embeddings the config keeps float). ``evaluate(model) -> score``
    every ``eval_every`` steps (eval mode: the fake-quant model as exported), ``patience`` and
    ``restore_best`` as for :func:`distill`. ``teacher_cache``: the teacher's logits computed once (see
    :func:`graphopt.train.teacher_outputs`) instead of every step.
    """
    import copy

    import torch
    import torch.nn.functional as F

    from .distill import _T_LOGITS, logits_of, teacher_outputs

    arrays = as_arrays(data)
    names = [k for k in arrays if k != "labels"]
    if teacher is None and "labels" not in arrays:
        raise GraphoptError("QAT needs labels in the data (a 'labels' array) or a teacher to distil from")
    if teacher is None and "labels" in arrays:
        teacher_m = None
    else:
        teacher_m = teacher if teacher is not model else copy.deepcopy(model)
        teacher_m.eval()
        if teacher_cache is not None:
            arrays = {**arrays, **teacher_outputs(teacher_m, arrays, tuple(names), [], teacher_cache,
                                                  progress=progress)}
    for name, p in model.named_parameters():
        if any(name.startswith(f) for f in freeze):
            p.requires_grad_(False)
    prepare_qat(model, config, skip=skip)
    calibrate_qat(model, {n: arrays[n] for n in names}, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    model.train()

    def step(i: int) -> float:
        b = batch_at(arrays, i, batch, seed + 1)
        feeds = {n: torch.from_numpy(np.ascontiguousarray(b[n])) for n in names}
        logits = logits_of(model(**feeds)).float()
        loss = logits.new_zeros(())
        if "labels" in b:
            loss = loss + F.cross_entropy(logits, torch.from_numpy(b["labels"]).long())
        if teacher_m is not None:
            if _T_LOGITS in b:
                t = torch.from_numpy(np.ascontiguousarray(b[_T_LOGITS]))
            else:
                with torch.no_grad():
                    t = logits_of(teacher_m(**feeds)).float()
            loss = loss + temperature ** 2 * F.kl_div(F.log_softmax(logits / temperature, -1),
                                                      F.log_softmax(t / temperature, -1),
                                                      reduction="batchmean", log_target=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        return float(loss.detach())

    def score() -> float:
        assert evaluate is not None
        model.eval()
        try:
            with torch.no_grad():
                return float(evaluate(model))
        finally:
            model.train()

    sig = {"kind": "qat", "steps": steps, "batch": batch, "lr": lr, "seed": seed,
           "config": (config or QuantConfig()).to_dict(), "teacher": teacher is not None, "freeze": list(freeze)}
    try:
        res = run_loop(step, steps=steps, modules={"model": model, "opt": opt, "sched": sched},
                       checkpoint=checkpoint, every=every, signature=sig, progress=progress, desc="QAT",
                       evaluate=score if evaluate is not None else None, eval_every=eval_every, patience=patience,
                       restore="model" if restore_best else None)
    finally:
        model.eval()
    return model, res
