"""``graphopt.prune``: structured pruning of attention heads and FFN neurons (calibrated, no
gradients) and magnitude sparsity of the linear weights.

>>> import graphopt
>>> model = graphopt.load("model.onnx")                                             # doctest: +SKIP
>>> model, report = graphopt.prune(model, batches, heads=0.25, ffn=0.25)            # doctest: +SKIP
>>> report.params_before, report.params_after                                       # doctest: +SKIP
(22565376, 17543424)
>>> model, report = graphopt.prune(model, sparsity=0.8, pattern="4x1")             # doctest: +SKIP
>>> print(report.sparsity.table())                                                  # doctest: +SKIP

The model is first brought to ``level`` (O2 by default: fused, so that every export form
prunes the same way); then the Gram matrices of the attention outputs and FFN activations
are calibrated on ``data`` and ``prune-structured`` removes the least important heads and
neurons, refitting the following layer by least squares. ``sparsity`` then runs
``sparsify-weights`` (no data needed). The result is an ordinary graphopt model: quantize,
compile or export it like any other.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from dataclasses import dataclass, field

import numpy as np

from .ir import Model
from .pm import PassContext, PassManager

if TYPE_CHECKING:
    from graphopt.passes.pruning.sparsify import SparsityReport

__all__ = ["prune", "PruneReport"]


@dataclass
class PruneReport:
    """What pruning removed: per layer counts and parameter totals."""

    heads: dict[str, tuple[int, int]] = field(default_factory=dict)    # attention node -> (before, after)
    neurons: dict[str, tuple[int, int]] = field(default_factory=dict)  # down projection -> (before, after)
    params_before: int = 0
    params_after: int = 0
    seconds: float = 0.0
    sparsity: SparsityReport | None = None                                 # with sparsity > 0
    kept_heads: dict[str, list[int]] = field(default_factory=dict)     # attention block -> kept head indices
    kept_neurons: dict[str, list[int]] = field(default_factory=dict)   # down projection -> kept neuron indices


def _params(model: Model) -> int:
    return int(sum(v.const.size for v in model.graph.all_values()
                   if v.const is not None and np.asarray(v.const).dtype.kind == "f"))


def _head_counts(model: Model, unfused: list | None = None) -> dict[str, int]:
    """Heads per attention block; ``unfused``: the unfused blocks found before pruning (their
    output projections' rows give the heads left)."""
    import graphopt.passes.pruning as pp

    counts = {g.mha.name or g.mha.label(): g.num_heads for g in pp.blocks.head_groups(model.graph)}
    by_label = {n.name or n.label(): n for n in model.graph}  # passes may rebuild nodes: look them up
    for g in unfused if unfused is not None else pp.unfused_heads.unfused_head_groups(model.graph):
        node = by_label.get(g.label)
        w = pp.blocks.linear_weight(node) if node is not None else None
        if w is not None:
            counts[g.label] = int(w.shape[0] // g.head_dim)
    return counts


def prune(model: Model, data=None, *, heads: float = 0.0, ffn: float = 0.0, reconstruct: bool = True,
          sparsity: float = 0.0, pattern: str = "unstructured", scope: str = "layer", level: str = "O2",
          progress: bool = True) -> tuple[Model, PruneReport]:
    """Remove the fraction ``heads`` of attention heads and ``ffn`` of FFN neurons in every layer,
    then zero the fraction ``sparsity`` of the linear weights (``pattern``: unstructured, 2:4, 4x1;
    ``scope``: layer or global).

    ``data``: calibration feeds, any source ``graphopt.quantize`` takes (a list of feed dicts,
    a folder or file of .npz, a reader); needed for ``heads``/``ffn``. With ``data`` and
    ``reconstruct`` the weights left by ``sparsity`` are refitted by least squares too. ``level``: the
    optimization level the model is brought to first (O0 keeps the graph as imported). The
    model is changed in place and returned.
    """
    import graphopt.passes.pruning as pp  # registers the passes
    from .api import _pipeline
    from .errors import UsageError
    from .quant.api import prepare_batches
    from .quant.calibrate import calibrate

    t0 = time.perf_counter()
    text = _pipeline(level, None)
    if (heads > 0 or ffn > 0) and data is None:
        raise UsageError("pruning heads or FFN neurons needs calibration data (data=..., --calib)")
    refuse = False
    if text is not None and not (text == "O2" and any(n.op == "graphopt::MultiHeadAttention" for n in model.graph)):
        if text == "O2" and heads > 0:
            # heads are traced through the unfused decoder attention: fuse-sdpa runs after the pruning
            from .passes.pipelines import o2

            text, refuse = ",".join(p for p in o2().split(",") if p != "fuse-sdpa"), True
        PassManager.from_text(text)(model)
    report = PruneReport(params_before=_params(model))
    if heads > 0 and not any(n.op == "graphopt::MultiHeadAttention" for n in model.graph):
        PassManager.from_text("infer-shapes")(model)  # unfused blocks are traced on static dims
    unfused = pp.unfused_heads.unfused_head_groups(model.graph)
    groups = _head_counts(model, unfused)
    widths = {g.down.name or g.down.label(): g.width for g in pp.blocks.neuron_groups(model.graph)}
    if heads > 0 or ffn > 0:
        targets = pp.prune_structured.pruning_targets(model)
        calibrate(model, prepare_batches(model, data), targets, kind="gram", progress=progress).attach(model)
        ctx = PassContext(config={"prune.heads": float(heads), "prune.ffn": float(ffn),
                                  "prune.reconstruct": bool(reconstruct)})
        with ctx:
            PassManager.from_text("prune-structured,remove-unused,infer-shapes")(model)
    if sparsity > 0 or pattern == "2:4":
        refit = bool(reconstruct and data is not None)
        if refit:  # the layers' input Gram matrices, on the (possibly just pruned) model
            targets = pp.sparsify.sparse_inputs(model.graph)
            calibrate(model, prepare_batches(model, data), targets, kind="gram", progress=progress).attach(model)
        with PassContext(config={"sparsify.ratio": float(sparsity), "sparsify.pattern": pattern,
                                 "sparsify.scope": scope, "sparsify.reconstruct": refit}):
            PassManager.from_text("sparsify-weights,remove-unused")(model)
        report.sparsity = pp.sparsify.sparsity_report(model)
    after_heads = _head_counts(model, unfused)
    after_widths = {g.down.name or g.down.label(): g.width for g in pp.blocks.neuron_groups(model.graph)}
    report.heads = {k: (v, after_heads.get(k, v)) for k, v in groups.items()}
    report.neurons = {k: (v, after_widths.get(k, v)) for k, v in widths.items()}
    kept = model.meta.get(pp.prune_structured.KEPT) or {}
    report.kept_heads, report.kept_neurons = dict(kept.get("heads", {})), dict(kept.get("neurons", {}))
    if refuse:
        from .passes.pipelines import CLEANUP

        PassManager.from_text(f"fuse-sdpa,{CLEANUP}")(model)
    report.params_after = _params(model)
    report.seconds = time.perf_counter() - t0
    return model, report
