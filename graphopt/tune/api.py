"""``graphopt.tune``: the fastest quantized model within an accuracy tolerance.

>>> def evaluate(run):                       # run(feeds) -> list of outputs
...     return accuracy_of(run)              # doctest: +SKIP
>>> res = graphopt.tune("model.onnx", evaluate, calib_batches, tolerance=0.01, outdir="tuned")  # doctest: +SKIP
>>> res.recipe, res.accuracy, res.latency_ms                                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..ir import Model
from .acceptance import Acceptance, as_score
from .executor import LocalExecutor, RayExecutor, Worker
from .search import KNOB_SPACE, PointSearch, basic_order, disagreement_rows, greedy_order, op_type_recipes
from .space import Group, Recipe, find_groups, load_function, make_runner, preset_for, target_precisions
from .tables import CostTable, ErrorTable, Probe, measure_costs, measure_errors

__all__ = ["tune", "TuneResult", "STRATEGIES"]

logger = logging.getLogger(__name__)

STRATEGIES = ("pareto", "basic", "greedy")


@dataclass
class TuneResult:
    """What tuning chose and how it got there."""

    model: Model
    recipe: Recipe
    met: bool
    message: str
    baseline: float
    accuracy: float
    latency_ms: float | None
    baseline_latency_ms: float | None
    evaluations: int
    wall_seconds: float
    strategy: str
    target: str
    test_accuracy: float | None = None
    baseline_test_accuracy: float | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    outdir: Path | None = None
    baseline_samples: list[float] | None = None
    acceptance: str = ""

    def summary(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in {
            "strategy": self.strategy, "target": self.target, "met": self.met, "message": self.message,
            "baseline": self.baseline, "accuracy": self.accuracy, "test_accuracy": self.test_accuracy,
            "baseline_test_accuracy": self.baseline_test_accuracy, "latency_ms": self.latency_ms,
            "baseline_latency_ms": self.baseline_latency_ms, "evaluations": self.evaluations,
            "acceptance": self.acceptance,
            "wall_seconds": round(self.wall_seconds, 1), "recipe": self.recipe.to_dict(),
            "outdir": self.outdir}.items()}


class _Log:
    """trials.jsonl: one line per scored candidate; a second run with the same file reuses them."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash
                self.done[row["key"]] = row
            logger.info("resuming: %d trials in %s", len(self.done), path)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if row.get("resumed"):
            return
        self.done[row["key"]] = row
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(row, default=float) + "\n")


def _as_model(model: Any) -> Model:
    from ..io import from_onnx, load, to_onnx

    if isinstance(model, Model):
        return from_onnx(to_onnx(model))
    path = getattr(model, "path", model)
    return load(path)


def _producers(model: Model, groups) -> dict[str, list[str]]:
    """For each group, the groups whose outputs reach its first input through non-group nodes."""
    names = {g.name for g in groups}
    by_out = {o.name: n for n in model.graph for o in n.outputs}
    out: dict[str, list[str]] = {}
    for g in groups:
        seen, found, stack = set(), [], [g.inputs[0]]
        while stack:
            v = stack.pop()
            n = by_out.get(v)
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            if n.name in names:
                found.append(n.name)
            else:
                stack += [i.name for i in n.inputs if i is not None and i.const is None]
        out[g.name] = found
    return out


