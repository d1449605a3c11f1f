"""prune-structured: remove the least important attention heads and FFN neurons.

Heads are those of fused attention (``graphopt::MultiHeadAttention``) and of unfused blocks
(``unfused_heads``: any export form; with grouped KV heads a whole KV group and its query
heads go together, scored by their sum). Importance comes from calibration without gradients: the Gram matrix G = X^T X of
each group's activations (``calibrate(..., kind="gram")``, the observer GPTQ uses)
gives the energy each head or neuron sends into the next layer,

    head h:    I_h = trace(W_o[h]^T G[h, h] W_o[h])        (W_o[h]: the head's rows)
    neuron j:  I_j = G[j, j] * ||W_2[j, :]||^2

and, with ``prune.reconstruct``, the next layer's weights are refitted by least squares
to the unpruned output on the same data, with a ridge towards the plain slice:
W' = (G_KK + lambda I)^-1 (G_K: W + lambda W_K:) (K: kept).

Config: ``prune.heads`` / ``prune.ffn`` (fraction removed in every layer, rounded down;
at least one head and one neuron stay), ``prune.reconstruct`` (default True).
"""

from __future__ import annotations

import logging

import numpy as np

from graphopt.errors import GraphoptError
from graphopt.ir import MetaKey, Model, Value
from graphopt.pm import Pass, PassContext, PassResult, register_config, register_pass
from graphopt.quant.specs import GRAM

from .blocks import head_groups, linear_weight, neuron_groups, shrink_heads, shrink_neurons
from .unfused_heads import unfused_head_groups

__all__ = ["PruneStructuredPass", "head_importance", "neuron_importance", "refit_rows", "kept", "KEPT"]

#: on the model: the indices each pruned block kept, {"heads": {block: [...]}, "neurons": {down: [...]}}
#: in graph (= layer) order -- what a torch student needs to be pruned the same way (graphopt.train)
KEPT: MetaKey[dict] = MetaKey("prune.kept")

logger = logging.getLogger(__name__)

register_config("prune.heads", float, 0.0, "fraction of attention heads removed in every layer")
register_config("prune.ffn", float, 0.0, "fraction of FFN neurons removed in every layer")
register_config("prune.reconstruct", bool, True, "refit the next layer by least squares on calibration data")

#: damping of the least-squares refit, relative to the mean diagonal of G_KK (as in GPTQ)
DAMP = 0.05


def _gram(v: Value) -> np.ndarray:
    g = v.meta.get(GRAM)
    if g is None:
        raise GraphoptError(f"prune-structured: value '{v.name}' has no calibration (run calibrate(kind='gram') "
                            "on the pruning targets first; graphopt.prune does)")
    return g


def head_importance(gram: np.ndarray, wo: np.ndarray, num_heads: int) -> np.ndarray:
    d = wo.shape[0] // num_heads
    out = np.empty(num_heads)
    for h in range(num_heads):
        s = slice(h * d, (h + 1) * d)
        out[h] = float(np.sum((gram[s, s] @ wo[s].astype(np.float64)) * wo[s]))
    return out


def neuron_importance(gram: np.ndarray, w2: np.ndarray) -> np.ndarray:
    return np.diag(gram) * np.sum(w2.astype(np.float64) ** 2, axis=1)


def kept(importance: np.ndarray, ratio: float) -> np.ndarray:
    """Sorted indices that stay: all but the ``floor(ratio * n)`` least important (at least one)."""
    n = importance.size
    drop = min(int(np.floor(ratio * n + 1e-9)), n - 1)
    order = np.argsort(importance, kind="stable")
    return np.sort(order[drop:])


