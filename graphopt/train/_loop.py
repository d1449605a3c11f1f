"""The training loop shared by distillation and QAT: deterministic batches, progress, checkpoints.

Batches are a pure function of (seed, step): epoch ``e`` uses permutation ``rng(seed + e)``, so
a run resumed from a checkpoint at step ``k`` sees exactly the batches the uninterrupted run
would have seen from ``k`` on. A checkpoint (model, optimizer, scheduler, step, losses) is
written atomically every ``every`` steps and when the run is interrupted (Ctrl-C); the next
call with the same ``checkpoint`` path resumes from it. An ``evaluate`` callback (a validation
score, higher is better) runs every ``eval_every`` steps; its history is kept in the checkpoint,
and with ``patience`` the run stops once that many evaluations in a row did not beat the best.
With ``restore`` (a key of ``modules``), that module ends the run with its weights of the best
evaluation, not the last step's (early stopping's usual contract); the best weights are kept in
the checkpoint too, so a resumed run restores the same ones.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import GraphoptError

__all__ = ["TrainResult", "run_loop", "as_arrays", "batch_at"]

logger = logging.getLogger("graphopt.train")


@dataclass
class TrainResult:
    """What a training run did: steps run (in total and in this call), losses, seconds of this call."""

    steps: int
    resumed_from: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, validation score)
    stopped_early: bool = False
    best_step: int | None = None  # the step whose weights were restored (None: the last step's kept)


def as_arrays(data: Any) -> dict[str, np.ndarray]:
    """Training data as one dict of equally long arrays: a dict, an .npz file or a folder of .npz."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        files = sorted(p.glob("*.npz")) if p.is_dir() else [p]
        if not files or not all(f.exists() for f in files):
            raise GraphoptError(f"training data {p}: no .npz file there")
        parts = []
        for f in files:
            with np.load(f) as z:
                parts.append({k: z[k] for k in z.files})
        keys = set(parts[0])
        if any(set(x) != keys for x in parts):
            raise GraphoptError(f"training data {p}: the .npz files do not hold the same arrays")
        data = {k: np.concatenate([x[k] for x in parts]) for k in sorted(keys)}
    elif isinstance(data, (list, tuple)):  # a list of feed dicts (calibration batches)
        if not data:
            raise GraphoptError("training data: empty list")
        data = {k: np.concatenate([np.asarray(b[k]) for b in data]) for k in data[0]}
    if not isinstance(data, dict) or not data:
        raise GraphoptError(f"training data must be a dict of arrays, a list of feed dicts, an .npz file or a "
                            f"folder of them; got {type(data).__name__}")
    out = {k: np.asarray(v) for k, v in data.items()}
    sizes = {k: len(v) for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise GraphoptError(f"training data: arrays of different lengths {sizes}")
    return out


def batch_at(data: dict[str, np.ndarray], step: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """The rows of batch ``step`` (see the module docstring)."""
    n = len(next(iter(data.values())))
    per_epoch = max(1, n // batch)  # the ragged tail of an epoch is dropped
    epoch, i = divmod(step, per_epoch)
    rows = np.random.default_rng(seed + epoch).permutation(n)[i * batch:(i + 1) * batch]
    out = {k: v[rows] for k, v in data.items()}
    if "attention_mask" in out and out["attention_mask"].ndim == 2:  # trim padding columns shared by the batch
        width, full = max(1, int(out["attention_mask"].sum(1).max())), out["attention_mask"].shape[1]
        # per-token arrays: 2-D integer inputs and [rows, seq, ...] states (not float logits [rows, classes])
        out = {k: (v[:, :width] if v.ndim >= 2 and v.shape[1] == full and (v.ndim > 2 or v.dtype.kind in "iub")
                   else v) for k, v in out.items()}
    return out


def _save(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_loop(step_fn: Callable[[int], float], *, steps: int, modules: dict[str, Any],
             checkpoint: str | os.PathLike | None = None, every: int = 50, signature: dict[str, Any] | None = None,
             progress: bool | None = None, desc: str = "training", evaluate: Callable[[], float] | None = None,
             eval_every: int = 0, patience: int = 0, restore: str | None = None) -> TrainResult:
    """Call ``step_fn(step) -> loss`` for steps ``0..steps-1`` (or from a checkpoint's step on).

    ``modules``: what a checkpoint holds (objects with ``state_dict``/``load_state_dict``: the
    model, optimizer, scheduler). ``signature``: settings a checkpoint must share to be resumed
    (a checkpoint of another run is refused, not silently mixed in). ``progress``: a tqdm bar
    (default: when stderr is a terminal); otherwise a log line every tenth of the run
    and at least once a minute. ``evaluate() -> score`` (higher is better; the model is put back
    in train mode after it) every ``eval_every`` steps; ``patience`` > 0: stop after that many
    evaluations in a row without a new best (the signature's ``steps`` and LR schedule stay).
    ``restore``: the key of the module given back with its weights at the best evaluation.
    """
    import torch
    from tqdm.auto import tqdm

    ckpt = Path(checkpoint) if checkpoint is not None else None
    sig = dict(signature or {}, steps=steps)
    start, losses, evals, stopped = 0, [], [], False
    best: tuple[int, dict[str, Any]] | None = None  # (step, weights) of the best evaluation so far
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("signature") != sig:
            raise GraphoptError(f"checkpoint {ckpt} is of another run ({state.get('signature')} != {sig}); "
                                "remove it or give another path")
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        start, losses = int(state["step"]), list(state["losses"])
        evals = [tuple(e) for e in state.get("evals", [])]
        stopped = bool(state.get("stopped"))  # an early-stopped run stays stopped
        best = state.get("best")
        torch.set_rng_state(state["rng"])  # dropout masks continue as in an uninterrupted run
        logger.info("%s: resumed from %s at step %d of %d", desc, ckpt, start, steps)

    def save(step: int) -> None:
        if ckpt is not None:
            _save(ckpt, {"signature": sig, "step": step, "losses": losses, "evals": evals, "stopped": stopped,
                         "rng": torch.get_rng_state(), "best": best,
                         "modules": {k: m.state_dict() for k, m in modules.items()}})

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=steps, initial=start, desc=desc, disable=not show, dynamic_ncols=True)
    t0 = last_log = time.perf_counter()
    step = start
    tenth = max(1, steps // 10)

    def flat() -> bool:  # the last `patience` evaluations all below the best before them
        if patience <= 0 or len(evals) <= patience:
            return False
        return max(v for _, v in evals[-patience:]) <= max(v for _, v in evals[:-patience])

    try:
        while step < steps and not stopped:
            loss = float(step_fn(step))
            losses.append(loss)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            now = time.perf_counter()
            if not show and (step % tenth == 0 or step == steps or now - last_log > 60):
                last_log = now
                logger.info("%s: step %d/%d loss %.4f (%.1f s/step)", desc, step, steps, loss,
                            (now - t0) / (step - start))
            if evaluate is not None and eval_every > 0 and (step % eval_every == 0 or step == steps):
                evals.append((step, float(evaluate())))
                if restore is not None and evals[-1][1] > max((v for _, v in evals[:-1]), default=-np.inf):
                    best = (step, {k: v.detach().clone() for k, v in modules[restore].state_dict().items()})
                logger.info("%s: step %d validation %.4f (best %.4f)", desc, step, evals[-1][1],
                            max(v for _, v in evals))
                stopped = flat() and step < steps
                if stopped:
                    logger.info("%s: validation flat for %d evaluations, stopped at step %d", desc, patience, step)
            if ckpt is not None and (step % every == 0 or step == steps or stopped):
                save(step)
    except KeyboardInterrupt:
        save(step)
        bar.close()
        if ckpt is not None:
            logger.warning("%s: interrupted at step %d; checkpoint %s (run again to resume)", desc, step, ckpt)
        raise
    bar.close()
    best_step = None
    if restore is not None and best is not None and best[0] != step:  # the last step was not the best
        modules[restore].load_state_dict(best[1])
        best_step = best[0]
        logger.info("%s: weights of step %d restored (validation %.4f)", desc, best_step, dict(evals)[best_step])
    return TrainResult(steps=step, resumed_from=start, losses=losses, seconds=time.perf_counter() - t0,
                       evals=evals, stopped_early=stopped, best_step=best_step)
