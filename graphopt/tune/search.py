"""Search strategies over one space (per-group int8/bf16/fp32 plus global knobs).

- ``pareto`` (graphopt): a solver over the cost and error tables gives the predicted
  accuracy/latency front (per group, dominated precisions dropped; from the fastest recipe,
  repeatedly take the move with the best error removed per second added: the convex hull of
  this multiple-choice knapsack); the front is then searched with the user's function, k points
  at a time (k = workers), narrowing to the fastest verified point within tolerance. Global knobs
  (SmoothQuant alpha, observer, per-channel) are chosen first by Optuna on the all-int8 model.
- ``basic`` (INC's order): all-int8, then recipes (knob variants), then op-type-wise fallback
  (bf16 then fp32), then per-op fallback in sensitivity order, accumulating; stops at the first
  candidate that meets the tolerance.
- ``greedy`` (NNCF's ``quantize_with_accuracy_control``): all-int8, then rank groups on the probe
  samples where int8 and fp32 disagree most and revert the worst to fp32 one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .space import Group, Recipe
from .tables import CostTable, ErrorTable

__all__ = ["pareto_front", "basic_order", "greedy_order", "KNOB_SPACE"]

logger = logging.getLogger(__name__)

KNOB_SPACE = {"smoothquant": [0.8, 0.5, None], "observer": ["minmax", "percentile", "mse"], "per_channel": [True]}


def pareto_front(groups: Sequence[Group], cost: CostTable, err: ErrorTable, precisions: Sequence[str],
                 producers: dict[str, list[str]], knobs: dict[str, Any]) -> list[tuple[Recipe, float, float]]:
    """(recipe, predicted seconds, predicted error) along the predicted front, fastest first."""
    opts: dict[str, list[str]] = {}
    for g in groups:
        c, e = cost.cost[g.name], err.error[g.name]
        ps = sorted(precisions, key=lambda p: (c[p], e[p]))
        keep: list[str] = []
        for p in ps:  # drop a precision slower than one already kept and no more accurate
            if all(e[p] < e[q] for q in keep):
                keep.append(p)
        opts[g.name] = keep
    cur = {g: o[0] for g, o in opts.items()}

    def point() -> tuple[Recipe, float, float]:
        r = Recipe.make(cur, **knobs)
        return r, cost.predict(r, producers), err.predict(r)

    chain = [point()]
    while True:
        best, best_ratio = None, -np.inf
        for g, o in opts.items():
            i = o.index(cur[g])
            for p in o[i + 1:]:
                de = err.error[g][cur[g]] - err.error[g][p]
                dt = cost.cost[g][p] - cost.cost[g][cur[g]]
                ratio = np.inf if dt <= 0 else de / dt
                if de > 0 and ratio > best_ratio:
                    best, best_ratio = (g, p), ratio
        if best is None:
            break
        cur[best[0]] = best[1]
        chain.append(point())
    chain.sort(key=lambda t: t[1])
    front, best_err = [], np.inf
    for r, t, e in chain:  # keep the non-dominated points
        if e < best_err:
            front.append((r, t, e))
            best_err = e
    return front


def basic_order(groups: Sequence[Group], err: Callable[[], ErrorTable], precisions: Sequence[str],
                knobs: dict[str, Any], best_knobs: Callable[[], dict[str, Any]]) -> Iterator[tuple[str, Recipe]]:
    """INC's basic order; ``best_knobs()`` is asked after the recipe phase (the most accurate so far),
    ``err()`` (the error table, for the per-op order) only when the per-op phase is reached."""
    yield "all-int8", Recipe.make({}, **knobs)
    for k, values in KNOB_SPACE.items():
        for v in values:
            if v != knobs[k]:
                yield f"recipe {k}={v}", Recipe.make({}, **dict(knobs, **{k: v}))
    kb = best_knobs()
    fallbacks = [p for p in ("bf16", "fp32") if p in precisions]
    kinds: dict[str, list[str]] = {}
    for g in groups:
        kinds.setdefault("MatMul(act,act)" if g.act_act else g.op_type, []).append(g.name)
    for kind, names in kinds.items():
        for p in fallbacks:
            yield f"op-type {kind}->{p}", Recipe.make({n: p for n in names}, **kb)
    cur: dict[str, str] = {}
    for name, _ in err().ranking("int8"):
        for p in fallbacks:
            cur[name] = p
            yield f"per-op {name}->{p}", Recipe.make(dict(cur), **kb)


def greedy_order(ranking: Callable[[], Sequence[tuple[str, float]]],
                 knobs: dict[str, Any]) -> Iterator[tuple[str, Recipe]]:
    """NNCF's order: all-int8, then (ranking computed only then) revert the worst-ranked group to fp32,
    one more at a time."""
    yield "all-int8", Recipe.make({}, **knobs)
    cur: dict[str, str] = {}
    for name, _ in ranking():
        cur[name] = "fp32"
        yield f"revert {name}", Recipe.make(dict(cur), **knobs)


def disagreement_rows(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], probe: Sequence[dict[str, np.ndarray]],
                      frac: float = 0.5) -> list[dict[str, np.ndarray]]:
    """The probe rows (samples) whose int8 output differs most from fp32, as one batch per probe batch."""
    scored = []
    for b, (r, g) in enumerate(zip(ref, got)):
        r2, g2 = r.reshape(r.shape[0], -1), g.reshape(g.shape[0], -1)
        e = np.linalg.norm(g2 - r2, axis=1) / np.maximum(np.linalg.norm(r2, axis=1), 1e-12)
        scored += [(float(x), b, i) for i, x in enumerate(e)]
    scored.sort(reverse=True)
    keep = scored[:max(1, int(len(scored) * frac))]
    out = []
    for b in sorted({b for _, b, _ in keep}):
        rows = sorted(i for _, bb, i in keep if bb == b)
        out.append({k: v[rows] for k, v in probe[b].items()})
    return out