def refit_rows(gram: np.ndarray, w: np.ndarray, keep_rows: np.ndarray) -> np.ndarray:
    """Least-squares rows for the kept inputs so that X_K W' best matches X W (on the calibration data)."""
    gkk = gram[np.ix_(keep_rows, keep_rows)]
    lam = DAMP * float(np.mean(np.diag(gkk))) + 1e-12
    # ridge towards the plain slice W_K, not towards 0: with few calibration tokens the fit
    # stays close to the unrefitted layer instead of overfitting them
    w64 = w.astype(np.float64)
    rhs = gram[keep_rows] @ w64 + lam * w64[keep_rows]
    sol = np.linalg.solve(gkk + lam * np.eye(len(keep_rows)), rhs)
    return sol.astype(w.dtype)


@register_pass
class PruneStructuredPass(Pass):
    """Physically remove heads and FFN neurons by calibrated importance (see the module docstring)."""

    name = "prune-structured"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        heads, ffn, refit = ctx.get("prune.heads"), ctx.get("prune.ffn"), ctx.get("prune.reconstruct")
        for name, r in (("prune.heads", heads), ("prune.ffn", ffn)):
            if not 0.0 <= r < 1.0:
                raise GraphoptError(f"{name} must be in [0, 1), got {r}")
        changed = False
        stats = {"heads_removed": 0, "neurons_removed": 0}
        record = model.meta.get(KEPT) or {"heads": {}, "neurons": {}}
        model.meta[KEPT] = record
        if heads > 0:
            for grp in head_groups(g):
                gram, wo = _gram(grp.context), linear_weight(grp.out_proj)
                keep = kept(head_importance(gram, wo, grp.num_heads), heads)
                if len(keep) == grp.num_heads:
                    continue
                cols = np.concatenate([np.arange(k * grp.head_dim, (k + 1) * grp.head_dim) for k in keep])
                rows = refit_rows(gram, wo, cols) if refit else None
                logger.info("%s: %d of %d heads kept", grp.mha.label(), len(keep), grp.num_heads)
                stats["heads_removed"] += grp.num_heads - len(keep)
                record["heads"][grp.mha.name or grp.mha.label()] = [int(k) for k in keep]
                shrink_heads(g, grp, keep, rows)
                changed = True
            for ugrp in unfused_head_groups(g):  # unfused blocks (any export form; grouped KV heads)
                gram, wo = _gram(ugrp.context), linear_weight(ugrp.out_proj)
                imp = head_importance(gram, wo, ugrp.num_heads).reshape(ugrp.units, ugrp.rep).sum(axis=1)
                keep = kept(imp, heads)
                if len(keep) == ugrp.units:
                    continue
                rows = refit_rows(gram, wo, ugrp.context_cols(keep)) if refit else None
                logger.info("%s: %d of %d %s kept", ugrp.label, len(keep), ugrp.units,
                            "KV groups" if ugrp.rep > 1 else "heads")
                stats["heads_removed"] += (ugrp.units - len(keep)) * ugrp.rep
                record["heads"][ugrp.label] = [int(h) for k in keep for h in range(k * ugrp.rep, (k + 1) * ugrp.rep)]
                ugrp.shrink(g, keep, rows)
                changed = True
        if ffn > 0:
            for grp in neuron_groups(g):
                gram, w2 = _gram(grp.hidden), linear_weight(grp.down)
                keep = kept(neuron_importance(gram, w2), ffn)
                if len(keep) == grp.width:
                    continue
                rows = refit_rows(gram, w2, keep) if refit else None
                logger.info("%s: %d of %d neurons kept", grp.down.label(), len(keep), grp.width)
                stats["neurons_removed"] += grp.width - len(keep)
                record["neurons"][grp.down.name or grp.down.label()] = [int(k) for k in keep]
                shrink_neurons(g, grp, keep, rows)
                changed = True
        return PassResult(changed, stats)


def pruning_targets(model: Model) -> list[str]:
    """Values whose Gram matrix the pass needs: attention outputs and FFN hidden activations."""
    g = model.graph
    return [grp.context.name for grp in head_groups(g)] + [grp.context.name for grp in unfused_head_groups(g)] \
        + [grp.hidden.name for grp in neuron_groups(g)]