def tune(model: Any, evaluate: Callable | str, data: Any, tolerance: float = 0.01, relative: bool = True,
         target: str = "native", strategy: str = "pareto", max_trials: int = 50, timeout: float | None = None,
         workers: int = 1, address: str | None = None, outdir: str | os.PathLike | None = None, *,
         test_evaluate: Callable | str | None = None, knob_trials: int = 3, threads: int | None = None,
         progress: bool | None = None, cache_dir: Path | None = None, prune: Sequence[float] = (),
         reference: float | Sequence[float] | None = None, confidence: float | None = 0.9) -> TuneResult:
    """Find the fastest model on ``target`` whose ``evaluate`` score is within ``tolerance`` of fp32.

    :param model: a Model, an ONNX path or a ``ModelSpec``/``BBCTask`` (anything with ``.path``).
    :param evaluate: ``evaluate(run) -> float`` (higher is better), ``run(feeds) -> list of outputs``;
        or ``"FILE.py:FUNC"`` (needed for Ray workers on other machines). It may return one score per
        sample instead (a 1-D array, e.g. 1.0/0.0 per correctly classified example; the score is its
        mean): candidates are then accepted on a paired confidence bound (``confidence``), which keeps
        a search over many candidates from overfitting a small validation set.
    :param data: calibration data: a list of feed dicts, a folder of .npz batches or one .npz file.
    :param tolerance: the allowed loss, relative to the fp32 score (``relative``) or absolute.
    :param strategy: ``pareto`` (cost/error tables + front search), ``basic`` (INC) or ``greedy`` (NNCF).
    :param max_trials: user evaluations at most (the fp32 baseline included); ``timeout`` seconds at most.
    :param workers: scoring processes; > 1 or ``address`` runs them on Ray.
    :param outdir: model.onnx, recipe.json, trials.jsonl (resumable), pareto.png, report.html.
    :param test_evaluate: a held-out score reported for fp32 and the chosen model (never used to choose).
    :param prune: fractions of attention heads and FFN neurons to remove (``graphopt.prune`` with
        least-squares reconstruction, on the graph as imported) before the precision search, e.g.
        ``(0, 0.25, 0.5)``: each ratio is tuned against the unpruned fp32 score in ``OUTDIR/prune-NN``
        and the fastest model that meets the tolerance wins; its recipe carries the ratio.
    :param reference: the score the tolerance is taken from, or its per-sample scores (default: this
        model's fp32 score).
    :param confidence: with per-sample scores, accept a candidate only if the one-sided lower
        ``confidence`` bound of its mean paired difference to the reference is within the tolerance
        (:class:`graphopt.tune.acceptance.Acceptance`); ``None`` compares means only.
    :returns: a :class:`TuneResult`; never empty: when no quantized candidate meets the tolerance, the
        most accurate one is returned with ``met=False`` and a message saying so.
    """
    from ..quant.api import prepare_batches

    if any(r > 0 for r in prune):
        return _tune_pruned(model, evaluate, data, tolerance, relative, prune, outdir, progress,
                            dict(target=target, strategy=strategy, max_trials=max_trials, timeout=timeout,
                                 workers=workers, address=address, test_evaluate=test_evaluate,
                                 knob_trials=knob_trials, threads=threads, cache_dir=cache_dir,
                                 confidence=confidence))
    if strategy not in STRATEGIES:
        raise GraphoptError(f"unknown strategy '{strategy}' ({', '.join(STRATEGIES)})")
    if tolerance < 0:
        raise GraphoptError(f"tolerance must be >= 0, got {tolerance}")
    precisions = target_precisions(target)
    progress = sys.stderr.isatty() if progress is None else progress
    t_start = time.perf_counter()
    fp32 = _as_model(model)
    groups = find_groups(fp32)
    batches = prepare_batches(fp32, data)
    out = Path(outdir) if outdir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "trials.jsonl" if out is not None else None)
    eval_fn = load_function(evaluate)  # fails here, before any work, when FILE.py:FUNC is wrong
    from ..io import to_onnx

    args = (to_onnx(fp32).SerializeToString(), groups, batches, target, evaluate, threads)
    local = Worker(*args)
    local._evaluate = eval_fn
    use_ray = workers > 1 or address is not None
    ex: Any = RayExecutor(args, workers, address) if use_ray else LocalExecutor(local)
    lat_feeds = {k: np.asarray(v)[:1] for k, v in batches[0].items()}  # latency at batch 1, the model's shapes
    producers = _producers(fp32, groups)
    knobs0 = {"smoothquant": 0.8 if preset_for(fp32) == "transformer" else None, "observer": "minmax",
              "per_channel": True}
    state = {"evals": 0, "trial": len(log.done)}
    deadline = t_start + timeout if timeout else None
    cost: CostTable | None = None
    err: ErrorTable | None = None
    table_seconds = 0.0
    front: list = []

    def out_of_budget() -> bool:
        return state["evals"] >= max_trials or (deadline is not None and time.perf_counter() > deadline)

    def score(recipes: list[tuple[str, Recipe]], pred: dict[str, tuple[float, float]] | None = None) -> list[dict]:
        """Score (and time) recipes: logged ones are reused; the rest run as one parallel round."""
        rows: list[dict | None] = []
        todo = []
        for phase, r in recipes:
            k = r.key()
            if k in log.done:
                row = dict(log.done[k], resumed=True, phase=phase)
                rows.append(row)
            else:
                rows.append(None)
                todo.append((phase, r))
        room = max(0, max_trials - state["evals"])
        todo = todo[:room]
        if todo:
            ex.prepare([r for _, r in todo])
            accs = ex.accuracy([r for _, r in todo])
            lats = ex.latency([r for _, r in todo], lat_feeds)
            state["evals"] += len(todo)
            it = iter(zip(todo, accs, lats))
            for i, row in enumerate(rows):
                if row is not None:
                    continue
                try:
                    (phase, r), (acc, secs, pid, samples), lat = next(it)
                except StopIteration:
                    break
                state["trial"] += 1
                p = (pred or {}).get(r.key())
                if p is None and cost is not None and err is not None:
                    p = (cost.predict(r, producers), err.predict(r))
                rows[i] = {"key": r.key(), "trial": state["trial"], "strategy": strategy, "phase": phase,
                           "recipe": r.to_dict(), "counts": r.counts(groups), "accuracy": acc,
                           "latency_ms": lat * 1e3, "pred_latency_ms": None if p is None else p[0] * 1e3,
                           "pred_error": None if p is None else p[1], "eval_seconds": round(secs, 2),
                           "pid": pid, "time": time.time()}
                if samples is not None:
                    rows[i]["samples"] = samples
        done = [r for r in rows if r is not None]
        for r in done:
            log.add(r)
            logger.info("trial %s %-28s acc %.4f  %.2f ms%s", r["trial"], r["phase"][:28], r["accuracy"],
                        r["latency_ms"], "" if not r.get("resumed") else " (from trials.jsonl)")
        return done

    try:
        fp_recipe = Recipe.make({g.name: "fp32" for g in groups}, **knobs0)
        base_row = score([("baseline fp32", fp_recipe)])[0]
        baseline = base_row["accuracy"]
        accept = Acceptance.of(base_row.get("samples") or baseline if reference is None else reference,
                               tolerance, relative, confidence)
        bar = accept.bar

        def meets(row: dict) -> bool:
            return accept.meets(row["accuracy"], row.get("samples"))

        quantized = lambda r: any(v != "fp32" for v in r["recipe"]["nodes"].values()) or \
            len(r["recipe"]["nodes"]) < len(groups)  # noqa: E731
        if reference is not None and not meets(base_row):
            # a pruned model whose own fp32 already misses the bar: quantizing only adds error, so no
            # evaluation is spent on it (it would only find candidates that win by noise)
            raise _FloatMisses
        best_knobs = dict(knobs0)
        probe = batches[:min(2, len(batches))]
        probe_ref: list[Probe] = []

        def probe_error(knobs: dict[str, Any]) -> float:
            """The all-int8 model's error energy on the probe batches with these knobs: no user evaluation."""
            if not probe_ref:
                probe_ref.append(Probe(fp32, probe))
            return probe_ref[0].error(local.build(Recipe.make({}, **knobs)))

        if strategy == "pareto":
            best_knobs = _search_knobs(score, knobs0, knob_trials, fp32, out_of_budget, meets, probe_error)
        # the tables, from one calibration with the chosen knobs
        t_tab = time.perf_counter()
        cost = measure_costs(fp32, groups, lat_feeds, target, precisions, threads=threads, cache_dir=cache_dir,
                             progress=progress, saved=out / "cost_table.json" if out is not None else None)
        one_node, anchors = cost, []
        if base_row.get("latency_ms") and cost.total_fp32 > 0:
            anchors = _fit_costs(cost, ex, base_row, best_knobs, groups, precisions, lat_feeds,
                                 out / "anchors.json" if out is not None else None)
            cost = cost.fitted(anchors, producers)

        def error_table() -> ErrorTable:
            nonlocal err
            if err is None:
                err = measure_errors(fp32, groups, local.build(Recipe.make({}, **best_knobs)),
                                     probe_ref[0] if probe_ref else probe, precisions, progress=progress)
            return err

        int8_rows = [r for r in log.rows if r["key"] == Recipe.make({}, **best_knobs).key()]
        nothing_faster = all(row[p] >= row["int8"] for row in cost.cost.values() for p in row)
        if strategy == "pareto" and int8_rows and meets(int8_rows[0]) and nothing_faster:
            # all-int8 meets the bar and no group is faster at another precision: no candidate can win,
            # so not even the error table is measured
            logger.info("all-int8 meets the tolerance and no group runs faster at another precision")
        elif strategy == "pareto":
            search = PointSearch(groups, one_node, error_table(), precisions, producers, best_knobs, accept.allowed,
                                 seeds=op_type_recipes(groups, precisions, best_knobs), anchors=anchors)
            front = next(iter(search.fronts.values()))  # the first: the tables as measured
            table_seconds = time.perf_counter() - t_tab
            for r in log.rows:  # what is verified already (the knob search's all-int8 model)
                rec = Recipe.from_dict(r["recipe"])
                if r["phase"] != "baseline fp32" and quantized(r) and rec.knobs() == best_knobs:
                    search.observe(rec, accept.loss(r["accuracy"], r.get("samples")), meets(r), r["latency_ms"] / 1e3)
            _search_points(search, score, meets, accept, ex.workers, out_of_budget)
        elif strategy == "basic":
            def kb() -> dict[str, Any]:
                rows = [r for r in log.rows if r["phase"].startswith(("all-int8", "recipe"))]
                return Recipe.from_dict(max(rows, key=lambda r: r["accuracy"])["recipe"]).knobs() if rows else knobs0
            table_seconds = time.perf_counter() - t_tab
            _sequential(basic_order(groups, error_table, precisions, knobs0, kb), score, meets, ex.workers,
                        out_of_budget)
        else:
            def ranking() -> list[tuple[str, float]]:
                from ..quant.testing import run_ort

                quant_all = local.build(Recipe.make({}, **knobs0))
                ref = [run_ort(fp32, f, optimize=True)[0] for f in probe]
                got = [run_ort(quant_all, f, optimize=True)[0] for f in probe]
                worst = disagreement_rows(ref, got, probe)
                return measure_errors(fp32, groups, quant_all, worst, ("int8",)).ranking("int8")
            table_seconds = time.perf_counter() - t_tab
            _sequential(greedy_order(ranking, knobs0), score, meets, ex.workers, out_of_budget)
    except _FloatMisses:
        logger.info("fp32 at this model misses the tolerance against the reference: not searched")
    finally:
        ex.close()

    for r in log.rows:  # for the report: how far each candidate's paired bound is from the bar
        r["paired_lower"] = accept.lower_bound(r.get("samples"))
    rows = [r for r in log.rows if r["phase"] != "baseline fp32"]
    feasible = [r for r in rows if meets(r) and quantized(r)]
    if feasible:
        if strategy == "pareto":
            # the fastest measured; within 3 % of it (timing noise) the one predicted fastest
            fastest = min(r["latency_ms"] for r in feasible)
            near = [r for r in feasible if r["latency_ms"] <= 1.03 * fastest]
            chosen = min(near, key=lambda r: (r["pred_latency_ms"] or r["latency_ms"], r["latency_ms"]))
        else:  # INC and NNCF stop at (and return) the first candidate that meets the bar
            chosen = min(feasible, key=lambda r: r["trial"])
        met = True
        msg = (f"met the tolerance: {chosen['accuracy']:.4f} vs fp32 {baseline:.4f} "
               f"({accept.describe()}), {chosen['latency_ms']:.2f} ms vs fp32 {base_row['latency_ms']:.2f} ms")
        if base_row.get("latency_ms") and chosen["latency_ms"] >= base_row["latency_ms"]:
            # INC's complaint (#1617): an accepted quantized model slower than fp32; say so
            msg += " (no faster than fp32 here: fp32 itself is the faster choice)"
            logger.warning(msg)
    else:
        cands = [r for r in rows if quantized(r)] or [base_row]
        chosen = max(cands, key=lambda r: (r["accuracy"], -r["latency_ms"]))
        met = False
        msg = (f"no quantized candidate met the tolerance ({accept.describe()}, fp32 {baseline:.4f}) within "
               f"{state['evals']} evaluations; returning the most accurate one: {chosen['accuracy']:.4f}"
               + (" (candidates predicted no faster than fp32 are not scored)" if strategy == "pareto" else ""))
        if not rows:
            msg = (f"this model's fp32 score {baseline:.4f} already misses the tolerance against the reference "
                   f"({accept.describe()}): nothing searched")
        # a pruned model whose fp32 misses is the normal end of that ratio's search, not a problem
        (logger.info if not rows else logger.warning)(msg)
    recipe = Recipe.from_dict(chosen["recipe"])
    chosen_model = local.build(recipe)
    res = TuneResult(chosen_model, recipe, met, msg, baseline, chosen["accuracy"], chosen["latency_ms"],
                     base_row["latency_ms"], state["evals"], time.perf_counter() - t_start, strategy, target,
                     trials=list(log.rows), outdir=out, baseline_samples=base_row.get("samples"),
                     acceptance=accept.describe())
    if test_evaluate is not None:
        tfn = load_function(test_evaluate)
        res.test_accuracy = as_score(tfn(make_runner(chosen_model, target, threads)))[0]
        res.baseline_test_accuracy = as_score(tfn(make_runner(local.build(fp_recipe), target, threads)))[0]
    if out is not None:
        from .report import write_outputs

        write_outputs(out, res, groups, cost, err, front, table_seconds, bar)
    return res


