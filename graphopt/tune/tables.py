"""The two tables the tuner predicts from.

**Cost table**: each group's latency on the target at the model's shapes, per
precision, measured as a one-node model (the group's GEMM with its real weight
shape, fed activations of the shape the model gives it) compiled for the
target; plus the cost of a precision change at a group's input (a standalone
Quantize+Dequantize of that activation). Identical shapes are measured once;
the table is cached per machine (CPU model + flags, target, thread count) and
per build of graphopt (its version and native module: new kernels, new costs) in
``~/.cache/graphopt/costs``. A table measured while the machine is busy (load
average above its core count) is used for that run but never cached: a cached
table measured under load misranked every later run's candidates. The whole model's measured fp32 latency anchors
it: predicted(recipe) = fp32 total + sum over groups of (cost[p] - cost[fp32])
+ transition costs.

**Error table**: each group's sensitivity per precision from one calibration, as
the *error energy* of the model output against fp32 on a probe set (squared
relative L2, :class:`Probe`): int8 by the leave-one-out bypass of the all-int8
model (:func:`graphopt.quant.sensitivity`'s activation bypass, scaled so the
groups add up to the all-int8 energy), bf16 by rounding that one group's weight
to bf16 in the float model (twice that energy: its input is rounded too).
Energies, not L2 norms: independent errors add in energy (an L2 norm adds in
quadrature, so one large group made every other group's leave-one-out measure
~0 on MiniLM), and a cosine or MSE-like score loses in proportion to it. Rows
the model pads (``attention_mask`` 0) are left out: their outputs reach no
score, and on MiniLM they held most of the all-int8 error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ir import Model
from .space import Group, Recipe, make_runner

__all__ = ["CostTable", "ErrorTable", "Probe", "measure_costs", "measure_errors", "time_run", "cpu_clock",
           "group_shapes"]

logger = logging.getLogger(__name__)

COST_CACHE = Path(os.path.expanduser("~/.cache/graphopt/costs"))
COST_VERSION = 4  # bump when what is measured changes (4: CPU seconds at one thread)
ERROR_CACHE = Path(os.path.expanduser("~/.cache/graphopt/errors"))
ERROR_VERSION = 4  # 4: error energy over unpadded rows (was relative L2 over all rows)


def time_run(run: Callable[[dict], Any], feeds: dict, *, min_time: float = 0.15, max_runs: int = 50,
             warmup: int = 2, cpu: bool = False) -> float:
    """Median seconds of ``run(feeds)`` over at most ``max_runs`` runs or about ``min_time`` seconds;
    ``cpu``: the process's CPU seconds instead of wall seconds (see :func:`cpu_clock`)."""
    clock = time.process_time if cpu else time.perf_counter
    for _ in range(warmup):
        run(feeds)
    ts: list[float] = []
    t_end = time.perf_counter() + min_time
    while len(ts) < max_runs and (len(ts) < 5 or time.perf_counter() < t_end):
        t = clock()
        run(feeds)
        ts.append(clock() - t)
    return statistics.median(ts)


def cpu_clock(threads: int | None) -> bool:
    """Whether to time in process CPU seconds: at one thread the CPU time is the latency a quiet machine
    would show, and a shared machine's load does not move it (MiniLM at load 10: wall time 3x the CPU
    time and 15 % apart between two rounds, CPU time < 2 % apart). With more threads it sums them."""
    return threads == 1


def time_round_robin(runs: dict[str, Callable[[dict], Any]], feeds: dict, rounds: int, *, block: int = 5,
                     pause: float = 0.15, cpu: bool = False) -> dict[str, float]:
    """Median seconds per system over ``rounds`` round-robin blocks (each the median of ``block`` runs
    after a warm-up run), pausing ``pause`` s before each block so the previous system's thread pool stops
    spinning: load drifting on a shared machine hits every system alike. ``cpu``: process CPU seconds."""
    clock = time.process_time if cpu else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            time.sleep(pause)
            run(feeds)
            ts = []
            for _ in range(block):
                t = clock()
                run(feeds)
                ts.append(clock() - t)
            times[k].append(statistics.median(ts))
    return {k: statistics.median(v) for k, v in times.items()}


def group_shapes(fp32: Model, groups: Sequence[Group], feeds: dict[str, np.ndarray]) -> dict[str, list[tuple]]:
    """Shapes of each group's inputs at ``feeds`` (one onnxruntime run fetching them)."""
    from ..quant.testing import run_ort

    names = sorted({i for g in groups for i in g.inputs[:2]} - {v.name for v in fp32.graph.all_values()
                                                                   if v.const is not None})
    vals = dict(zip(names, run_ort(fp32, feeds, outputs=names))) if names else {}
    consts = {v.name: v.const for v in fp32.graph.all_values() if v.const is not None}
    out = {}
    for g in groups:
        shapes = []
        for i in g.inputs:
            a = vals.get(i, consts.get(i))
            shapes.append(None if a is None else tuple(a.shape))
        out[g.name] = shapes
    return out


