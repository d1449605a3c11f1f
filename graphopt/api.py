"""The flow API: one verb per step, each taking a model (a :class:`Model`, an ``onnx.ModelProto``
or a path) and returning a new one; the caller's model is never modified.

>>> import graphopt
>>> model = graphopt.load("model.onnx")                              # doctest: +SKIP
>>> model = graphopt.optimize(model, level="O2")                     # doctest: +SKIP
>>> model = graphopt.quantize(model, "calib/", mode="static")        # doctest: +SKIP
>>> sess = graphopt.compile(model)                                   # doctest: +SKIP
>>> graphopt.export(model, "out/model.xml", target="openvino")       # doctest: +SKIP

The command line (``graphopt optimize/quantize/export``) is a thin layer over these verbs.
Levels: ``O0`` (as imported), ``O1`` (cleanup: constant folding, CSE, dead code, shape
chains), ``O2`` (O1 + fusions; the default everywhere). Precision is not a level: it is
chosen by :func:`quantize` or ``compile(precision=...)``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from .errors import GraphoptError, PassError, UsageError
from .ir import Model
from .ir.domains import GRAPHOPT_DOMAIN

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

    from .pm import Instrument
    from .quant import CalibrationResult, QuantConfig
    from .quant.calibrate import DataSource
    from .runtime.session import Session

__all__ = ["LEVELS", "DEFAULT_LEVEL", "TARGETS", "load", "save", "optimize", "quantize", "compile", "export",
           "has_qdq"]

logger = logging.getLogger(__name__)

#: The optimization levels every verb and command accepts (one set, one default).
LEVELS: tuple[str, ...] = ("O0", "O1", "O2")
DEFAULT_LEVEL = "O2"
#: Export targets.
TARGETS: tuple[str, ...] = ("onnx", "openvino")

ModelLike = Union[Model, "onnx.ModelProto", str, os.PathLike]


def load(path: str | os.PathLike | bytes | onnx.ModelProto, *, load_external_data: bool = True) -> Model:
    """Import an ONNX file (or bytes, or a ModelProto) into graphopt's IR.

    ``load_external_data=False`` keeps external tensors unread; a model that needs them is then
    refused (never read from the working directory).

    ``com.microsoft`` fused ops that graphopt's own ONNX export writes
    (EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, ...) are read back as
    graphopt's fused ops, so a file graphopt wrote optimizes and compiles natively again.

    >>> model = graphopt.load("model.onnx")   # doctest: +SKIP
    """
    from .io import load as _load
    from .ops.contrib import read_contrib_ops

    model = _load(path, load_external_data=load_external_data)
    read_contrib_ops(model)
    return model


def save(model: ModelLike, path: str | os.PathLike, *, keep_fused: bool = False, **options: Any) -> Path:
    """Write ``model`` as an ONNX file that onnxruntime loads, and return the path.

    graphopt-domain fused ops (after ``O2``) are mapped to onnxruntime's ``com.microsoft``
    contrib ops (standard ONNX where none fits) on a copy; :func:`load` reads them back as
    fused ops. ``keep_fused=True`` writes the graphopt-domain ops as they are: such a
    file is read by graphopt only (a warning says so). ``options`` go to :func:`graphopt.io.save`
    (``external_data``, ``location``, ``size_threshold``).

    >>> graphopt.save(graphopt.optimize("model.onnx"), "model.O2.onnx")   # doctest: +SKIP
    """
    from .io import save as _save

    m = _model(model, copy=False)
    fused = sum(1 for n in m.graph.walk() if n.domain == GRAPHOPT_DOMAIN)
    if fused and keep_fused:
        logger.warning("%s: %d graphopt-domain op(s) written as they are; only graphopt reads this file "
                       "(save without keep_fused=True for a file onnxruntime loads)", path, fused)
    elif fused:
        from .ir.clone import clone
        from .ops.lowering import lower_to_onnxruntime

        m = clone(m)
        lower_to_onnxruntime(m)
    return _save(m, path, **options)


def _model(model: Any, *, copy: bool) -> Model:
    """A :class:`Model` from any accepted form; a private copy (IR clone, metadata kept) if ``copy``."""
    if isinstance(model, Model):
        if not copy:
            return model
        from .ir.clone import clone

        return clone(model)
    if isinstance(model, (str, os.PathLike, bytes)) or hasattr(model, "SerializeToString"):
        return load(model)
    path = getattr(model, "path", None)  # graphopt.models.ModelSpec
    if path is not None:
        return load(path)
    raise UsageError(f"expected a graphopt Model, an onnx.ModelProto or a path, got {type(model).__name__}")


def _pipeline(level: str | None, passes: str | None) -> str | None:
    if passes:
        return passes
    if level is None:
        level = DEFAULT_LEVEL
    if level not in LEVELS:
        raise UsageError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return None if level == "O0" else level


def optimize(model: ModelLike, level: str = DEFAULT_LEVEL, *, passes: str | None = None,
             disable: Iterable[str] = (), instruments: Sequence[Instrument] = (),
             verify_each: bool = True) -> Model:
    """Run a preset pipeline (``level``: O0, O1, O2) or pipeline text (``passes``) and return
    the optimized model (a copy; ``model`` is left as it is).

    :param disable: registered pass names to skip (e.g. ``{"fuse-attention"}``).
    :param instruments: PassManager instruments (``Timing()``, ``DumpIR(dir)``, ``NumericGuard(...)``, ...).
    :raises PassError: naming the pass that failed.

    >>> import graphopt
    >>> from graphopt.quant.testing import mlp_model
    >>> m = graphopt.optimize(mlp_model(), level="O2")
    >>> sorted(op for op in m.graph.op_counts() if op.startswith("graphopt::"))
    ['graphopt::Linear']
    >>> m = graphopt.optimize("model.onnx", level="O2")                              # doctest: +SKIP
    >>> m = graphopt.optimize(m, passes="fold-constants,fixpoint(cse,remove-unused)")  # doctest: +SKIP
    """
    from .pm import PassContext, PassManager, registered_passes

    m = _model(model, copy=True)
    text = _pipeline(level, passes)
    if text is None:
        return m
    disabled = frozenset(disable)
    unknown = disabled - set(registered_passes())
    if unknown:
        raise UsageError(f"unknown pass(es) to disable: {sorted(unknown)}")
    try:
        pm = PassManager.from_text(text, instruments=instruments, verify_each=verify_each, atomic=False)
    except GraphoptError as e:  # unknown pass or preset, bad pipeline syntax
        raise UsageError(str(e)) from e
    logger.info("optimizing %s: %s", m.graph.name or "model", text)
    with PassContext(disabled=disabled):
        pm(m)
    return m


def quantize(model: ModelLike, data: DataSource | None = None, *, config: QuantConfig | str | None = None,
             mode: Literal["static", "dynamic", "weight-only"] | None = None, fmt: str = "qdq",
             calibration: CalibrationResult | None = None, progress: bool | None = None,
             instruments: Sequence[Instrument] = ()) -> Model:
    """Post-training quantization; returns the quantized model (a copy).

    :param data: calibration data for static mode (and SmoothQuant/GPTQ): a feed dict, a list or
        iterable of feed dicts, a zero-argument callable returning them, onnxruntime's
        ``CalibrationDataReader``, an ``.npz`` file or a folder of ``.npz`` files -- the same
        sources the CLI's ``--calib`` takes.
    :param config: a :class:`~graphopt.quant.QuantConfig`, a YAML/JSON path, or None (transformer preset).
    :param mode: ``static`` / ``dynamic`` / ``weight-only``; overrides ``config.mode`` when given.
    :param fmt: ``qdq`` (QuantizeLinear/DequantizeLinear pairs) or ``qoperator`` (integer ops).
    :param progress: a progress bar while calibrating (default: only when stderr is a terminal).
    :param instruments: PassManager instruments; every step (calibration included) is a pass.

    >>> q = graphopt.quantize(model, [{"x": x0}, {"x": x1}])           # doctest: +SKIP
    >>> q = graphopt.quantize(model, mode="dynamic")                   # doctest: +SKIP
    """
    from .quant import QuantConfig
    from .quant.api import quantize as _quantize

    m = _model(model, copy=True)
    if isinstance(config, (str, os.PathLike)):
        cfg = QuantConfig.load(config)
    else:
        cfg = copy.deepcopy(config) if config is not None else QuantConfig.transformer()
    if mode is not None:
        cfg.mode = mode
        cfg.__post_init__()
    m, _ = _quantize(m, cfg, data, fmt=fmt, progress=progress, calibration=calibration, instruments=instruments)
    return m


def has_qdq(model: Model) -> bool:
    """True if the model carries QuantizeLinear/DequantizeLinear pairs (a statically quantized model)."""
    return any(n.op_type == "QuantizeLinear" and n.domain in ("", "ai.onnx") for n in model.graph.walk())


def compile(model: ModelLike, precision: str | None = None, num_threads: int | None = None, *,  # noqa: A001
            level: str = DEFAULT_LEVEL, fallback: bool = False, check: bool | Mapping[str, np.ndarray] = False,
            node_precision: dict[str, str] | None = None) -> Session:
    """Compile for graphopt's native runtime (packed weights, one C++ call per run).

    :param precision: ``fp32``, ``bf16`` or ``int8``. Default: ``int8`` for a model with
        QDQ pairs (its calibrated scales are used), else ``fp32``. ``int8`` on a float model
        quantizes dynamically (activations per tensor at run time): it logs so, and
        ``session.int8_activations`` is ``"dynamic"`` (``"static"`` for a QDQ model).
    :param level: passes run first (O0, O1, O2) on a copy made with the IR's clone.
    :param fallback: if a pass fails, compile the graph as it was before the pipeline
        (with a warning) instead of raising the :class:`PassError` that names the pass.
    :param check: also run the plan and onnxruntime on the same inputs (True: generated feeds, or
        a dict of feeds); :class:`graphopt.runtime.check.NativeMismatch` names the first diverging node.
    :param node_precision: per-node precision of GEMM/attention nodes (by node name or
        ``"weight:NAME"``), overriding ``precision``; default: the model's ``graphopt.node_precision``
        metadata (written by ``graphopt.tune``).

    >>> sess = graphopt.compile("model.onnx", precision="bf16")   # doctest: +SKIP
    >>> outs = sess.run(feeds)                                     # doctest: +SKIP
    """
    from .runtime.compile import compile_model, decide_precision

    m = _model(model, copy=True)
    qdq = has_qdq(m)
    if precision is None:
        precision = "int8" if qdq else "fp32"
        logger.info("precision %s (%s)", precision, "the model has QDQ pairs" if qdq else "a float model")
    elif precision == "int8" and not qdq:
        logger.info("precision int8 on a float model: weights are quantized per channel and activations "
                    "dynamically (one scale per row, at run time); quantize() first for static int8")
    if check is not False and check is not None:
        from .runtime.check import NativeMismatch
        from .runtime.check import check as run_check

        report = run_check(model, precision,
                           None if check is True else check, num_threads=num_threads, optimize=level)
        if not report.ok:
            raise NativeMismatch(report)
        logger.info("%s", report)
    m.verify()  # a broken graph (wrong arity, dangling value ...) is refused here, not in run()
    # every precision choice in one pass, before the fusions (they carry it to the fused nodes): a QDQ
    # file's Q/DQ become per-node int8 decisions with its own scales, so the fusions see the float graph
    decide_precision(m, precision, node_precision, absorb=_pipeline(level, None) is not None)
    try:
        m = optimize(m, level=level)
    except PassError as e:
        if not fallback:
            raise
        logger.warning("%s; compiling the graph without the %s pipeline (fallback=True)", e, level)
    sess = compile_model(m, precision, num_threads)  # node_precision: decided above, carried by the fusions
    if precision == "int8":
        sess.int8_activations = "static" if qdq else "dynamic"
    return sess


def export(model: ModelLike, path: str | os.PathLike, target: str = "onnx", *, level: str = DEFAULT_LEVEL,
           precision: str | None = None, compress_to_fp16: bool = False) -> Path:
    """Optimize at ``level`` and write ``path`` for ``target``; the written file is read back by
    the target runtime before this returns (a file it cannot load raises GraphoptError).

    :param target: ``onnx`` (fused ops as onnxruntime contrib ops; loaded by onnxruntime)
        or ``openvino`` (``.xml`` + ``.bin``; read back by ``openvino.Core``).
    :param precision: OpenVINO only: ``fp32`` or ``bf16`` execution hint recorded in the IR.
    :param compress_to_fp16: OpenVINO only: store fp32 weights as fp16.

    >>> graphopt.export("model.onnx", "out/model.xml", target="openvino")   # doctest: +SKIP
    """
    if target not in TARGETS:
        raise UsageError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    out = Path(path)
    if target == "onnx" and (precision is not None or compress_to_fp16):
        raise UsageError("precision and compress_to_fp16 apply to target='openvino' "
                         "(an ONNX file carries its precision in the graph)")
    m = optimize(model, level=level)
    if target == "onnx":
        dst = save(m, out)
        from ._ort import ort_session

        ort_session(dst)  # read back: raises GraphoptError naming onnxruntime's reason
        return dst
    if out.suffix != ".xml":
        raise UsageError(f"target 'openvino' writes .xml/.bin; the path must end in .xml, got {out}")
    from .backends.openvino import export_openvino

    return export_openvino(m, out, precision=precision, compress_to_fp16=compress_to_fp16)  # reads back
