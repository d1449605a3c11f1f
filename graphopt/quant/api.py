"""One call for post-training quantization: ``quantize(model, config, calib_data)``.

Static mode runs: validate config and data -> (SmoothQuant: per-channel
calibration, smoothing) -> annotate -> calibration -> insert-qdq ->
(fold-qdq for ``fmt="qoperator"``). Dynamic and weight-only modes need no data.
Everything fails with a GraphoptError *before* any work when the config names
missing nodes or the data does not fit the model.

>>> from graphopt.quant import QuantConfig, quantize
>>> qmodel, report = quantize(model, QuantConfig.transformer(), batches)   # doctest: +SKIP
>>> report.calibration_seconds                                            # doctest: +SKIP
0.9
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphoptError
from ..ir import Model
from ..feeds import check_feeds
from ..pm import Instrument, Pass, PassContext, PassManager, get_pass
from .calibrate import CalibratePass, CalibrationResult, Calibrator, DataSource, calibrate, iter_batches
from .config import QuantConfig
from .specs import PRECISION

__all__ = ["quantize", "QuantReport", "prepare_batches"]

logger = logging.getLogger(__name__)


@dataclass
class QuantReport:
    """What quantization did: pass statistics and timings."""

    mode: str
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    calibration_seconds: float = 0.0
    calibration_batches: int = 0
    seconds: float = 0.0
    #: nodes that now run in a quantized precision (0: the model was left as it was)
    quantized: int = 0


_GRAM_BUDGET = 256 * 2**20  # most bytes of Gram matrices (float32 K x K per layer input) in one GPTQ round


class _GptqRounds(Pass):
    """Weight-only GPTQ as one pass of the quantization pipeline (calibration inside, in rounds)."""

    name = "quantize-weight-only-gptq"

    def __init__(self, cfg: QuantConfig, batches: list[dict[str, Any]], progress: bool) -> None:
        self.cfg, self.batches, self.progress = cfg, batches, progress

    def run(self, model: Model, ctx: PassContext):
        from ..pm import PassResult

        stats = _gptq_rounds(model, self.cfg, self.batches, ctx, self.progress, QuantReport(self.cfg.mode))
        return PassResult(bool(stats), stats)


def _gptq_rounds(model: Model, cfg: QuantConfig, batches: list[dict[str, Any]], ctx: PassContext,
                 progress: bool, report: QuantReport) -> dict[str, int]:
    """Calibrate and quantize a slice of layers at a time. The Gram matrices of every layer
    together outweigh the model itself (a 2048-wide input: 32 MB of Gram for 16 MB of weight),
    so a round holds at most a quarter of the weights' bytes of them (<= ``_GRAM_BUDGET``; float32, each
    factored in place for GPTQ); later rounds are calibrated on the model
    with the earlier layers already quantized (GPTQ's sequential variant)."""
    from graphopt.ir.mapped import trim_heap
    from graphopt.quant.specs import GRAM

    wq = get_pass("quantize-weight-only")
    weights = sum(v.const.nbytes for v in model.graph.initializers.values() if v.const is not None)
    budget = min(_GRAM_BUDGET, max(16 * 2**20, weights // 4))
    done: set[str] = set()
    stats: dict[str, int] = {}
    while True:
        values = {v.name: v for v in model.graph.all_values()}
        todo = [t for t in _smoothquant_targets(model) if t not in done]
        if not todo:
            return stats
        chunk, size = [], 0
        for t in todo:
            cost = 4 * _input_width(values[t]) ** 2  # a float32 K x K Gram
            if chunk and size + cost > budget:
                break
            chunk.append(t)
            size += cost
        res = calibrate(model, batches, chunk, kind="gram-f32", progress=progress)
        res.attach(model)
        report.calibration_seconds += res.seconds
        report.calibration_batches = res.batches
        res = None  # the Gram matrices now live on the values only: the pass consumes and frees them
        for k, n in wq(cfg, only_inputs=frozenset(chunk)).run(model, ctx).stats.items():  # type: ignore[call-arg]
            stats[k] = stats.get(k, 0) + n
        for t in chunk:
            values[t].meta.pop(GRAM, None)  # this round's Gram matrices are spent
        done.update(chunk)
        trim_heap()  # the round's transients go back to the OS, not into the next round's resident set


def _input_width(v: Any) -> int:
    """K of a layer input: its last dim, or the rows of a consuming MatMul's constant weight (values
    inside a loaded graph often carry no shape), or 4096 when neither says."""
    k = (v.shape or (None,))[-1]
    if isinstance(k, int):
        return k
    for n, _ in v.uses():
        w = n.inputs[1] if n.op_type == "MatMul" and len(n.inputs) > 1 else None
        if w is not None and w.const is not None and w.const.ndim == 2:
            return int(w.const.shape[0])
    return 4096


def prepare_batches(model: Model, data: DataSource) -> list[dict[str, Any]]:
    """Materialise and check every calibration batch (names, dtypes, ranks) before any work."""
    batches = list(iter_batches(data))
    if not batches:
        raise GraphoptError("the calibration set is empty")
    for i, b in enumerate(batches):
        check_feeds(model, b, i)
    return batches


def _smoothquant_targets(model: Model) -> list[str]:
    return list(get_pass("smoothquant").targets(model))  # type: ignore[attr-defined]


def quantize(model: Model, config: QuantConfig | None = None, data: DataSource | None = None, *,
             fmt: str = "qdq", progress: bool | None = None, calibration: CalibrationResult | None = None,
             smoothing: CalibrationResult | None = None, calibrator: Calibrator | None = None,
             ctx: PassContext | None = None, instruments: Sequence[Instrument] = ()) -> tuple[Model, QuantReport]:
    """Quantize ``model`` in place per ``config`` (default: transformer preset) and return it.

    Every step -- calibration included -- is a pass run by a :class:`PassManager`, so
    ``instruments`` (Timing, DumpIR, NumericGuard, ...) and graph verification apply to each.
    ``calibration`` reuses a saved range calibration (SmoothQuant still needs ``data`` for
    its per-channel pass, unless ``config.smoothquant`` is None or ``smoothing`` gives its saved
    per-channel maxima). ``calibrator`` replaces the local calibration runs (both SmoothQuant's and the
    ranges'): ``calibrator(model, targets, kind) -> CalibrationResult``, e.g. shards observed on several
    processes and merged; ``data`` is then not needed here. ``progress`` (default:
    stderr is a terminal) shows a bar while calibrating.
    """
    t0 = time.perf_counter()
    cfg = config or QuantConfig.transformer()
    if fmt not in ("qdq", "qoperator"):
        raise GraphoptError(f"unknown output format '{fmt}' (qdq, qoperator)")
    if progress is None:
        progress = sys.stderr.isatty()
    cfg.validate(model)
    # the passes by registered name: graphopt.quant does not import graphopt.passes (which imports it)
    passes: list[Pass] = []
    if cfg.mode == "dynamic":
        passes.append(get_pass("quantize-dynamic")(cfg))  # type: ignore[call-arg]
    elif cfg.mode == "weight-only":
        if cfg.gptq:
            if data is None:
                raise GraphoptError("GPTQ needs calibration data (the Gram matrix of each layer's input)")
            passes.append(_GptqRounds(cfg, prepare_batches(model, data), progress))
        else:
            passes.append(get_pass("quantize-weight-only")(cfg))  # type: ignore[call-arg]
    else:
        needs_data = calibrator is None and (calibration is None or (cfg.smoothquant is not None and smoothing is None))
        batches: Sequence[dict[str, Any]] = []
        if needs_data:
            if data is None:
                raise GraphoptError("static quantization needs calibration data (or a saved calibration "
                                    "and smoothquant=None)")
            batches = prepare_batches(model, data)
        if cfg.smoothquant is not None:
            passes += [CalibratePass(batches, kind="channel_absmax", targets=_smoothquant_targets, progress=progress,
                                     result=smoothing, calibrator=calibrator),
                       get_pass("smoothquant")(cfg.smoothquant)]  # type: ignore[call-arg]
        passes += [get_pass("quant-annotate")(cfg),  # type: ignore[call-arg]
                   CalibratePass(batches, progress=progress, result=calibration, calibrator=calibrator),
                   get_pass("insert-qdq")()]
        if fmt == "qoperator":
            passes.append(get_pass("fold-qdq")())
    result = PassManager(passes, instruments=instruments, atomic=False)(model, ctx)
    report = QuantReport(cfg.mode)
    for r in result.records:
        report.stats[r.name] = dict(r.stats)
        if r.name.startswith("calibrate"):
            report.calibration_seconds += float(r.stats.get("milliseconds", 0)) / 1e3
            report.calibration_batches = max(report.calibration_batches, int(r.stats.get("batches", 0)))
    report.quantized = sum(1 for n in model.graph.walk() if n.meta.get(PRECISION) in ("int8", "int4", "uint8"))
    if not any(r.modified for r in result.records
               if not r.name.startswith("calibrate") and r.name not in ("quant-annotate", "smoothquant")):
        report.quantized = 0
        logger.warning("%s quantization found nothing to quantize: no MatMul/Gemm/Conv/Gather with a constant "
                       "weight that the config puts in int8", cfg.mode)
    _low_precision_nodes(model, cfg, ctx or PassContext.current(), report)
    model.graph.verify()
    report.seconds = time.perf_counter() - t0
    logger.info("quantized (%s) in %.1f s: %s", cfg.mode, report.seconds, report.stats)
    return model, report


def _low_precision_nodes(model: Model, cfg: QuantConfig, ctx: PassContext, report: QuantReport) -> None:
    """Nodes the config puts in "bf16"/"fp16" go through assign-precision (casts at their boundaries)."""
    wanted: dict[str, set[str]] = {}
    for n in model.graph:
        if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            p = cfg.plan(n).precision
            if p in ("bf16", "fp16"):
                wanted.setdefault(p, set()).add(n.name)
    if not wanted:
        return
    assign_precision = get_pass("assign-precision")
    from ..io import infer_shapes

    infer_shapes(model)
    for dtype, names in sorted(wanted.items()):
        res = assign_precision(dtype,  # type: ignore[call-arg] target=ctx.target, allow=frozenset(), inherit=frozenset(),
                                  force_nodes=frozenset(names)).run(model, ctx)
        report.stats[f"assign-precision-{dtype}"] = dict(res.stats)