def build_id() -> str:
    """graphopt's version and a hash of its native module: a cached cost table is only valid for the
    kernels that were timed."""
    import graphopt

    h = hashlib.sha1(str(getattr(graphopt, "__version__", "")).encode())
    try:
        from .._native import native

        f = getattr(native(), "__file__", None)
        if f:
            st = os.stat(f)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    except Exception:  # noqa: BLE001 - no native module: the version alone
        pass
    return h.hexdigest()[:12]


def machine_busy() -> float | None:
    """The 1-minute load average when it exceeds the core count (timings are then inflated and
    reordered by other work), else None."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    return load if load > (os.cpu_count() or 1) else None


@dataclass
class CostTable:
    """Seconds per group per precision, transition cost per group, and the fp32 whole-model time."""

    cost: dict[str, dict[str, float]]
    transition: dict[str, float]
    total_fp32: float
    target: str
    machine: str
    groups: list[str] = field(default_factory=list)
    load: float | None = None  # the load average when measured, if the machine was busy

    def predict(self, recipe: Recipe, producers: dict[str, list[str]]) -> float:
        """Predicted seconds of the model under ``recipe``; ``producers[g]``: groups feeding g."""
        t = self.total_fp32
        for g in self.groups:
            p = recipe.precision(g)
            t += self.cost[g][p] - self.cost[g]["fp32"]
            # a change of precision at g's input: a float value to quantize (int8 after a non-int8
            # producer) costs a Quantize of that activation
            if p == "int8" and any(recipe.precision(q) != "int8" for q in producers.get(g, [])):
                t += self.transition.get(g, 0.0)
        return t

    def rescaled(self, factor: float) -> CostTable:
        """Every time times ``factor``: re-anchors a cached table on this run's measured fp32 latency
        (a shared machine's load changes between the measuring and the tuning)."""
        return CostTable({g: {p: t * factor for p, t in row.items()} for g, row in self.cost.items()},
                         {g: t * factor for g, t in self.transition.items()}, self.total_fp32 * factor,
                         self.target, self.machine, list(self.groups), self.load)

    def fitted(self, anchors: Sequence[tuple[Recipe, float]], producers: dict[str, list[str]]) -> CostTable:
        """The table re-fitted to whole-model times measured for a few ``anchors`` (recipe, seconds).

        One-node timings miss what the whole model shares (caches, fused neighbours, the runtime's
        per-step overhead), and by a different factor per precision: int8 GEMMs gain more alone than in
        the model. So the prediction becomes ``a * fp32 total + sum_p s_p * D_p + c * T`` with ``D_p`` the
        summed one-node gains of the groups at precision ``p`` and ``T`` the summed transition costs;
        the factors come from least squares over the anchors (all-fp32, all-bf16 and all-int8 pin ``a``
        and ``s_p``; a mixed anchor with precision changes pins ``c``). A factor without an anchor that
        moves it stays ``a``.

        >>> t = CostTable({"g": {"fp32": 2.0, "int8": 1.0}}, {}, 4.0, "native", "m", ["g"])
        >>> f = t.fitted([(Recipe.make({"g": "fp32"}), 8.0), (Recipe.make({}), 7.0)], {})
        >>> round(f.predict(Recipe.make({}), {}), 6), round(f.predict(Recipe.make({"g": "fp32"}), {}), 6)
        (7.0, 8.0)
        """
        precs = sorted({p for row in self.cost.values() for p in row} - {"fp32"})

        def columns(r: Recipe) -> list[float]:
            gains = {p: 0.0 for p in precs}
            for g in self.groups:
                p = r.precision(g)
                if p != "fp32":
                    gains[p] += self.cost[g][p] - self.cost[g]["fp32"]
            trans = self.predict(r, producers) - self.total_fp32 - sum(gains.values())
            return [self.total_fp32] + [gains[p] for p in precs] + [trans]

        a_mat = np.array([columns(r) for r, _ in anchors], np.float64)
        y = np.array([t for _, t in anchors], np.float64)
        moved = [k for k in range(1, a_mat.shape[1]) if np.any(np.abs(a_mat[:, k]) > 0)]
        known = [0] + moved[:max(0, len(anchors) - 1)]  # never more unknowns than anchors
        sol, *_ = np.linalg.lstsq(a_mat[:, known], y, rcond=None)
        a = float(sol[0]) if sol[0] > 0 else 1.0
        factor = {k: a for k in range(1, a_mat.shape[1])} | {k: max(float(v), 0.0) for k, v in zip(known[1:], sol[1:])}
        scale = {p: factor[1 + i] for i, p in enumerate(precs)}
        c = factor[a_mat.shape[1] - 1]
        cost = {g: {p: a * row["fp32"] + (scale[p] * (t - row["fp32"]) if p != "fp32" else 0.0)
                    for p, t in row.items()} for g, row in self.cost.items()}
        return CostTable(cost, {g: t * c for g, t in self.transition.items()}, self.total_fp32 * a, self.target,
                         self.machine, list(self.groups), self.load)

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "transition": self.transition, "total_fp32": self.total_fp32,
                "target": self.target, "machine": self.machine, "groups": self.groups, "load": self.load}


