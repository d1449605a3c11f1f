"""``graphopt.compile``: optimise, lower and pack a model into a native :class:`Session`.

Steps: copy the model (the caller's is never modified); run the ``O2`` preset
(cleanup + fusions) when the pass manager is available; infer shapes; lower
each node to a native step (or a fallback); pack weights once (fp32 panels,
bf16 pairs or per-channel int8); build the C++ plan with its liveness lists.

>>> sess = graphopt.compile("model.onnx", precision="bf16", num_threads=2)   # doctest: +SKIP
>>> outs = sess.run(feeds)                                                    # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any

import numpy as np
import onnx

from ..errors import GraphoptError, UnsupportedError
from ..ir import Model, Node
from .fallback import make_fallback
from .lower import PRECISIONS, lower
from .plan import build_plan
from .session import _NP_OF, InputSpec, Session

__all__ = ["compile", "compile_model", "prepare"]

logger = logging.getLogger(__name__)


def _as_model(model: Any) -> Model:
    from ..io import from_onnx, load

    if isinstance(model, Model):
        from ..ir.clone import clone

        return clone(model)  # a private graph (metadata kept); constants shared read-only, not copied
    if isinstance(model, onnx.ModelProto):
        return from_onnx(model)
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    path = getattr(model, "path", None)  # graphopt.models.ModelSpec
    if path is not None:
        return load(path)
    raise GraphoptError(f"compile() takes a graphopt Model, an onnx.ModelProto or a path, got {type(model).__name__}")


def decide_precision(m: Model, precision: str | None, node_precision: dict[str, str] | None, *,
                     absorb: bool = True) -> dict[str, int]:
    """Run ``decide-precision``: node_precision (default: the model's ``graphopt.node_precision``
    metadata) > a QDQ file's Q/DQ (``absorb``) > ``precision``, one decision per node."""
    from graphopt.passes.precision.decide_precision import DecidePrecisionPass

    from ..pm.manager import PassManager

    if precision is not None and precision not in PRECISIONS:
        raise UnsupportedError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    res = PassManager([DecidePrecisionPass(precision, node_precision, absorb=absorb)])(m)
    return dict(res.records[0].stats) if res.records else {}


def prepare(model: Any, optimize: str | None = "O2", *, fallback: bool = False,
            node_precision: dict[str, str] | None = None, precision: str | None = None) -> Model:
    """A private, optimised, shape-inferred copy of ``model`` ready for lowering.

    ``optimize`` names a pass-manager preset or pipeline text (None: no passes). A
    failing pass raises the PassError that names it, unless ``fallback`` asks for
    the unoptimised graph instead (with a warning).
    """
    from ..errors import PassError
    from ..ops.contrib import read_contrib_ops
    from ..pm.manager import PassManager

    m = _as_model(model)
    read_contrib_ops(m)
    m.verify()  # a broken graph (wrong arity, dangling value ...) is refused here, not in run()
    # every precision choice, in one pass before the fusions (which carry it to the fused nodes); a QDQ
    # file's Q/DQ become int8 decisions with its grids, so O2 fuses it as the float file
    decide_precision(m, precision, node_precision, absorb=bool(optimize))
    if optimize:
        try:
            PassManager.from_text(optimize)(m)
        except PassError as e:
            if not fallback:
                raise
            logger.warning("%s; lowering the unoptimised graph (fallback=True)", e)
    _infer(m)
    return m


def _infer(m: Model) -> None:
    try:
        from ..io import infer_shapes

        infer_shapes(m)
    except Exception as e:  # noqa: BLE001 - lowering checks dtypes itself and falls back when unknown
        logger.warning("shape inference failed (%s); dtypes unknown to the lowering run as fallbacks", e)


def compile(model: Any, precision: str = "fp32", num_threads: int | None = None, *,
            optimize: str | None = "O2", fallback: bool = False,
            node_precision: dict[str, str] | None = None) -> Session:
    """Compile ``model`` for the native runtime.

    :param model: a :class:`graphopt.Model`, an ``onnx.ModelProto``, a path, or a ``ModelSpec``.
    :param precision: ``"fp32"``, ``"bf16"`` (bf16 GEMM weights and activations, fp32
        accumulation and everything else fp32) or ``"int8"`` (int8 GEMMs: per-channel
        symmetric s8 weights, u8 activations quantized at run time with one scale per row / image, or with
        the calibrated scales of a QDQ model from graphopt.quant).
    :param num_threads: OpenMP threads for this session's runs (None: all cores).
    :param optimize: pass pipeline applied first (a preset such as ``"O2"``, or None).
    :param fallback: when a pass fails, lower the unoptimised graph (with a warning) instead of raising.
    :param node_precision: per-node precision ("fp32"/"bf16"/"int8") of GEMM and attention nodes,
        overriding ``precision``, by node name or as ``"weight:NAME"`` (the node whose weight input is
        NAME, which survives fusions that rename nodes); default: the model's
        ``graphopt.node_precision`` metadata (JSON, written by ``graphopt.tune``), if any.
    :returns: a :class:`Session`; ``session.summary()`` lists kernels and fallbacks.

    >>> sess = compile(model, precision="int8")   # doctest: +SKIP
    """
    _check_args(precision, num_threads)
    return _compile(prepare(model, optimize, fallback=fallback, node_precision=node_precision, precision=precision),
                    precision, num_threads)