class _FloatMisses(Exception):
    """The model's own fp32 misses the bar set by the reference (a pruned model): nothing to search."""


def _tune_pruned(model: Any, evaluate: Callable | str, data: Any, tolerance: float, relative: bool,
                 ratios: Sequence[float], outdir: str | os.PathLike | None, progress: bool | None,
                 kw: dict[str, Any]) -> TuneResult:
    """Prune ratio as an outer knob: one precision search per ratio, all against the unpruned fp32
    score; the fastest result that meets the tolerance (else the most accurate) is the answer."""
    from dataclasses import replace as _replace

    from ..pruning import prune as prune_model
    from ..quant.api import prepare_batches

    if any(not 0 <= r < 1 for r in ratios):
        raise GraphoptError(f"prune ratios must be in [0, 1), got {list(ratios)}")
    fp32 = _as_model(model)
    batches = prepare_batches(fp32, data)
    out = Path(outdir) if outdir is not None else None
    results: list[tuple[float, TuneResult]] = []
    reference: float | list[float] | None = None
    for r in sorted(set([0.0, *ratios])):
        m = _clone_model(fp32)
        if r > 0:
            m, rep = prune_model(m, batches, heads=r, ffn=r, level="O0", progress=bool(progress))
            logger.info("prune %.0f %%: %s", 100 * r, rep)
        sub = out / f"prune-{round(100 * r):02d}" if out is not None else None
        res = tune(m, evaluate, batches, tolerance, relative, outdir=sub, progress=progress, reference=reference,
                   **kw)
        if reference is None:  # every ratio against the unpruned fp32 score, sample by sample if given
            reference = res.baseline_samples or res.baseline
        res.recipe = _replace(res.recipe, prune=r)
        results.append((r, res))
    met = [(r, res) for r, res in results if res.met]
    r, best = (min(met, key=lambda t: t[1].latency_ms or float("inf")) if met
               else max(results, key=lambda t: (t[1].accuracy, -t[0])))
    best.baseline, best.baseline_latency_ms = results[0][1].baseline, results[0][1].baseline_latency_ms
    best.baseline_test_accuracy = results[0][1].baseline_test_accuracy
    own = {id(res): res.evaluations for _, res in results}  # each ratio's own count, for the summary
    best.evaluations = sum(own.values())
    best.message = (f"prune {100 * r:.0f} % heads/FFN: {best.message} (searched ratios "
                    + ", ".join(f"{100 * q:.0f} %: {res.latency_ms:.2f} ms acc {res.accuracy:.4f}"
                                + ("" if res.met else " (not met)") for q, res in results) + ")")
    if out is not None:
        import shutil

        from ..io.atomic import write_text

        src = out / f"prune-{round(100 * r):02d}"
        for name in ("model.onnx", "model.onnx.data", "pareto.png", "report.html"):
            if (src / name).exists():
                shutil.copyfile(src / name, out / name)
        write_text(out / "recipe.json", json.dumps(best.recipe.to_dict(), indent=1, sort_keys=True))
        summary = best.summary() | {"prune_ratios": [{"prune": q, **res.summary(), "evaluations": own[id(res)]}
                                                     for q, res in results]}
        write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
        best.outdir = out
    return best