def machine_id(target: str, threads: int | None) -> str:
    flags = ""
    try:
        from .._native import cpu_info

        info = cpu_info()
        flags = json.dumps(info, sort_keys=True, default=str) if isinstance(info, dict) else str(info)
    except Exception:  # noqa: BLE001 - no native module: the platform string alone
        pass
    return hashlib.sha1(f"{platform.machine()}|{platform.processor()}|{flags}|{target}|{threads}".encode()).hexdigest()[:12]


def _one_node(g: Group, shapes: list[tuple], fp32: Model) -> tuple[Model, dict[str, np.ndarray]] | None:
    """The group's op alone (its real weights), with random activations of its shapes."""
    import onnx
    from onnx import helper, numpy_helper

    from ..io import from_onnx

    node = next(n for n in fp32.graph if n.name == g.name)
    rng = np.random.default_rng(0)
    inputs, inits, feeds = [], [], {}
    names = []
    for k, (v, shp) in enumerate(zip(node.inputs, shapes)):
        if v is None:
            names.append("")
            continue
        nm = f"in{k}"
        names.append(nm)
        if v.const is not None:
            inits.append(numpy_helper.from_array(np.asarray(v.const), nm))
        else:
            if shp is None:
                return None
            feeds[nm] = rng.standard_normal(shp).astype(np.float32)
            inputs.append(helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, list(shp)))
    attrs = {k: a.value for k, a in node.attrs.items()}
    try:
        n = helper.make_node(node.op_type, names, ["y"], name=g.name, **attrs)
        gr = helper.make_graph([n], "one", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                               inits)
        return from_onnx(helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)])), feeds
    except Exception as e:  # noqa: BLE001 - an attribute the helper cannot rebuild: not measured
        logger.info("cost table: cannot rebuild %s alone (%s)", g.name, e)
        return None


