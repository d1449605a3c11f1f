"""Knowledge distillation: teacher -> student with KL on logits at a temperature plus hidden-state MSE.

    loss = alpha_kl * T^2 * KL(softmax(t / T) || softmax(s / T))
         + alpha_hidden * mean over mapped layers of MSE(h_s[i], h_t[map[i]])   (valid tokens only)
         + alpha_ce * CE(s, labels)                                           (when the data has labels)

(Hinton et al. 2015; DistilBERT adds the hidden-state term; INC's distillation API has the same
two parts.) The layer map defaults to the teacher layers a :func:`drop_layers` student was
built from, the identity for a student of equal depth (a pruned one), and else an even spread.

>>> from graphopt.train import distill, drop_layers                       # doctest: +SKIP
>>> student = drop_layers(teacher, 3)                                      # doctest: +SKIP
>>> result = distill(teacher, student, train_split, steps=600)             # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import GraphoptError
from ._loop import TrainResult, as_arrays, batch_at, run_loop
from .students import LAYER_MAP_ATTR, layer_list

__all__ = ["distill", "DistillConfig", "default_layer_map", "logits_of", "teacher_outputs"]

_T_LOGITS = "__teacher_logits"


def _t_hidden(t: int) -> str:
    return f"__teacher_hidden{t}"


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 300
    batch: int = 16
    lr: float = 1e-4
    temperature: float = 2.0
    alpha_kl: float = 1.0
    alpha_hidden: float = 1.0
    alpha_ce: float = 0.0
    warmup: float = 0.05      # fraction of steps with a linear LR warm-up, then linear decay to 0
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1:
            raise GraphoptError(f"steps and batch must be >= 1, got {self.steps}, {self.batch}")
        if self.temperature <= 0:
            raise GraphoptError(f"temperature must be > 0, got {self.temperature}")


def default_layer_map(teacher: Any, student: Any) -> dict[int, int]:
    """Student layer index -> teacher layer index whose output it learns."""
    nt, ns = len(layer_list(teacher)[1]), len(layer_list(student)[1])
    src = getattr(student, LAYER_MAP_ATTR, None)
    if src is not None and len(src) == ns:
        # a dropped-layer student: layer i starts as teacher layer src[i] and stands for the run of
        # teacher layers up to the next kept one, so it learns the output of the last of them
        ends = [*src[1:], nt]
        return {i: ends[i] - 1 for i in range(ns)}
    if ns == nt:
        return {i: i for i in range(ns)}
    return {i: round((i + 1) * nt / ns) - 1 for i in range(ns)}


def logits_of(out: Any) -> Any:
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


class _Hidden:
    """Forward hooks that keep each layer's output hidden state."""

    def __init__(self, layers: Any) -> None:
        self.out: list[Any] = [None] * len(layers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(layers)]

    def _hook(self, i: int) -> Any:
        def hook(_m: Any, _inp: Any, out: Any) -> None:
            self.out[i] = out[0] if isinstance(out, (tuple, list)) else out
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _same_teacher(teacher: Any, data: dict[str, np.ndarray], names: tuple[str, ...], cached: np.ndarray) -> bool:
    import torch

    teacher.eval()
    with torch.no_grad():
        live = logits_of(teacher(**{k: torch.from_numpy(np.ascontiguousarray(data[k][:2])) for k in names})).float()
    return bool(np.allclose(live.numpy(), cached[:2], rtol=1e-4, atol=1e-5))


