"""remove-zero-structures: physically remove heads and FFN neurons that are already zero.

Models pruned elsewhere (NNCF, INC, ``torch.nn.utils.prune``) keep their full shapes
with zeroed weights, so they run no faster. A head is dead when its rows of the output
projection are zero, or its V columns and V bias are zero (its context is then 0). A
neuron is dead when its row of W2 is zero, or its column of W1 is zero and the
element-wise chain maps its (bias-only) pre-activation to exactly 0. Removing them is
exact, so the pass is safe in O2.
"""

from __future__ import annotations

import math

import numpy as np

from graphopt.ir import Model, Node
from graphopt.ir.mapped import release_pages
from graphopt.pm import Pass, PassContext, PassResult, register_pass

from .blocks import NeuronGroup, head_groups, linear_weight, neuron_groups, shrink_heads, shrink_neurons

__all__ = ["RemoveZeroStructuresPass"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _apply(node: Node, x: np.ndarray) -> np.ndarray:
    consts = [np.asarray(v.const, np.float64).reshape(-1) for v in node.inputs[1:]]
    op = node.op
    if op == "graphopt::BiasGelu":
        return _gelu(x + consts[0])
    unary = {"graphopt::Gelu": _gelu, "Gelu": _gelu, "Relu": lambda t: np.maximum(t, 0.0), "Tanh": np.tanh,
             "Erf": _erf, "Sigmoid": lambda t: 1.0 / (1.0 + np.exp(-t))}
    if op in unary:
        return unary[op](x)
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
    with np.errstate(all="ignore"):
        return binary[op](x, consts[0])


def _zero_lines(w: np.ndarray, axis: int) -> np.ndarray:
    """``~np.any(w, axis)``: the all-zero columns (axis 0) or rows (axis 1) of a 2-D ``w``. Only lines
    whose first element is 0 are scanned, so a dense weight costs one row or column, not a pass over
    every byte (O2 at compile read each weight of a MatMul stack twice: 0.27 s per GB)."""
    if w.shape[axis] == 0:
        return np.ones(w.shape[1 - axis], bool)
    cand = np.flatnonzero((w[0] if axis == 0 else w[:, 0]) == 0)
    out = np.zeros(w.shape[1 - axis], bool)
    if cand.size:
        out[cand] = ~np.any(w[:, cand] if axis == 0 else w[cand], axis=axis)
    return out


def _dead_neurons(grp: NeuronGroup) -> np.ndarray:
    w1, w2 = linear_weight(grp.up), linear_weight(grp.down)
    pre = np.zeros(grp.width)
    if grp.up.op == "graphopt::Linear" and len(grp.up.inputs) > 2 and grp.up.inputs[2] is not None:
        pre = pre + np.asarray(grp.up.inputs[2].const, np.float64).reshape(-1)
    for node in grp.chain:
        pre = _apply(node, pre)
    silent = _zero_lines(w1, 0) & (pre == 0.0)
    dead = silent | _zero_lines(w2, 1)
    release_pages(w1)  # a scan of mapped weights (issue 16): their pages leave resident memory as we go
    release_pages(w2)
    return dead


@register_pass
class RemoveZeroStructuresPass(Pass):
    """Drop all-zero heads and FFN neurons (exact); see the module docstring."""

    name = "remove-zero-structures"

    preset = "O2"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        changed = False
        stats = {"heads_removed": 0, "neurons_removed": 0}
        for grp in head_groups(g):
            w, wo = grp.mha.inputs[1].const, linear_weight(grp.out_proj)
            b = grp.mha.inputs[2].const if len(grp.mha.inputs) > 2 and grp.mha.inputs[2] is not None else None
            d, h = grp.head_dim, grp.hidden
            dead = []
            for k in range(grp.num_heads):
                s = slice(k * d, (k + 1) * d)
                v_zero = not np.any(w[:, 2 * h + k * d:2 * h + (k + 1) * d]) and (
                    b is None or not np.any(b[2 * h + k * d:2 * h + (k + 1) * d]))
                dead.append(v_zero or not np.any(wo[s]))
            keep = np.flatnonzero(~np.asarray(dead))
            if 0 < len(keep) < grp.num_heads:
                stats["heads_removed"] += grp.num_heads - len(keep)
                shrink_heads(g, grp, keep)
                changed = True
        for grp in neuron_groups(g):
            if not grp.is_chain:  # the dead-neuron test evaluates a single chain
                continue
            keep = np.flatnonzero(~_dead_neurons(grp))
            if 0 < len(keep) < grp.width:
                stats["neurons_removed"] += grp.width - len(keep)
                shrink_neurons(g, grp, keep)
                changed = True
        return PassResult(changed, stats)
