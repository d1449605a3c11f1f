"""sparsify-weights: magnitude sparsity of the linear layers' weights (unstructured, 2:4, 4x1 blocks).

Targets: every constant 2-D float weight W[K, N] of a ``MatMul`` / ``graphopt::Linear`` and the
packed QKV weight of a ``graphopt::MultiHeadAttention`` (embedding tables and convolutions are
left alone). Patterns, all by magnitude and without calibration:

* ``unstructured``  the fraction ``ratio`` of entries with the smallest |w| become 0,
* ``2:4``           in every group of 4 consecutive inputs (k) of one output column, the 2
                    smallest become 0 (ratio 0.5; a ragged last group keeps at most 2),
* ``4x1``           blocks of 4 consecutive inputs (k) of one output column n - the 4 products one
                    VNNI lane sums - are scored by their L2 norm and the weakest ``ratio`` of the
                    blocks become 0 (a ragged last block is a block of its own).

``scope``: ``layer`` removes ``ratio`` in every weight, ``global`` ranks all targeted weights
together (layers with small weights lose more).

A weight whose all-zero 4x1 blocks reach ``sparsify.mark_above`` (0.6: at 50 % the sparse kernel
only matches the dense one, `benchmarks/sparse_gemm.py`) gets its node marked ``graphopt.sparse = "4x1"`` in the node's ONNX ``metadata_props``: the int8 lowering
then packs it for the sparse kernel (``csrc/kernels/sparse``), and the mark survives save/load.
Zeros alone make no dense kernel faster; only that kernel turns them into time.

With ``sparsify.reconstruct`` the ranking is activation-aware - |w_kn| * ||x_k|| over the
calibration data, as in Wanda (Sun et al. 2023) - and the weights that stay are refitted, column
by column, so that the
layer's output on the calibration data stays as close as least squares gets to the dense one:
w_S = (G_SS + lambda I)^-1 (G_S: w + lambda w_S) for the kept rows S of each column, G = X^T X of
the layer's input (``calibrate(kind="gram")``; ``graphopt.prune(data=...)`` does it), with a
ridge towards the plain masked weights as in ``prune-structured``. The zero pattern is unchanged.

Config keys: ``sparsify.ratio``, ``sparsify.pattern``, ``sparsify.scope``, ``sparsify.reconstruct``,
``sparsify.mark_above``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from graphopt.errors import GraphoptError
from graphopt.ir import NODE_PROPS, Graph, Model, Node, Value
from graphopt.pm import Pass, PassContext, PassResult, register_config, register_pass

from .blocks import linear_weight

__all__ = ["SparsifyWeightsPass", "SparsityReport", "LayerSparsity", "sparsity_report", "sparse_targets",
           "mask_unstructured", "mask_2_4", "mask_4x1", "block_sparsity", "sparse_mark", "SPARSE_PROP",
           "PATTERNS", "SCOPES", "refit_columns", "sparse_inputs"]

logger = logging.getLogger(__name__)

PATTERNS = ("unstructured", "2:4", "4x1")
SCOPES = ("layer", "global")
#: the node metadata key the lowering reads
SPARSE_PROP = "graphopt.sparse"

register_config("sparsify.ratio", float, 0.0, "fraction of weights (4x1: of blocks) set to zero")
register_config("sparsify.pattern", str, "unstructured", "unstructured | 2:4 | 4x1")
register_config("sparsify.scope", str, "layer", "layer (the same ratio in every weight) | global (one ranking)")
register_config("sparsify.reconstruct", bool, False,
                "refit the kept weights of every output column by least squares (needs the inputs' Gram matrices)")
register_config("sparsify.mark_above", float, 0.6,
                "mark a weight for the sparse int8 kernel when this fraction of its 4x1 blocks is zero")


# ------------------------------------------------------------------ targets and marks

def sparse_targets(g: Graph) -> list[tuple[Node, int]]:
    """(node, input index) of every weight the pass sparsifies, in graph order."""
    out = []
    for n in g:
        if linear_weight(n) is not None:
            out.append((n, 1))
        elif n.op == "graphopt::MultiHeadAttention" and len(n.inputs) > 1 and n.inputs[1] is not None:
            w = n.inputs[1].const
            if w is not None and w.ndim == 2 and w.dtype.kind == "f":
                out.append((n, 1))
    return out


def sparse_mark(node: Node) -> str | None:
    """The sparse-kernel mark of a node (``"4x1"``), or None."""
    props = node.meta.get(NODE_PROPS)
    return props.get(SPARSE_PROP) if props else None


def _set_mark(node: Node, pattern: str | None) -> None:
    props = dict(node.meta.get(NODE_PROPS) or {})
    if pattern is None:
        props.pop(SPARSE_PROP, None)
    else:
        props[SPARSE_PROP] = pattern
    if props:
        node.meta[NODE_PROPS] = props
    else:
        node.meta.pop(NODE_PROPS, None)


# ------------------------------------------------------------------ masks (True = keep)

def _k_blocks(w: np.ndarray) -> np.ndarray:
    """W[K, N] -> [ceil(K/4), 4, N], zero-padded along K."""
    k, n = w.shape
    kp = -(-k // 4) * 4
    padded = np.zeros((kp, n), w.dtype)
    padded[:k] = w
    return padded.reshape(kp // 4, 4, n)


def _block_scores(w: np.ndarray) -> np.ndarray:
    """L2 norm of every 4x1 block: [ceil(K/4), N]."""
    b = _k_blocks(np.abs(w).astype(np.float64))
    return np.sqrt(np.sum(b * b, axis=1))


def _drop_lowest(scores: np.ndarray, count: int) -> np.ndarray:
    """Keep-mask of ``scores``' shape with exactly ``count`` of the lowest scores dropped (stable)."""
    keep = np.ones(scores.size, bool)
    if count > 0:
        keep[np.argsort(scores.reshape(-1), kind="stable")[:count]] = False
    return keep.reshape(scores.shape)