def teacher_outputs(teacher: Any, data: dict[str, np.ndarray], names: tuple[str, ...], layers: list[int],
                    cache: str | os.PathLike, *, batch: int = 32, progress: bool | None = None) -> dict[str, np.ndarray]:
    """The teacher's logits and the hidden states of ``layers`` (float32) for every row of ``data``,
    as arrays memory-mapped from ``cache`` (a folder; rows x seq x hidden x layers x 4 bytes), in a
    subfolder named by the inputs' hash, so caches of different data (distillation's, then QAT's on
    other rows) share the folder without replacing each other.

    Computed once, in row order, and reused while the inputs are those it was computed for, the
    layers are among its layers and the teacher gives the cached logits on the first rows. A
    teacher in eval mode is deterministic: the cached targets are those a live teacher gives."""
    import hashlib
    import json
    from pathlib import Path

    import torch
    from tqdm.auto import tqdm

    from ..io.atomic import atomic_output

    h = hashlib.sha1()
    for name in names:
        h.update(name.encode() + np.ascontiguousarray(data[name]).tobytes())
    digest = h.hexdigest()
    key = {"inputs": digest, "layers": sorted(layers), "rows": int(len(data[names[0]]))}
    folder = Path(cache) / digest[:16]
    meta = folder / "meta.json"
    have = json.loads(meta.read_text()) if meta.exists() else {}
    # a cache of more layers serves a student that maps fewer (a 3-layer student after a pruned one);
    # the teacher is recognised by its logits on the first rows (its unused parameters -- a pooler
    # left at random init -- may differ between processes, its function may not)
    if have.get("inputs") == key["inputs"] and have.get("rows") == key["rows"] and set(layers) <= set(have["layers"]) \
            and _same_teacher(teacher, data, names, np.load(folder / f"{_T_LOGITS}.npy", mmap_mode="r")):
        key = have
    else:
        folder.mkdir(parents=True, exist_ok=True)
        meta.unlink(missing_ok=True)
        n = int(len(data[names[0]]))
        t_layers = layer_list(teacher)[1]
        hid = _Hidden(t_layers)
        out: dict[str, Any] = {}
        teacher.eval()
        show = sys.stderr.isatty() if progress is None else progress
        try:
            with torch.no_grad():
                for i in tqdm(range(0, n, batch), desc="teacher outputs", disable=not show):
                    feeds = {k: torch.from_numpy(np.ascontiguousarray(data[k][i:i + batch])) for k in names}
                    logits = logits_of(teacher(**feeds)).float().numpy()
                    parts = {_T_LOGITS: logits, **{_t_hidden(t): hid.out[t].float().numpy() for t in layers}}
                    for k, v in parts.items():
                        if k not in out:
                            out[k] = np.lib.format.open_memmap(folder / f"{k}.npy.tmp", "w+", v.dtype, (n, *v.shape[1:]))
                        out[k][i:i + len(v)] = v
        finally:
            hid.close()
        for k, arr in out.items():
            arr.flush()
            os.replace(folder / f"{k}.npy.tmp", folder / f"{k}.npy")
        with atomic_output(meta) as tmp:
            Path(tmp).write_text(json.dumps(key))
    return {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in [_T_LOGITS, *map(_t_hidden, sorted(set(layers)))]}