def _clone_model(m: Model) -> Model:
    from ..io import from_onnx, to_onnx

    return from_onnx(to_onnx(m))


def _fit_costs(cost: CostTable, ex: Any, base_row: dict, knobs: dict[str, Any], groups: Sequence[Group],
               precisions: Sequence[str], feeds: dict[str, np.ndarray],
               saved: Path | None = None) -> list[tuple[Recipe, float]]:
    """The whole-model times to fit the one-node table to (``CostTable.fitted``): the measured fp32
    baseline plus one timing (no user evaluation) of each uniform precision, all-int8 with the chosen
    knobs. The timings are kept in
    ``saved`` (OUTDIR/anchors.json): a resumed run fits the same table, so it asks for the same
    candidates (re-timing on a busy machine would move the front and cost new evaluations)."""
    anchors = [(Recipe.make({g.name: "fp32" for g in groups}, **knobs), base_row["latency_ms"] / 1e3)]
    # uniform anchors only: an int8/fp32-alternating anchor (to fit transition costs) made the fit worse on
    # the BBC model (18.4 % vs 5.8 % mean abs error on mixed recipes, same run): its many requantizations
    # are not what mixed front points have
    timed = [Recipe.make({g.name: p for g in groups}, **knobs) for p in precisions if p != "fp32"]
    known: dict[str, float] = {}
    if saved is not None and saved.exists():
        try:
            known = {str(k): float(v) for k, v in json.loads(saved.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            known = {}  # unreadable: time again
    missing = [r for r in timed if r.key() not in known]
    if missing:
        known.update(zip((r.key() for r in missing), ex.latency(missing, feeds)))
        if saved is not None:
            from ..io.atomic import write_text

            write_text(saved, json.dumps(known, indent=1, sort_keys=True))
    anchors += [(r, known[r.key()]) for r in timed]
    logger.info("cost table anchors: %s", ", ".join(f"{r.counts(groups)} {t * 1e3:.2f} ms" for r, t in anchors))
    return anchors


def _search_knobs(score, knobs0: dict[str, Any], n: int, fp32: Model, out_of_budget, meets,
                  probe_error: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """The global knobs for the all-int8 model. The defaults are scored first; when their all-int8
    model already meets the bar, better knobs cannot buy more int8 and nothing else is scored.
    Otherwise Optuna ranks ``n`` settings (the defaults included) by the all-int8 model's probe error
    (``probe_error``: a calibration and a probe run each, no user evaluation), and only the best one,
    when it is not the defaults, is scored with the user's function; the more accurate one wins.
    (Scoring every setting cost MiniLM two evaluations at 0.1 % that its probe errors ruled out.)"""
    name = lambda k: f"knobs {k}"  # noqa: E731
    rows = score([(name(knobs0), Recipe.make({}, **knobs0))])
    if n <= 1 or not rows or meets(rows[0]) or out_of_budget():
        return dict(knobs0)
    try:
        import optuna
    except ImportError as e:
        raise GraphoptError("searching the global knobs needs Optuna: pip install 'graphopt[tune]' "
                            "(or knob_trials=1)") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dict(KNOB_SPACE)
    if preset_for(fp32) == "cnn":
        space["smoothquant"] = [None]
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in space.items()}
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({k: knobs0[k] for k in space})
    errors: dict[str, float] = {}
    for _ in range(n):
        t = study.ask(dists)
        knobs = dict(knobs0, **t.params)
        key = json.dumps(knobs, sort_keys=True)
        if key not in errors:
            errors[key] = probe_error(knobs)
            logger.info("knobs %s: all-int8 probe error %.3e", knobs, errors[key])
        study.tell(t, errors[key])
    best = dict(knobs0, **study.best_params)
    if best == dict(knobs0):
        return dict(knobs0)
    other = score([(name(best), Recipe.make({}, **best))])
    return best if other and other[0]["accuracy"] > rows[0]["accuracy"] else dict(knobs0)


def _search_points(search: PointSearch, score, meets, accept: Acceptance, k: int, out_of_budget) -> None:
    """Score what ``search`` proposes, ``k`` per round, and tell it each verified result."""
    while not out_of_budget():
        batch = search.propose(k)
        if not batch:
            return
        pred = {p.recipe.key(): (search.latency(p.recipe), search.error(p.recipe)) for p in batch}
        rows = score([(p.label, p.recipe) for p in batch], pred)
        if not rows:
            return
        by_key = {r["key"]: r for r in rows}
        for p in batch:
            r = by_key.get(p.recipe.key())
            if r is not None:
                search.observe(p.recipe, accept.loss(r["accuracy"], r.get("samples")), meets(r),
                               r["latency_ms"] / 1e3)


def _sequential(order, score, meets, k: int, out_of_budget) -> None:
    """Score candidates in ``order`` (``k`` per round) until one meets the bar."""
    it = iter(order)
    while not out_of_budget():
        chunk = []
        for item in it:
            chunk.append(item)
            if len(chunk) == k:
                break
        if not chunk:
            return
        rows = score(chunk)
        if any(meets(r) for r in rows):
            return
