"""Runtime numeric check: the native plan against onnxruntime, naming the first diverging node.

The runtime counterpart of :class:`graphopt.pm.instruments.NumericGuard` (which compares
onnxruntime runs of the graph before and after each pass):

- the model's outputs from the native plan are compared with onnxruntime on the *original*
  model (all onnxruntime graph optimizations off), on the same feeds;
- to say *where* a divergence starts, the lowered steps are built into a second plan that keeps
  every graph value a step writes as an extra output, and onnxruntime runs the optimised graph
  (fused ops mapped to onnxruntime's, as NumericGuard does) with the same values as outputs.
  Walking the steps in plan order, the first value beyond the precision's tolerance names the
  node (value, op, max abs error, tolerance).

>>> report = check("model.onnx", precision="int8")   # doctest: +SKIP
>>> print(report); report.ok                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..errors import GraphoptError
from ..ir import Model, Value
from .lower import PRECISIONS

__all__ = ["Tolerance", "TOLERANCES", "Divergence", "CheckReport", "NativeMismatch", "make_feeds", "check"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    """A value passes when max|native - ref| <= atol + rtol * max|ref| and cosine >= min_cosine."""

    atol: float
    rtol: float
    min_cosine: float

    def bound(self, ref: np.ndarray) -> float:
        scale = float(np.max(np.abs(ref))) if ref.size and np.isfinite(ref).all() else 0.0
        return self.atol + self.rtol * scale

    def __str__(self) -> str:
        return f"max|diff| <= {self.atol:g} + {self.rtol:g}*max|ref|, cosine >= {self.min_cosine:g}"


# fp32: the kernels differ from onnxruntime only in summation order. bf16/int8: the bounds the
# suite asserts on whole models (cosine 0.999 / 0.98), with a max-error bound relative to the
# tensor's range that an intermediate of a healthy model stays within.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, min_cosine=0.99999),
    "bf16": Tolerance(atol=1e-2, rtol=0.05, min_cosine=0.999),
    "int8": Tolerance(atol=5e-2, rtol=0.25, min_cosine=0.98),
}


@dataclass(frozen=True)
class Divergence:
    """One value whose native result is beyond tolerance."""

    value: str
    op: str  # the graph node(s) the step implements, or the step kind
    step: str
    max_abs: float
    bound: float
    cosine: float
    problem: str = ""

    def __str__(self) -> str:
        what = self.problem or f"max |diff| {self.max_abs:.3g} > {self.bound:.3g}, cosine {self.cosine:.6f}"
        return f"value '{self.value}' (op {self.op}, step '{self.step}'): {what}"


@dataclass
class CheckReport:
    """What :func:`check` found: per-output errors, the first diverging node, and the verdict."""

    precision: str
    tolerance: Tolerance
    outputs: list[Divergence | tuple[str, float, float]]  # diverging outputs, or (name, max_abs, cosine)
    first: Divergence | None
    compared: int  # intermediate values compared
    feeds: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(isinstance(o, Divergence) for o in self.outputs)

    def __str__(self) -> str:
        lines = [f"graphopt check: precision={self.precision} ({self.tolerance}); "
                 f"{'OK' if self.ok else 'DIVERGES'}"]
        for o in self.outputs:
            if isinstance(o, Divergence):
                lines.append(f"  output {o}")
            else:
                lines.append(f"  output '{o[0]}': max |diff| {o[1]:.3g}, cosine {o[2]:.6f}")
        if self.first is not None:
            lines.append(f"  first diverging node ({self.compared} values compared in plan order): {self.first}")
        elif not self.ok:
            lines.append(f"  no intermediate value diverges ({self.compared} compared); the outputs do")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def d(o: Divergence) -> dict[str, Any]:
            return {"value": o.value, "op": o.op, "step": o.step, "max_abs": o.max_abs, "bound": o.bound,
                    "cosine": o.cosine, "problem": o.problem}
        return {
            "precision": self.precision, "ok": self.ok, "tolerance": str(self.tolerance), "compared": self.compared,
            "outputs": [dict(d(o), diverges=True) if isinstance(o, Divergence) else
                        {"value": o[0], "max_abs": o[1], "cosine": o[2], "diverges": False} for o in self.outputs],
            "first_diverging": d(self.first) if self.first is not None else None,
        }


class NativeMismatch(GraphoptError):
    """``compile(..., check=True)``: the native plan's outputs differ from onnxruntime's."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(str(report))
        self.report = report