def distill(teacher: Any, student: Any, data: Any, config: DistillConfig | None = None, *,
            layer_map: dict[int, int] | None = None, input_names: tuple[str, ...] | None = None,
            checkpoint: str | os.PathLike | None = None, every: int = 50, progress: bool | None = None,
            teacher_cache: str | os.PathLike | None = None, evaluate: Callable[[Any], float] | None = None,
            eval_every: int = 0, patience: int = 0, restore_best: bool = True, **kw: Any) -> TrainResult:
    """Train ``student`` (in place) to match ``teacher`` on ``data``.

    ``data``: a dict of arrays (the model inputs, optionally ``labels``), an .npz file or a folder
    of them; batches of ``config.batch`` rows are fed as keyword arguments. ``kw`` overrides
    fields of ``config``. ``checkpoint``: resumable state (see :mod:`graphopt.train._loop`).
    ``evaluate(student) -> score`` (e.g. validation accuracy; called in eval mode) every
    ``eval_every`` steps, stopping after ``patience`` evaluations without a new best (0: never);
    with ``restore_best`` the student ends with the weights of its best evaluation
    (``TrainResult.best_step``), not the last step's. Returns the losses and the scores; the
    student is left in eval mode.
    """
    import torch
    import torch.nn.functional as F

    cfg = DistillConfig(**{**(config.__dict__ if config else {}), **kw})
    arrays = as_arrays(data)
    names = tuple(input_names) if input_names else tuple(k for k in arrays if k != "labels")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise GraphoptError(f"distillation data lacks input(s) {missing}; it has {sorted(arrays)}")
    lmap = dict(layer_map) if layer_map is not None else default_layer_map(teacher, student)
    t_layers, s_layers = layer_list(teacher)[1], layer_list(student)[1]
    for s, t in lmap.items():
        if not (0 <= s < len(s_layers) and 0 <= t < len(t_layers)):
            raise GraphoptError(f"layer map {s} -> {t}: the student has {len(s_layers)} layers, "
                                f"the teacher {len(t_layers)}")
    if teacher_cache is not None:
        arrays = {**arrays, **teacher_outputs(teacher, arrays, names, sorted(set(lmap.values())), teacher_cache,
                                              progress=progress)}
    cached = teacher_cache is not None
    t_hid, s_hid = _Hidden([] if cached else t_layers), _Hidden(s_layers)
    teacher.eval()
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    rest = [p for p in params if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    warm = max(1, int(cfg.warmup * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
    T = cfg.temperature

    def step(i: int) -> float:
        b = batch_at(arrays, i, cfg.batch, cfg.seed)
        feeds = {n: torch.from_numpy(np.ascontiguousarray(b[n])) for n in names}
        if cached:
            t_logits = torch.from_numpy(np.ascontiguousarray(b[_T_LOGITS]))
            t_out = {t: torch.from_numpy(np.ascontiguousarray(b[_t_hidden(t)])) for t in lmap.values()}
        else:
            with torch.no_grad():
                t_logits = logits_of(teacher(**feeds)).float()
            t_out = {t: t_hid.out[t] for t in lmap.values()}
        s_logits = logits_of(student(**feeds)).float()
        loss = cfg.alpha_kl * T * T * F.kl_div(F.log_softmax(s_logits / T, -1), F.log_softmax(t_logits / T, -1),
                                                 reduction="batchmean", log_target=True)
        if cfg.alpha_hidden and lmap:
            mask = feeds.get("attention_mask")
            mse = 0.0
            for s, t in lmap.items():
                diff = (s_hid.out[s] - t_out[t].detach()) ** 2
                if mask is not None and diff.dim() == 3 and mask.shape == diff.shape[:2]:
                    m = mask.to(diff.dtype).unsqueeze(-1)
                    mse = mse + (diff * m).sum() / (m.sum() * diff.shape[-1]).clamp(min=1.0)
                else:
                    mse = mse + diff.mean()
            loss = loss + cfg.alpha_hidden * mse / len(lmap)
        if cfg.alpha_ce and "labels" in b:
            loss = loss + cfg.alpha_ce * F.cross_entropy(s_logits, torch.from_numpy(b["labels"]).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        return float(loss.detach())

    def score() -> float:
        assert evaluate is not None
        student.eval()
        try:
            with torch.no_grad():
                return float(evaluate(student))
        finally:
            student.train()

    sig = {"kind": "distill", **cfg.__dict__, "layer_map": sorted(lmap.items()),
           "student_params": int(sum(p.numel() for p in student.parameters()))}
    try:
        result = run_loop(step, steps=cfg.steps, modules={"student": student, "opt": opt, "sched": sched},
                          checkpoint=checkpoint, every=every, signature=sig, progress=progress, desc="distilling",
                          evaluate=score if evaluate is not None else None, eval_every=eval_every, patience=patience,
                          restore="student" if restore_best else None)
    finally:
        t_hid.close()
        s_hid.close()
        student.eval()
    return result
