"""The search space: tunable groups, recipes, and building / running a candidate.

A *group* is one quantizable node of the float model (a MatMul/Gemm/Conv: after
O2 each becomes one fused GEMM step with its bias/activation epilogue, or one
attention product). A :class:`Recipe` gives each group a precision (``int8``
static, ``bf16``, ``fp32``) plus the global knobs (SmoothQuant alpha, activation
observer, per-channel weights). ``build`` turns (float model, recipe, calibration
batches) into a QDQ model whose int8 groups carry Q/DQ and whose bf16/fp32
groups are named in the ``graphopt.node_precision`` metadata that
``graphopt.compile`` applies; onnxruntime and OpenVINO run bf16 groups as fp32
(so those targets search int8/fp32 only).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphoptError
from ..ir import Model

__all__ = ["Group", "Recipe", "find_groups", "build", "make_runner", "load_function", "TARGETS",
           "target_precisions", "preset_for"]

logger = logging.getLogger(__name__)

TARGETS = ("native", "onnxruntime", "openvino")
META_KEY = "graphopt.node_precision"


def target_precisions(target: str) -> tuple[str, ...]:
    """Precisions a target runs per group, fastest first."""
    if target not in TARGETS:
        raise GraphoptError(f"unknown target '{target}' ({', '.join(TARGETS)})")
    return ("int8", "bf16", "fp32") if target == "native" else ("int8", "fp32")


@dataclass(frozen=True)
class Group:
    """One tunable node: its name, op type, and whether both GEMM inputs are activations."""

    name: str
    op_type: str
    act_act: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """Per-group precisions (groups not named are int8) and the global quantization knobs."""

    nodes: tuple[tuple[str, str], ...] = ()
    smoothquant: float | None = 0.8
    observer: str = "minmax"
    per_channel: bool = True
    prune: float = 0.0  # fraction of attention heads and of FFN neurons removed (graphopt.prune) first

    @classmethod
    def make(cls, precisions: dict[str, str], **knobs: Any) -> Recipe:
        return cls(tuple(sorted((k, v) for k, v in precisions.items() if v != "int8")), **knobs)

    def precision(self, group: str) -> str:
        return dict(self.nodes).get(group, "int8")

    def knobs(self) -> dict[str, Any]:
        return {"smoothquant": self.smoothquant, "observer": self.observer, "per_channel": self.per_channel}

    def with_knobs(self, **knobs: Any) -> Recipe:
        return replace(self, **knobs)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": 1, "knobs": self.knobs(), "nodes": dict(self.nodes)}
        if self.prune:  # absent when 0: keys (and trials.jsonl) of unpruned recipes stay as they were
            d["prune"] = {"heads": self.prune, "ffn": self.prune}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        if not isinstance(d, dict) or "nodes" not in d:
            raise GraphoptError("a tuning recipe is a mapping with 'nodes' and 'knobs' (graphopt tune's recipe.json)")
        k = dict(d.get("knobs", {}))
        bad = set(k) - {"smoothquant", "observer", "per_channel"}
        if bad:
            raise GraphoptError(f"recipe: unknown knob(s) {sorted(bad)}")
        for name, p in d["nodes"].items():
            if p not in ("int8", "bf16", "fp32"):
                raise GraphoptError(f"recipe: node {name!r} has unknown precision {p!r} (int8, bf16, fp32)")
        pr = d.get("prune") or {}
        if not isinstance(pr, dict) or set(pr) - {"heads", "ffn"} or len(set(pr.values())) > 1:
            raise GraphoptError("recipe: 'prune' is {'heads': r, 'ffn': r} with one ratio r")
        ratio = float(next(iter(pr.values()), 0.0))
        if not 0.0 <= ratio < 1.0:
            raise GraphoptError(f"recipe: prune ratio {ratio} is not in [0, 1)")
        return cls.make(dict(d["nodes"]), prune=ratio, **k)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise GraphoptError(f"cannot read recipe {path}: {e}") from e

    def counts(self, groups: Sequence[Group]) -> dict[str, int]:
        c = {"int8": 0, "bf16": 0, "fp32": 0}
        for g in groups:
            c[self.precision(g.name)] += 1
        return c


def preset_for(model: Model) -> str:
    """``cnn`` for convolutional models, else ``transformer``."""
    return "cnn" if any(n.op_type == "Conv" for n in model.graph) else "transformer"


def _config(model: Model, recipe: Recipe, groups: Sequence[Group] = ()):
    from ..quant import QuantConfig

    base = QuantConfig.cnn() if preset_for(model) == "cnn" else QuantConfig.transformer()
    act = base.activation.with_(observer=recipe.observer)
    weight = base.weight.with_(per_channel=recipe.per_channel)
    nodes = {g.name: "fp32" for g in groups if recipe.precision(g.name) != "int8"}
    return replace(base, smoothquant=recipe.smoothquant if preset_for(model) == "transformer" else None,
                   activation=act, weight=weight, nodes=nodes)


def find_groups(model: Model) -> list[Group]:
    """The nodes the model's preset quantizes (named GEMMs / convolutions), in graph order."""
    from ..quant import QuantConfig

    cfg = QuantConfig.cnn() if preset_for(model) == "cnn" else QuantConfig.transformer()
    out = []
    for n in model.graph:
        if n.op_type not in ("MatMul", "Gemm", "Conv") or not n.name or cfg.plan(n).precision != "int8":
            continue
        act_act = n.op_type == "MatMul" and all(v is not None and v.const is None and
                                                 (v.producer() is None or v.producer().op_type != "Constant")
                                                 for v in n.inputs[:2])
        if act_act and not cfg.quantize_act_matmul:
            continue
        out.append(Group(n.name, n.op_type, act_act, tuple(v.name for v in n.inputs if v is not None),
                         tuple(v.name for v in n.outputs)))
    if not out:
        raise GraphoptError("the model has no quantizable node (named MatMul/Gemm/Conv) to tune")
    return out