# ------------------------------------------------------------------ feeds
def _vocab_of(v: Value) -> int | None:
    """Rows of the embedding table an integer input indexes (Gather data, directly or via a Cast)."""
    todo, seen = [v], set()
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        for n in x.consumers():
            if n.op_type == "Gather" and len(n.inputs) > 1 and n.inputs[1] is x and n.inputs[0] is not None \
                    and n.inputs[0].shape and isinstance(n.inputs[0].shape[0], int):
                return int(n.inputs[0].shape[0])
            if n.op_type == "EmbedLayerNorm" and n.inputs[0] is x and len(n.inputs) > 2 and n.inputs[2] is not None \
                    and n.inputs[2].shape and isinstance(n.inputs[2].shape[0], int):
                return int(n.inputs[2].shape[0])
            if n.op_type in ("Cast", "Reshape", "Unsqueeze", "Flatten", "Identity"):
                todo.extend(n.outputs)
    return None


def make_feeds(model: Model, *, batch: int = 2, seq: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds for ``model``'s inputs: token ids within the embedding table, attention masks of
    ones with padding at the end of every row after the first, zero token types, position ids
    0..S-1, normal floats. Symbolic dims: the first is ``batch``, the others ``seq``."""
    from .session import _NP_OF

    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for v in model.graph.inputs:
        if v.is_initializer:
            continue
        if v.shape is None:
            raise GraphoptError(f"input '{v.name}' has no known rank; pass feeds explicitly")
        shape = tuple(d if isinstance(d, int) else (batch if i == 0 else seq) for i, d in enumerate(v.shape))
        dt = np.dtype(_NP_OF.get(v.dtype, np.float32))
        name = v.name.lower()
        if dt.kind == "f":
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b" or "mask" in name:
            m = np.ones(shape, dt)
            if len(shape) >= 2 and shape[-1] > 2:
                for r in range(1, shape[0]):  # rows after the first: some padding at the end
                    m[r, ..., shape[-1] - max(1, (shape[-1] * r) // (4 * shape[0])) - r % 2:] = 0
            feeds[v.name] = m
        elif "type" in name or "segment" in name:
            feeds[v.name] = np.zeros(shape, dt)
        elif "position" in name and shape:
            feeds[v.name] = np.broadcast_to(np.arange(shape[-1], dtype=dt), shape).copy()
        else:
            hi = _vocab_of(v) or 100
            feeds[v.name] = rng.integers(0, hi, shape).astype(dt)
    return feeds


# ------------------------------------------------------------------ comparing
def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def _compare(name: str, op: str, step: str, have: np.ndarray, want: np.ndarray, tol: Tolerance) -> Divergence | tuple:
    have, want = np.asarray(have), np.asarray(want)
    if have.shape != want.shape:
        return Divergence(name, op, step, float("inf"), 0.0, 0.0, f"shape {list(have.shape)} instead of {list(want.shape)}")
    if want.dtype.kind not in "fc":
        bad = int(np.sum(have != want))
        if bad:
            return Divergence(name, op, step, float(bad), 0.0, 0.0, f"{bad} of {want.size} element(s) differ")
        return (name, 0.0, 1.0)
    h, w = have.astype(np.float64), want.astype(np.float64)
    nan_h, nan_w = np.isnan(h), np.isnan(w)
    if (nan_h != nan_w).any():
        return Divergence(name, op, step, float("nan"), tol.bound(w), float("nan"),
                          f"{int((nan_h & ~nan_w).sum())} NaN where onnxruntime has none"
                          if (nan_h & ~nan_w).any() else f"{int((nan_w & ~nan_h).sum())} NaN missing")
    hv, wv = h[~nan_w], w[~nan_w]
    inf = np.isinf(hv) | np.isinf(wv)
    if inf.any() and not np.array_equal(hv[inf], wv[inf]):
        return Divergence(name, op, step, float("inf"), tol.bound(wv[~inf]), float("nan"), "infinities differ")
    hv, wv = hv[~inf], wv[~inf]  # masks hold -inf: compare the finite rest
    m = float(np.abs(hv - wv).max()) if wv.size else 0.0
    cos = _cosine(hv, wv) if wv.size else 1.0
    bound = tol.bound(wv)
    if m > bound or cos < tol.min_cosine:
        return Divergence(name, op, step, m, bound, cos)
    return (name, m, cos)


def _ort_run(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    if outputs:
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
        have = {o.name for o in proto.graph.output}
        made = {o for n in proto.graph.node for o in n.output if o}  # values the fused-op mapping renamed are absent
        proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs if n not in have and n in made)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    missing = names - set(feeds)
    if missing:
        raise GraphoptError(f"check: no feed for input(s) {sorted(missing)}")
    outs = [o.name for o in sess.get_outputs()]
    return dict(zip(outs, sess.run(None, {k: v for k, v in feeds.items() if k in names})))


def _probe_values(steps: list, graph_outputs: set[int]) -> list[tuple[Value, Any]]:
    """Graph values written by native steps, in plan order, that hold their graph dtype
    (steps chained to write bf16/u8 for their consumer are left out), with their step."""
    seen: set[int] = set()
    out = []
    for st in steps:
        if st.iattrs.get("out", 0):
            continue
        for k in st.outputs:
            if isinstance(k, Value) and id(k) not in seen and id(k) not in graph_outputs and k.dtype is not None:
                seen.add(id(k))
                out.append((k, st))
    return out


# ------------------------------------------------------------------ the check
def check(model: Any, precision: str = "fp32", feeds: Mapping[str, np.ndarray] | None = None, *,
          num_threads: int | None = None, optimize: str | None = "O2", tolerance: Tolerance | None = None,
          locate: bool = True) -> CheckReport:
    """Run the native plan and onnxruntime on the same feeds; see the module docstring.

    :param model: what :func:`graphopt.compile` takes (a Model, ModelProto or path).
    :param feeds: inputs (default: :func:`make_feeds`).
    :param locate: also build the probe plan to name the first diverging node.
    """
    from ..pm.instruments import _default_export
    from .compile import _as_model, lower_native, prepare
    from .plan import build_plan

    if precision not in PRECISIONS:
        raise GraphoptError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    tol = tolerance or TOLERANCES[precision]
    from ..io import to_onnx

    original = to_onnx(_as_model(model))
    m = prepare(model, optimize)
    feeds = dict(feeds) if feeds is not None else make_feeds(m)
    g = m.graph
    out_names = [v.name for v in g.outputs]
    ref = _ort_run(original, feeds)

    steps, consts, inputs, const_of = lower_native(m, precision, num_threads)
    outs_ids = set(map(id, g.outputs))
    probes = _probe_values(steps, outs_ids) if locate else []
    plan, _ = build_plan(steps, consts, inputs, list(g.outputs) + [v for v, _ in probes], const_of)
    plan.set_poison(True)  # an element a step leaves unwritten reads as NaN, not as stale arena data
    missing = [v.name for v in inputs if v.name not in feeds]
    if missing:
        raise GraphoptError(f"check: no feed for input(s) {missing}")
    arrays = [np.require(feeds[v.name], requirements="C") for v in inputs]
    try:
        got = plan.run(arrays, num_threads or 0)
    except ValueError as e:
        raise GraphoptError(f"native run failed: {e}") from e

    label = {id(st): (", ".join(st.origin) or st.kind) for st in steps}
    results: list[Divergence | tuple] = []
    for i, name in enumerate(out_names):
        results.append(_compare(name, "graph output", name, got[i], ref[name], tol))

    first: Divergence | None = None
    compared = 0
    if probes:
        try:
            inter = _ort_run(_default_export(m), feeds, [v.name for v, _ in probes])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises many kinds
            logger.warning("check: onnxruntime cannot run the optimised graph with intermediate outputs (%s)",
                           str(e).splitlines()[0][:200])
            inter = {}
        for j, (v, st) in enumerate(probes):
            want = inter.get(v.name)
            if want is None:
                continue
            compared += 1
            r = _compare(v.name, label[id(st)], st.name, got[len(out_names) + j], want, tol)
            if isinstance(r, Divergence):
                first = r
                break
        if first is None:  # the outputs themselves, when nothing before them diverged
            first = next((r for r in results if isinstance(r, Divergence)), None)
    return CheckReport(precision, tol, results, first, compared, feeds)