def _qdq_model(shape: tuple) -> tuple[Model, dict[str, np.ndarray]]:
    import onnx
    from onnx import helper, numpy_helper

    from ..io import from_onnx

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    gr = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
                           [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))],
                           [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                            numpy_helper.from_array(np.array(128, np.uint8), "z")])
    m = from_onnx(helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)]))
    return m, {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def measure_costs(fp32: Model, groups: Sequence[Group], feeds: dict[str, np.ndarray], target: str,
                  precisions: Sequence[str], *, threads: int | None = None, cache_dir: Path | None = None,
                  progress: bool = False, saved: Path | None = None) -> CostTable:
    """Measure (or load from the per-machine cache) the cost table of ``fp32`` at ``feeds``' shapes.

    ``saved`` (the tuner's OUTDIR/cost_table.json) keeps this run's table whatever the cache did, so a
    resumed run predicts the same front and asks for the same candidates."""
    from .space import build

    shapes = group_shapes(fp32, groups, feeds)
    machine = machine_id(target, threads)
    # the key: machine, target, each group's op and weight/activation shapes, and the model's bytes hash
    from ..io import to_onnx

    mh = hashlib.sha1(to_onnx(fp32).SerializeToString()).hexdigest()[:12]
    key = hashlib.sha1(json.dumps([COST_VERSION, build_id(), machine, target, list(precisions), mh,
                                   {k: [list(s) if s else None for s in v] for k, v in shapes.items()},
                                   {k: list(v.shape) for k, v in feeds.items()}], sort_keys=True).encode()).hexdigest()[:16]
    cache = (Path(cache_dir) if cache_dir else COST_CACHE) / f"{key}.json"
    for src in (saved, cache):
        if src is not None and src.exists():
            try:
                d = json.loads(src.read_text())
                table = CostTable(d["cost"], d["transition"], d["total_fp32"], d["target"], d["machine"],
                                  d["groups"], d.get("load"))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: measure again
            if table.groups == [g.name for g in groups]:
                logger.info("cost table from %s", src)
                _write_json(saved, table.to_dict())
                return table
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    busy = machine_busy()
    fp_recipe = Recipe.make({g.name: "fp32" for g in groups})
    cpu = cpu_clock(threads)
    total = time_run(make_runner(build(fp32, fp_recipe, groups, []), target, threads), feeds, min_time=0.5, cpu=cpu)
    memo: dict[Any, dict[str, float]] = {}
    memo_t: dict[Any, float] = {}
    cost: dict[str, dict[str, float]] = {}
    trans: dict[str, float] = {}
    for g in tqdm(groups, desc="cost table", disable=not progress):
        node = next(n for n in fp32.graph if n.name == g.name)
        wkey = tuple(None if v is None or v.const is None else v.const.shape for v in node.inputs)
        k = (g.op_type, g.act_act, tuple(shapes[g.name]), wkey, tuple(sorted((a, str(b.value)) for a, b in node.attrs.items())))
        if k not in memo:
            one = _one_node(g, shapes[g.name], fp32)
            row: dict[str, float] = {}
            if one is None:
                row = {p: 0.0 for p in precisions}
            else:
                m1, f1 = one
                grp = [Group(g.name, g.op_type, g.act_act, tuple(f"in{i}" for i in range(len(node.inputs))), ("y",))]
                for p in precisions:
                    cand = build(m1, Recipe.make({g.name: p}, smoothquant=None), grp, [f1] if p == "int8" else [])
                    row[p] = time_run(make_runner(cand, target, threads), f1, cpu=cpu)
            memo[k] = row
        cost[g.name] = dict(memo[k])
        shp = shapes[g.name][0]
        if shp is not None and shp not in memo_t:
            m2, f2 = _qdq_model(shp)
            memo_t[shp] = time_run(make_runner(m2, target, threads), f2, cpu=cpu) / 2  # Q alone ~ half of Q+DQ
        trans[g.name] = memo_t.get(shp, 0.0) if shp is not None else 0.0
    busy = busy or machine_busy()
    table = CostTable(cost, trans, total, target, machine, [g.name for g in groups], busy)
    if busy:
        logger.warning("cost table measured with load average %.1f on %d cores: used for this run, not cached "
                       "(re-run on a quiet machine for a table later runs can trust)", busy, os.cpu_count() or 1)
    else:
        _write_json(cache, table.to_dict())
    _write_json(saved, table.to_dict())
    logger.info("cost table: %d groups, %d distinct shapes, %.1f s", len(groups), len(memo), time.perf_counter() - t0)
    return table


def _write_json(path: Path | None, obj: Any) -> None:
    if path is None:
        return
    from ..io.atomic import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj, indent=1))


@dataclass
class ErrorTable:
    """Output error energy (see :class:`Probe`) each group adds at each precision."""

    error: dict[str, dict[str, float]]
    all_int8: float

    def predict(self, recipe: Recipe) -> float:
        return sum(self.error[g][recipe.precision(g)] for g in self.error)

    def ranking(self, precision: str = "int8") -> list[tuple[str, float]]:
        return sorted(((g, e[precision]) for g, e in self.error.items() if precision in e), key=lambda kv: -kv[1])

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "all_int8": self.all_int8}


def _bf16_round(a: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)