def _check_args(precision: str, num_threads: int | None) -> None:
    if precision not in PRECISIONS:
        raise UnsupportedError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if num_threads is not None and int(num_threads) < 1:
        raise GraphoptError(f"num_threads must be >= 1, got {num_threads}")



def compile_model(m: Model, precision: str = "fp32", num_threads: int | None = None) -> Session:
    """Lower an already optimised model that the caller hands over (it is not copied) into a Session.
    The nodes' precisions are the decisions recorded in ``m`` (``decide-precision``), else ``precision``."""
    _check_args(precision, num_threads)
    _infer(m)
    return _compile(m, precision, num_threads)


def _compile(m: Model, precision: str, num_threads: int | None) -> Session:
    g = m.graph
    from ..ir import DType

    from ..ir import TensorType

    values = [*g.inputs, *g.outputs, *(o for n in g for o in n.outputs)]
    odd = [v.name for v in values if v.dtype == DType.STRING or (v.type is not None and not isinstance(v.type, TensorType))]
    if odd:
        # String / sequence / optional / map values have no slot in the native plan: the whole graph
        # runs in onnxruntime instead (and summary() says so), so such models still run.
        logger.warning("%s: value '%s' is not a numeric tensor; the whole graph runs in onnxruntime", g.name, odd[0])
        return _whole_graph_session(m, precision, num_threads, odd[0])

    steps, consts, inputs, const_of = lower_native(m, precision, num_threads)
    plan, _ = build_plan(steps, consts, inputs, list(g.outputs), const_of, threads=num_threads or 0)
    for st in steps:
        # The plan owns packed copies now: drop the fp32/int8 arrays and the graph references so
        # the session does not keep the model's weights alive twice.
        st.weights = []
        st.inputs = []
        st.outputs = []
    specs = []
    for v in inputs:
        shape = None if v.shape is None else tuple(d if isinstance(d, (int, str)) else None for d in v.shape)
        specs.append(InputSpec(v.name, np.dtype(_NP_OF[v.dtype]) if v.dtype in _NP_OF else None, shape))
    sess = Session(plan, specs, [v.name for v in g.outputs], steps, precision, num_threads, g.name)
    logger.info("compiled %s: %d steps, %d fallbacks", g.name, len(steps), len(sess.fallbacks))
    _return_freed_memory()
    return sess


def lower_native(m: Model, precision: str, num_threads: int | None) -> tuple[list, dict, list, Any]:
    """Lower a prepared model: (steps, extra constants, graph inputs, const lookup for build_plan).

    Shared by :func:`compile` and :func:`graphopt.runtime.check.check` (which builds a second
    plan from the same steps, with intermediate values kept as outputs).
    """
    g = m.graph
    proto_nodes: dict[str, onnx.NodeProto] | None = None

    def node_proto(n: Node) -> onnx.NodeProto | None:
        nonlocal proto_nodes
        if proto_nodes is None:
            from ..io import to_onnx

            mp = to_onnx(m, value_info=False, omit_initializer_data=frozenset(m.graph.initializers))  # nodes only
            proto_nodes = {}
            for p in mp.graph.node:
                for o in p.output:
                    if o:
                        proto_nodes.setdefault(o, p)
        for o in n.outputs:
            if o.name in proto_nodes:
                return proto_nodes[o.name]
        return None

    def factory(n: Node):
        # contrib weight-only ops (MatMulNBits) prepack their weights: keep those constant in ORT
        return make_fallback(n, node_proto(n) if n.domain != "graphopt" else None, m.opset_imports,
                             bake_constants=n.domain == "com.microsoft")

    steps, consts = lower(m, precision, factory, threads=num_threads or os.cpu_count() or 1)
    inputs = [v for v in g.inputs if not v.is_initializer]

    def const_of(k: Any) -> np.ndarray | None:
        if k in consts:
            return consts[k]
        return getattr(k, "const", None)

    return steps, consts, inputs, const_of


def _return_freed_memory() -> None:
    """Hand the heap that importing, optimising and packing freed back to the OS (glibc only).

    Those transients are mostly weight-sized arrays below glibc's (adaptive) mmap threshold;
    freed, they stay in the process heap: on MiniLM fp32 ~70 MB of resident memory beyond
    the 90 MB the plan holds.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def _whole_graph_session(m: Model, precision: str, num_threads: int | None, why: str) -> Session:
    from ..io import to_onnx
    from .fallback import WholeGraphRunner
    from .lower import StepSpec

    g = m.graph
    inputs = [v for v in g.inputs if not v.is_initializer]
    runner = WholeGraphRunner(to_onnx(m), [v.name for v in inputs], [v.name for v in g.outputs])
    step = StepSpec("PyCall", g.name or "graph", list(inputs), list(g.outputs), callback=runner,
                    origin=[f"whole graph ({len(g)} nodes; non-tensor value '{why}')"], native=False,
                    detail="whole graph in onnxruntime")
    specs = [InputSpec(v.name, np.dtype(_NP_OF[v.dtype]) if v.dtype in _NP_OF else None,
                       None if v.shape is None else tuple(d if isinstance(d, (int, str)) else None for d in v.shape))
             for v in inputs]
    return Session(None, specs, [v.name for v in g.outputs], [step], precision, num_threads, g.name, runner=runner)