def mask_unstructured(w: np.ndarray, ratio: float) -> np.ndarray:
    return _drop_lowest(np.abs(w), int(np.floor(ratio * w.size + 1e-9)))


def mask_2_4(w: np.ndarray) -> np.ndarray:
    """Keep the 2 largest |w| of every 4 consecutive k in each column (a ragged last group keeps 2)."""
    k = w.shape[0]
    a = _k_blocks(np.abs(w).astype(np.float64))            # [G, 4, N]
    if k % 4:
        a[-1, k % 4:, :] = -1.0                            # padding never wins a place
    order = np.argsort(-a, axis=1, kind="stable")          # largest first
    keep = np.zeros(a.shape, bool)
    np.put_along_axis(keep, order[:, :2, :], True, axis=1)
    return keep.reshape(-1, w.shape[1])[:k]


def _expand_blocks(block_keep: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(block_keep, 4, axis=0)[:k]


def mask_4x1(w: np.ndarray, ratio: float) -> np.ndarray:
    scores = _block_scores(w)
    return _expand_blocks(_drop_lowest(scores, int(np.floor(ratio * scores.size + 1e-9))), w.shape[0])


def block_sparsity(w: np.ndarray) -> float:
    """Fraction of the 4x1 blocks (4 consecutive k of one column) that are all zero."""
    return float(np.mean(~np.any(_k_blocks(w) != 0, axis=1)))


def refit_columns(w: np.ndarray, keep: np.ndarray, gram: np.ndarray, damp: float = 0.05) -> np.ndarray:
    """Least-squares refit of each column's kept rows (see the module docstring); zeros stay zero."""
    w64 = w.astype(np.float64)
    out = np.zeros_like(w64)
    lam = damp * float(np.mean(np.diag(gram))) + 1e-12
    for n in range(w.shape[1]):
        s = np.flatnonzero(keep[:, n])
        if s.size:
            rhs = gram[s] @ w64[:, n] + lam * w64[s, n]
            out[s, n] = np.linalg.solve(gram[np.ix_(s, s)] + lam * np.eye(s.size), rhs)
    return out.astype(w.dtype)


def sparse_inputs(g: Graph) -> list[str]:
    """The inputs of the targeted layers: the values whose Gram matrices the refit needs."""
    return list(dict.fromkeys(n.inputs[0].name for n, _ in sparse_targets(g) if n.inputs[0] is not None))


# ------------------------------------------------------------------ the pass

@register_pass
class SparsifyWeightsPass(Pass):
    """Zero the smallest weights (see the module docstring); marks weights for the sparse kernel."""

    name = "sparsify-weights"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        ratio, pattern, scope = ctx.get("sparsify.ratio"), ctx.get("sparsify.pattern"), ctx.get("sparsify.scope")
        mark_above = ctx.get("sparsify.mark_above")
        if pattern not in PATTERNS:
            raise GraphoptError(f"sparsify.pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        if scope not in SCOPES:
            raise GraphoptError(f"sparsify.scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if pattern == "2:4":
            if ratio not in (0.0, 0.5):
                raise GraphoptError(f"the 2:4 pattern removes exactly half of the weights; sparsify.ratio={ratio} "
                                    "(leave it unset or give 0.5)")
            ratio = 0.5
        if not 0.0 <= ratio < 1.0:
            raise GraphoptError(f"sparsify.ratio must be in [0, 1), got {ratio}")
        g = model.graph
        targets = sparse_targets(g)
        if ratio == 0.0 or not targets:
            return PassResult(False)
        weights = [n.inputs[i].const for n, i in targets]
        refit = ctx.get("sparsify.reconstruct")
        grams: list = []
        if refit:
            from graphopt.quant.specs import GRAM

            grams = [n.inputs[0].meta.get(GRAM) if n.inputs[0] is not None else None for n, _ in targets]
            missing = [n.label() for (n, _), gm in zip(targets, grams) if gm is None]
            if missing:
                raise GraphoptError(f"sparsify.reconstruct: no calibration for the inputs of {missing[:3]} (run "
                                    "calibrate(kind='gram') on sparse_inputs(graph) first; graphopt.prune does)")
        # with calibration, rank by |w_kn| * ||x_k|| (activation-aware, as Wanda) instead of |w_kn|
        scored = [np.abs(w) * np.sqrt(np.maximum(np.diag(gm), 0.0))[:, None].astype(np.float32)
                  for w, gm in zip(weights, grams)] if refit else weights
        if pattern == "2:4":
            masks = [mask_2_4(w) for w in scored]
        elif scope == "layer":
            fn = mask_4x1 if pattern == "4x1" else mask_unstructured
            masks = [fn(w, ratio) for w in scored]
        else:
            scores = [_block_scores(w) if pattern == "4x1" else np.abs(w).astype(np.float64) for w in scored]
            flat = np.concatenate([s.reshape(-1) for s in scores])
            keep = _drop_lowest(flat, int(np.floor(ratio * flat.size + 1e-9)))
            masks, at = [], 0
            for w, s in zip(weights, scores):
                part = keep[at:at + s.size].reshape(s.shape)
                at += s.size
                masks.append(_expand_blocks(part, w.shape[0]) if pattern == "4x1" else part)
        stats = {"weights": len(targets), "zeroed": 0, "marked": 0}
        replaced: dict[int, Value] = {}  # a weight shared by several nodes is sparsified once
        for t, ((node, i), w, keep) in enumerate(zip(targets, weights, masks)):
            old = node.inputs[i]
            new = replaced.get(id(old))
            if new is None:
                if refit:
                    sparse = refit_columns(w, keep, grams[t])
                else:
                    sparse = np.where(keep, w, np.zeros((), w.dtype)).astype(w.dtype)
                stats["zeroed"] += int(np.count_nonzero(w) - np.count_nonzero(sparse))
                new = g.add_initializer(g.unique_name((old.name or "w") + "_sparse"), np.ascontiguousarray(sparse))
                replaced[id(old)] = new
            node.set_input(i, new)
            mark = block_sparsity(new.const) >= mark_above  # below it the dense kernel is as fast
            _set_mark(node, "4x1" if mark else None)
            stats["marked"] += int(mark)
            logger.info("%s: %.1f%% zero (%s)", node.label(), 100.0 * (1 - np.count_nonzero(new.const) / w.size),
                        "marked 4x1" if mark else "not marked")
        return PassResult(True, stats)


# ------------------------------------------------------------------ report

@dataclass
class LayerSparsity:
    node: str
    shape: tuple[int, int]
    params: int
    nonzero: int
    block_sparsity: float  # all-zero 4x1 blocks
    mark: str | None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / max(self.params, 1)


@dataclass
class SparsityReport:
    """Per-layer and total sparsity of the linear weights, and the model's parameter bytes.

    ``dense_bytes``: all float parameters as stored (fp32); ``int8_bytes``: the linear weights as
    the native int8 runtime keeps them (dense int8, or 4x1 blocks of 4 values + a 4-byte index for
    marked ones) plus every other float parameter at its stored size.
    """

    layers: list[LayerSparsity] = field(default_factory=list)
    params: int = 0          # every float parameter of the model
    dense_bytes: int = 0
    int8_bytes: int = 0

    @property
    def linear_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Zero fraction over the targeted linear weights."""
        total = self.linear_params
        return 1.0 - sum(layer.nonzero for layer in self.layers) / total if total else 0.0

    def as_dict(self) -> dict:
        return {"params": self.params, "linear_params": self.linear_params, "sparsity": round(self.sparsity, 6),
                "dense_bytes": self.dense_bytes, "int8_bytes": self.int8_bytes,
                "layers": [{"node": x.node, "shape": list(x.shape), "sparsity": round(x.sparsity, 6),
                            "block_sparsity": round(x.block_sparsity, 6), "mark": x.mark} for x in self.layers]}

    def table(self) -> str:
        lines = ["| layer | shape | sparsity | 4x1 blocks zero | kernel |", "|---|---|---|---|---|"]
        for x in self.layers:
            lines.append(f"| {x.node} | {x.shape[0]}x{x.shape[1]} | {x.sparsity:.1%} | {x.block_sparsity:.1%} | "
                         f"{'sparse int8 (' + x.mark + ')' if x.mark else 'dense'} |")
        lines.append(f"| total | {self.linear_params} | {self.sparsity:.1%} | | |")
        return "\n".join(lines)


def sparsity_report(model: Model) -> SparsityReport:
    """Sparsity of every weight ``sparsify-weights`` targets, and the model's sizes (see the class)."""
    g = model.graph
    rep = SparsityReport()
    linear_ids = set()
    for node, i in sparse_targets(g):
        w = node.inputs[i].const
        mark = sparse_mark(node)
        rep.layers.append(LayerSparsity(node.label(), (int(w.shape[0]), int(w.shape[1])), int(w.size),
                                        int(np.count_nonzero(w)), block_sparsity(w), mark))
        if id(node.inputs[i]) in linear_ids:
            continue
        linear_ids.add(id(node.inputs[i]))
        if mark:
            nblocks = int(np.count_nonzero(np.any(_k_blocks(w) != 0, axis=1)))
            rep.int8_bytes += nblocks * 8 + (w.shape[1] + 1) * 4
        else:
            rep.int8_bytes += int(w.size)
    for v in g.all_values():
        c = v.const
        if c is None or np.asarray(c).dtype.kind != "f":
            continue
        rep.params += int(c.size)
        rep.dense_bytes += int(c.nbytes)
        if id(v) not in linear_ids:
            rep.int8_bytes += int(c.nbytes)
    return rep
