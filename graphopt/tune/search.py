"""Search strategies over one space (per-group int8/bf16/fp32 plus global knobs).

- ``pareto`` (graphopt): a solver over the cost and error tables gives the predicted
  accuracy/latency front (per group, dominated precisions dropped; from the fastest recipe,
  repeatedly take the move with the best error removed per second added: the convex hull of
  this multiple-choice knapsack), seeded with INC's op-type recipes (each op kind at each
  precision), which the hull of an additive error model can miss. :class:`PointSearch` then
  scores the fastest candidate whose *corrected* predicted loss is within the tolerance: every
  verified score re-calibrates the map from predicted error to score loss, and passes and
  failures bound the rest. Global knobs (SmoothQuant alpha, observer, per-channel) are chosen
  first on the all-int8 model, ranked by the probe error (no user evaluation).
- ``basic`` (INC's order): all-int8, then recipes (knob variants), then op-type-wise fallback
  (bf16 then fp32), then per-op fallback in sensitivity order, accumulating; stops at the first
  candidate that meets the tolerance.
- ``greedy`` (NNCF's ``quantize_with_accuracy_control``): all-int8, then rank groups on the probe
  samples where int8 and fp32 disagree most and revert the worst to fp32 one at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .space import Group, Recipe
from .tables import CostTable, ErrorTable

__all__ = ["pareto_front", "op_type_recipes", "group_kinds", "Point", "PointSearch", "basic_order", "greedy_order",
           "KNOB_SPACE"]

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


def group_kinds(groups: Sequence[Group]) -> dict[str, list[str]]:
    """Group names by op kind (INC's op types): the op type, attention products apart."""
    kinds: dict[str, list[str]] = {}
    for g in groups:
        kinds.setdefault("MatMul(act,act)" if g.act_act else g.op_type, []).append(g.name)
    return kinds


def op_type_recipes(groups: Sequence[Group], precisions: Sequence[str], knobs: dict[str, Any],
                    max_kinds: int = 4) -> list[tuple[str, Recipe]]:
    """Every op kind at every precision, in every combination (all-fp32 left out: not quantized), e.g.
    "linear layers bf16, attention products int8". An additive error model's hull can miss these
    (on MiniLM it never proposed that one, INC's winning step); with more than ``max_kinds`` kinds
    (3^k recipes) only the one-kind-changed recipes are made."""
    kinds = group_kinds(groups)
    names = list(kinds)
    if len(names) <= max_kinds:
        combos = list(itertools.product(precisions, repeat=len(names)))
    else:
        combos = [tuple(p if i == j else "int8" for i in range(len(names))) for j in range(len(names))
                  for p in precisions]
    out = []
    for combo in combos:
        if all(p == "fp32" for p in combo):
            continue
        label = "op-type " + ", ".join(f"{k}={p}" for k, p in zip(names, combo))
        out.append((label, Recipe.make({n: p for k, p in zip(names, combo) for n in kinds[k]}, **knobs)))
    return out


@dataclass(frozen=True)
class Point:
    """A candidate: where it came from (the phase name in trials.jsonl) and its recipe."""

    label: str
    recipe: Recipe


_RANK = {"int8": 0, "bf16": 1, "fp32": 2}


class PointSearch:
    """Which candidates to score next, learning from the verified ones.

    The candidates are the predicted front and ``seeds`` (the op-type recipes). A recipe's error
    ``E_lam`` sums each group's error at its precision from the table blended with the table's mean
    over groups, ``lam * e[g][p] + (1 - lam) * mean_g e[g][p]``: ``lam`` = 1 trusts the per-group
    errors; lower values say they are mis-attributed (a leave-one-out table is when one group masks
    the others), so what counts is how many groups are at each precision. ``lam`` stays 1 unless
    the verified candidates (first the all-int8 model) disagree on the loss per unit of error by
    more than 2x; each new ``lam`` adds its own front. The loss a recipe costs the user's score is
    predicted as that ratio, interpolated in log ``E`` between the verified candidates, times ``E``.
    Candidates not predicted faster than all-fp32 are never scored. After each round a candidate
    that meets the bar rules out every candidate not predicted faster than it by more than timing
    noise (``noise``), and one that fails rules out every candidate with
    no group more precise than it. With ``anchors`` (whole-model timings) the cost table is fitted to
    them and re-fitted with each verified candidate's measured time, which adds a front too. The next
    proposal is the fastest remaining candidate predicted to lose at most ``margin`` of the allowed
    loss (a near-miss costs an evaluation and teaches little); when none is and nothing has met the
    bar yet, the safest (least predicted error) one, so a verified answer is always reached;
    otherwise the search is over.
    """

    def __init__(self, groups: Sequence[Group], cost: CostTable, err: ErrorTable, precisions: Sequence[str],
                 producers: dict[str, list[str]], knobs: dict[str, Any], allowed: float,
                 seeds: Sequence[tuple[str, Recipe]] = (), noise: float = 0.03, margin: float = 0.85,
                 anchors: Sequence[tuple[Recipe, float]] = ()) -> None:
        self.groups, self.err = list(groups), err
        self.one_node, self.anchors = cost, list(anchors)
        self.cost = cost.fitted(self.anchors, producers) if self.anchors else cost
        self.precisions, self.producers, self.knobs = list(precisions), producers, knobs
        self.allowed, self.noise, self.margin = allowed, noise, margin
        self.mean = {p: float(np.mean([err.error[g.name][p] for g in groups])) for p in precisions}
        self.points: dict[str, Point] = {}
        self.seen: set[str] = set()
        self.obs: list[tuple[Recipe, float]] = []      # (recipe, measured loss)
        self.failed: list[Recipe] = []
        self.passed: list[Recipe] = []
        self.lam = 1.0
        self.ratios: list[tuple[float, float]] = []   # (log predicted error, measured loss / error)
        self.fronts: dict[tuple[float, int], list[tuple[Recipe, float, float]]] = {}  # by (lam, anchors)
        self._lat: dict[str, float] = {}
        self._add_front()
        for label, r in seeds:
            self._add(label, r)

    def table(self, lam: float | None = None) -> ErrorTable:
        lam = self.lam if lam is None else lam
        return ErrorTable({g: {p: lam * e[p] + (1 - lam) * self.mean[p] for p in self.precisions}
                           for g, e in self.err.error.items()}, self.err.all_int8)

    def error(self, recipe: Recipe, lam: float | None = None) -> float:
        lam = self.lam if lam is None else lam
        return sum(lam * self.err.error[g.name][p] + (1 - lam) * self.mean[p]
                   for g in self.groups for p in [recipe.precision(g.name)])

    def predicted_loss(self, recipe: Recipe) -> float:
        """``ratio(E) * E`` with ``E`` the recipe's error under the fitted ``lam`` and ``ratio`` the
        measured loss per unit of error, interpolated in log ``E`` between the verified candidates
        (the nearest one's outside them): near the bar the near-bar candidates count, not all-int8."""
        e = self.error(recipe)
        if e <= 0:
            return 0.0
        if not self.ratios:
            return np.inf
        x = np.log(e)
        xs, rs = zip(*self.ratios)
        return float(np.interp(x, xs, rs)) * e

    def latency(self, recipe: Recipe) -> float:
        """Predicted seconds under the table as fitted so far."""
        k = recipe.key()
        if k not in self._lat:
            self._lat[k] = self.cost.predict(recipe, self.producers)
        return self._lat[k]

    def _add(self, label: str, r: Recipe) -> None:
        self.points.setdefault(r.key(), Point(label, r))

    def _add_front(self) -> None:
        key = (self.lam, len(self.anchors))
        if key in self.fronts:
            return
        front = pareto_front(self.groups, self.cost, self.table(), self.precisions, self.producers, self.knobs)
        self.fronts[key] = front
        tag = "front" + (f" lam={self.lam:.2f}" if self.lam != 1.0 else "") + \
            (f" refit{len(self.anchors)}" if len(self.fronts) > 1 and self.anchors else "")
        for i, (r, _, _) in enumerate(front):
            self._add(f"{tag} {i}/{len(front) - 1}", r)

    def observe(self, recipe: Recipe, loss: float, passed: bool, seconds: float | None = None) -> None:
        """A verified candidate: its loss (``Acceptance.loss``), whether it met the bar, and its measured
        seconds, which join the whole-model timings the cost table is fitted to (when it was given
        ``anchors``): a mixed recipe pins the cost of precision changes no uniform anchor shows."""
        self.seen.add(recipe.key())
        self.obs.append((recipe, max(loss, 0.0)))
        if passed:
            self.passed.append(recipe)
        else:
            self.failed.append(recipe)
        if seconds is not None and self.anchors and recipe.key() not in {r.key() for r, _ in self.anchors}:
            self.anchors.append((recipe, seconds))
            self.cost = self.one_node.fitted(self.anchors, self.producers)
            self._lat = {}
        self._fit()

    def _fit(self) -> None:
        """``lam``: 1 while the verified candidates' loss-per-error ratios agree within a factor of 2
        (the table ranks groups well enough); otherwise the ``lam`` under which they agree best (least
        squares on log ratios; ties keep the higher ``lam``). Then the ratios under that ``lam``."""
        eps = 0.05 * self.allowed  # a loss below 5 % of the allowed one counts as about none

        def log_ratios(lam: float) -> np.ndarray:
            return np.array([np.log(loss + eps) - np.log(e) for r, loss in self.obs
                             for e in [self.error(r, lam)] if e > 0])

        d = log_ratios(1.0)
        lam = 1.0
        if d.size >= 2 and np.ptp(d) > np.log(2.0):
            sse = {round(float(x), 2): float(np.sum((v - v.mean()) ** 2)) for x in np.linspace(1.0, 0.0, 21)
                   for v in [log_ratios(x)] if v.size}
            lam = min(sse, key=lambda x: (round(sse[x], 9), -x))
        self.lam = lam
        self.ratios = sorted((float(np.log(e)), loss / e) for r, loss in self.obs for e in [self.error(r)] if e > 0)
        self._add_front()

    def _dominated(self, r: Recipe) -> bool:
        """No group more precise than in some failed candidate: it fails too."""
        return any(all(_RANK[r.precision(g.name)] <= _RANK[f.precision(g.name)] for g in self.groups)
                   for f in self.failed)

    def live(self) -> list[Point]:
        """Candidates not scored and not ruled out, fastest first."""
        fastest_pass = min((self.latency(r) for r in self.passed), default=np.inf)
        fp32 = self.latency(Recipe.make({g.name: "fp32" for g in self.groups}, **self.knobs))
        return sorted((p for k, p in self.points.items() if k not in self.seen
                       and self.latency(p.recipe) < min((1 - self.noise) * fastest_pass, fp32)
                       and not self._dominated(p.recipe)), key=lambda p: self.latency(p.recipe))

    def propose(self, k: int = 1) -> list[Point]:
        live = self.live()
        ok = [p for p in live if self.predicted_loss(p.recipe) <= self.margin * self.allowed]
        if ok:  # the fastest predicted to pass and (k > 1) safer ones, spread over the first half of the rest
            picks = [ok[(len(ok) - 1) * j // (2 * k)] for j in range(k)]
            return list({p.recipe.key(): p for p in picks}.values())
        if live and not self.passed:
            return [min(live, key=lambda p: (self.error(p.recipe), self.latency(p.recipe)))]
        return []


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
    for kind, names in group_kinds(groups).items():
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