def _clone(model: Model) -> Model:
    from ..io import from_onnx, to_onnx

    return from_onnx(to_onnx(model))


def build(fp32: Model, recipe: Recipe, groups: Sequence[Group], batches: Sequence[dict[str, np.ndarray]], *,
          calibration: Any = None, smoothing: Any = None, calibrator: Any = None) -> Model:
    """A new model quantized per ``recipe`` (``fp32`` is not modified).

    ``calibration`` and ``smoothing`` (:class:`graphopt.quant.CalibrationResult` from the all-int8 model
    with the same knobs: :func:`calibration_of`, and SmoothQuant's via :func:`recording_calibrator`) skip the range calibration and
    SmoothQuant's per-channel pass; without ``smoothing`` SmoothQuant streams ``batches`` once.
    ``calibrator`` runs both calibrations elsewhere (see :func:`graphopt.quantize`).
    """
    from ..quant import quantize

    m = _clone(fp32)
    prec = {g.name: recipe.precision(g.name) for g in groups}
    if any(p == "int8" for p in prec.values()):
        cfg = _config(m, recipe, groups)
        quantize(m, cfg, batches, progress=False, calibration=calibration, smoothing=smoothing, calibrator=calibrator)
    # by node name and by weight name: O2 fuses MatMul+Add into nodes with new names, weights keep theirs
    nodes = {n.name: n for n in fp32.graph if n.name}
    for g in groups:
        n = nodes.get(g.name)
        if n is not None and len(n.inputs) > 1 and n.inputs[1] is not None and n.inputs[1].const is not None:
            prec[f"weight:{n.inputs[1].name}"] = prec[g.name]
    m.metadata_props[META_KEY] = json.dumps(prec, sort_keys=True)
    return m


def calibration_of(model: Model) -> Any:
    """The ranges a quantized model's Q/DQ were made from (reusable by :func:`build`)."""
    from ..quant import CALIB, CalibrationResult

    return CalibrationResult({v.name: v.meta[CALIB] for v in model.graph.all_values()
                              if v.meta.get(CALIB) is not None}, 1)


def recording_calibrator(run: Any, seen: dict[str, Any]) -> Any:
    """A calibrator that calls ``run(model, targets, kind)`` and keeps each kind's result in ``seen``:
    ``seen["channel_absmax"]`` is SmoothQuant's, reusable as ``build(..., smoothing=)``."""
    def calibrator(model: Model, targets: Any, kind: str) -> Any:
        seen[kind] = run(model, targets, kind)
        return seen[kind]
    return calibrator


def local_calibrator(batches: Sequence[dict[str, np.ndarray]]) -> Any:
    """``(model, targets, kind) -> CalibrationResult`` over ``batches`` in this process."""
    from ..quant.calibrate import calibrate

    return lambda model, targets, kind: calibrate(model, batches, targets, kind=kind, progress=False)


def make_runner(model: Model, target: str, threads: int | None = None) -> Callable[[dict[str, np.ndarray]], list]:
    """``run(feeds) -> list of outputs`` for ``model`` on ``target``."""
    if target == "native":
        import graphopt

        prec = json.loads(model.metadata_props.get(META_KEY, "{}"))
        global_p = "int8" if any(p == "int8" for p in prec.values()) else \
            ("bf16" if prec and all(p == "bf16" for p in prec.values()) else "fp32")
        sess = graphopt.compile(model, precision=global_p, num_threads=threads, node_precision=prec or None)
        names = sess.output_names if hasattr(sess, "output_names") else None

        def run(feeds: dict[str, np.ndarray]) -> list:
            out = sess.run(feeds)
            if isinstance(out, dict):
                return [out[k] for k in (names or list(out))]
            return list(out)
        return run
    from ..io import to_onnx

    proto = to_onnx(model)
    if target == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return lambda feeds: s.run(None, feeds)
    if target == "openvino":
        import tempfile

        import openvino as ov

        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "m.onnx"
            p.write_bytes(proto.SerializeToString())
            cfg = {"INFERENCE_PRECISION_HINT": "f32"}
            if threads:
                cfg["INFERENCE_NUM_THREADS"] = int(threads)
            cm = core.compile_model(core.read_model(str(p)), "CPU", cfg)
        req = cm.create_infer_request()
        outs = cm.outputs
        return lambda feeds: [req.infer(feeds)[o] for o in outs]
    raise GraphoptError(f"unknown target '{target}' ({', '.join(TARGETS)})")


def load_function(spec: str | Callable) -> Callable:
    """``FILE.py:FUNC`` (or a callable) -> the callable."""
    if callable(spec):
        return spec
    path, _, func = str(spec).rpartition(":")
    if not path or not func:
        raise GraphoptError(f"expected FILE.py:FUNC, got {spec!r}")
    p = Path(path)
    if not p.exists():
        raise GraphoptError(f"{p}: no such file (from {spec!r})")
    modspec = importlib.util.spec_from_file_location(f"_graphopt_user_{p.stem}", p)
    mod = importlib.util.module_from_spec(modspec)
    try:
        modspec.loader.exec_module(mod)  # type: ignore[union-attr]
    except Exception as e:  # noqa: BLE001 - the user's file: say which
        raise GraphoptError(f"importing {p} failed: {type(e).__name__}: {e}") from e
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise GraphoptError(f"{p} has no function {func!r}")
    return fn


@dataclass
class Candidate:
    """A recipe with its predictions and (once evaluated) measurements."""

    recipe: Recipe
    pred_latency: float = float("nan")
    pred_error: float = float("nan")
    accuracy: float | None = None
    latency: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
