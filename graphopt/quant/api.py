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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphoptError
from ..ir import Model
from ..pm import PassContext
from .calibrate import CalibrationResult, DataSource, calibrate, check_feeds, iter_batches
from .config import QuantConfig

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


_GRAM_BUDGET = 256 * 2**20  # most bytes of Gram matrices (float64 K x K per layer input) in one GPTQ round


def _gptq_rounds(model: Model, cfg: QuantConfig, batches: list[dict[str, Any]], ctx: PassContext,
                 progress: bool, report: QuantReport) -> dict[str, int]:
    """Calibrate and quantize a slice of layers at a time. The Gram matrices of every layer
    together outweigh the model itself (a 2048-wide input: 32 MB of Gram for 16 MB of weight),
    so a round holds at most a quarter of the weights' bytes of them (<= ``_GRAM_BUDGET``); later rounds are calibrated on the model
    with the earlier layers already quantized (GPTQ's sequential variant)."""
    from graphopt.passes.quant.smoothquant import smoothquant_targets
    from graphopt.quant.specs import GRAM

    pq = _passes()
    weights = sum(v.const.nbytes for v in model.graph.initializers.values() if v.const is not None)
    budget = min(_GRAM_BUDGET, max(16 * 2**20, weights // 4))
    done: set[str] = set()
    stats: dict[str, int] = {}
    while True:
        values = {v.name: v for v in model.graph.all_values()}
        todo = [t for t in smoothquant_targets(model) if t not in done]
        if not todo:
            return stats
        chunk, size = [], 0
        for t in todo:
            k = (values[t].shape or (None,))[-1]
            cost = 8 * (k if isinstance(k, int) else 4096) ** 2
            if chunk and size + cost > budget:
                break
            chunk.append(t)
            size += cost
        res = calibrate(model, batches, chunk, kind="gram", progress=progress)
        res.attach(model)
        report.calibration_seconds += res.seconds
        report.calibration_batches = res.batches
        for k, n in pq.WeightOnlyQuantPass(cfg, only_inputs=frozenset(chunk)).run(model, ctx).stats.items():
            stats[k] = stats.get(k, 0) + n
        for t in chunk:
            values[t].meta.pop(GRAM, None)  # this round's Gram matrices are spent
        done.update(chunk)


def prepare_batches(model: Model, data: DataSource) -> list[dict[str, Any]]:
    """Materialise and check every calibration batch (names, dtypes, ranks) before any work."""
    batches = list(iter_batches(data))
    if not batches:
        raise GraphoptError("the calibration set is empty")
    for i, b in enumerate(batches):
        check_feeds(model, b, i)
    return batches


def _passes():
    import graphopt.passes.quant as pq  # registers the passes

    return pq


def quantize(model: Model, config: QuantConfig | None = None, data: DataSource | None = None, *,
             fmt: str = "qdq", progress: bool = True, calibration: CalibrationResult | None = None,
             ctx: PassContext | None = None) -> tuple[Model, QuantReport]:
    """Quantize ``model`` in place per ``config`` (default: transformer preset) and return it.

    ``calibration`` reuses a saved range calibration (SmoothQuant still needs
    ``data`` for its per-channel pass, unless ``config.smoothquant`` is None).
    """
    t0 = time.perf_counter()
    cfg = config or QuantConfig.transformer()
    if fmt not in ("qdq", "qoperator"):
        raise GraphoptError(f"unknown output format '{fmt}' (qdq, qoperator)")
    cfg.validate(model)
    ctx = ctx or PassContext()
    pq = _passes()
    report = QuantReport(cfg.mode)
    if cfg.mode == "dynamic":
        report.stats["quantize-dynamic"] = dict(pq.DynamicQuantPass(cfg).run(model, ctx).stats)
    elif cfg.mode == "weight-only":
        if cfg.gptq:
            if data is None:
                raise GraphoptError("GPTQ needs calibration data (the Gram matrix of each layer's input)")
            report.stats["quantize-weight-only"] = _gptq_rounds(model, cfg, prepare_batches(model, data), ctx,
                                                                progress, report)
        else:
            report.stats["quantize-weight-only"] = dict(pq.WeightOnlyQuantPass(cfg).run(model, ctx).stats)
    else:
        needs_data = calibration is None or cfg.smoothquant is not None
        batches: Sequence[dict[str, Any]] = []
        if needs_data:
            if data is None:
                raise GraphoptError("static quantization needs calibration data (or a saved calibration "
                                    "and smoothquant=None)")
            batches = prepare_batches(model, data)
        if cfg.smoothquant is not None:
            from graphopt.passes.quant.smoothquant import smoothquant_targets

            res = calibrate(model, batches, smoothquant_targets(model), kind="channel_absmax", progress=progress)
            res.attach(model)
            report.calibration_seconds += res.seconds
            report.stats["smoothquant"] = dict(pq.SmoothQuantPass(cfg.smoothquant).run(model, ctx).stats)
        report.stats["quant-annotate"] = dict(pq.AnnotateQuantPass(cfg).run(model, ctx).stats)
        if calibration is None:
            calibration = calibrate(model, batches, progress=progress)
        calibration.attach(model)
        report.calibration_seconds += calibration.seconds
        report.calibration_batches = calibration.batches
        report.stats["insert-qdq"] = dict(pq.InsertQDQPass().run(model, ctx).stats)
        if fmt == "qoperator":
            report.stats["fold-qdq"] = dict(pq.FoldQDQPass().run(model, ctx).stats)
    _low_precision_nodes(model, cfg, ctx, report)
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
    from graphopt.passes.precision import AssignPrecisionPass

    from ..io import infer_shapes

    infer_shapes(model)
    for dtype, names in sorted(wanted.items()):
        res = AssignPrecisionPass(dtype, target=ctx.target, allow=frozenset(), inherit=frozenset(),
                                  force_nodes=frozenset(names)).run(model, ctx)
        report.stats[f"assign-precision-{dtype}"] = dict(res.stats)