class Probe:
    """The float model's outputs on a few probe batches, and the error energy of another model's
    outputs against them: per output, the squared L2 of the difference over the squared L2 of the
    reference, over rows the model does not pad (``attention_mask`` 1 where an output has the mask's
    leading [batch, sequence] shape); the mean over outputs.

    >>> import numpy as np
    >>> p = Probe.__new__(Probe); p.masks = [np.array([[True, False]])]
    >>> p.ref = [[np.array([[[1.0, 0.0], [5.0, 5.0]]])]]
    >>> round(p.energy([[np.array([[[1.0, 0.1], [0.0, 0.0]]])]]), 6)  # the padded row does not count
    0.01
    """

    def __init__(self, fp32: Model, batches: Sequence[dict[str, np.ndarray]]) -> None:
        self.batches = list(batches)
        self.masks = [_row_mask(f) for f in self.batches]
        self.ref = self.outputs(fp32)

    def outputs(self, m: Model) -> list[list[np.ndarray]]:
        """Every output of ``m`` on each probe batch (onnxruntime; one session for all batches)."""
        import onnxruntime as ort

        from ..io import to_onnx

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1  # small probe batches: no thread-pool spinning on a shared machine
        sess = ort.InferenceSession(to_onnx(m).SerializeToString(), so, providers=["CPUExecutionProvider"])
        return [list(sess.run(None, f)) for f in self.batches]

    def energy(self, got: Sequence[Sequence[np.ndarray]]) -> float:
        per_output: dict[int, list[float]] = {}
        for ref_b, got_b, mask in zip(self.ref, got, self.masks):
            for i, (r, g) in enumerate(zip(ref_b, got_b)):
                r, g = np.asarray(r, np.float64), np.asarray(g, np.float64)
                if mask is not None and r.shape[:2] == mask.shape and r.shape == g.shape:
                    r, g = r[mask], g[mask]
                acc = per_output.setdefault(i, [0.0, 0.0])
                acc[0] += float(np.sum((g - r) ** 2))
                acc[1] += float(np.sum(r * r))
        return float(np.mean([n / max(d, 1e-30) for n, d in per_output.values()])) if per_output else 0.0

    def error(self, m: Model) -> float:
        """The error energy of ``m``'s outputs against the float model's."""
        return self.energy(self.outputs(m))


def _row_mask(feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    m = feeds.get("attention_mask")
    if m is None or np.ndim(m) != 2:
        return None
    mask = np.asarray(m) != 0
    return None if mask.all() or not mask.any() else mask


def measure_errors(fp32: Model, groups: Sequence[Group], quant_all: Model,
                   probe: Sequence[dict[str, np.ndarray]] | Probe, precisions: Sequence[str], *,
                   progress: bool = False, cache_dir: Path | None = None) -> ErrorTable:
    """The error table (error energies, see :class:`Probe`) from the float model, its all-int8 build
    and a few probe batches (or a :class:`Probe` of them)."""
    from tqdm.auto import tqdm

    from ..io import to_onnx
    from ..quant.sensitivity import _act_bypass

    batches = probe.batches if isinstance(probe, Probe) else list(probe)
    h = hashlib.sha1(json.dumps([ERROR_VERSION, sorted(precisions), [g.name for g in groups]]).encode())
    for m in (fp32, quant_all):
        h.update(to_onnx(m).SerializeToString())
    for f in batches:
        for k in sorted(f):
            h.update(k.encode())
            h.update(np.ascontiguousarray(f[k]).tobytes())
    cache = (Path(cache_dir) if cache_dir else ERROR_CACHE) / f"{h.hexdigest()[:16]}.json"
    if cache.exists():  # same models, same probe data: the same table (a rerun, or another strategy)
        d = json.loads(cache.read_text())
        logger.info("error table from cache %s", cache)
        return ErrorTable(d["error"], d["all_int8"])
    pr = probe if isinstance(probe, Probe) else Probe(fp32, batches)
    base = pr.error(quant_all)
    err: dict[str, dict[str, float]] = {g.name: {"fp32": 0.0} for g in groups}
    qnodes = {n.name: n for n in quant_all.graph if n.name}
    loo: dict[str, float] = {}
    for g in tqdm(groups, desc="error table (int8)", disable=not progress):
        node = qnodes.get(g.name)
        bypass = _act_bypass(node) if node is not None else []
        if not bypass:
            loo[g.name] = 0.0
            continue
        saved = [(i, node.inputs[i]) for i, _ in bypass]
        try:
            for i, src in bypass:
                node.set_input(i, src)
            loo[g.name] = max(0.0, base - pr.error(quant_all))
        finally:
            for i, v in saved:
                node.set_input(i, v)
    s = sum(loo.values())
    for g in groups:  # scaled so the groups add up to the measured all-int8 error
        err[g.name]["int8"] = loo[g.name] * base / s if s > 0 else base / len(groups)
    if "bf16" in precisions:
        fnodes = {n.name: n for n in fp32.graph if n.name}
        for g in tqdm(groups, desc="error table (bf16)", disable=not progress):
            node = fnodes[g.name]
            saved_c = [(v, v.const) for v in node.inputs[:2] if v is not None and v.const is not None]
            if not saved_c:  # activation x activation (attention products): bf16 products, fp32 softmax
                err[g.name]["bf16"] = 0.0
                continue
            try:
                for v, c in saved_c:
                    v.const = _bf16_round(c)
                e = pr.error(fp32)
            finally:
                for v, c in saved_c:
                    v.const = c
            # its input is rounded too: about as much energy again as the weight's rounding
            err[g.name]["bf16"] = 2 * e
    table = ErrorTable(err, base)
    _write_json(cache, table.to_dict())
    return table
