"""Students for distillation: fewer layers (DistilBERT's init) or the heads/neurons graphopt.prune kept.

Works on BERT-family torch modules (transformers' BERT, MiniLM, RoBERTa; DistilBERT's
``transformer.layer``): the layer stack is the longest ``nn.ModuleList`` of the model, and a
layer's attention/FFN linears are found by their usual names.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np

from ..errors import GraphoptError

__all__ = ["layer_list", "drop_layers", "prune_torch", "student_from_pruned", "LAYER_MAP_ATTR"]

#: attribute set on a student: teacher layer index of each student layer (distill's default layer map)
LAYER_MAP_ATTR = "_graphopt_teacher_layers"


def layer_list(model: Any) -> tuple[str, Any]:
    """(qualified name, nn.ModuleList) of the transformer layers: the longest ModuleList in ``model``."""
    import torch

    best: tuple[str, Any] | None = None
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) and (best is None or len(m) > len(best[1])):
            best = (name, m)
    if best is None:
        raise GraphoptError(f"{type(model).__name__} has no nn.ModuleList of layers (not a transformer?)")
    return best


def _set_layers(model: Any, name: str, layers: Any) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, layers)


def drop_layers(teacher: Any, keep: int | list[int]) -> Any:
    """A copy of ``teacher`` with ``keep`` of its layers (an int: every other layer as DistilBERT, spread
    evenly; a list: those teacher indices). The copy remembers which teacher layer each of its layers
    came from (the default layer map of :func:`graphopt.train.distill`)."""
    import torch

    name, layers = layer_list(teacher)
    n = len(layers)
    if isinstance(keep, int):
        if not 1 <= keep <= n:
            raise GraphoptError(f"--student-layers must be in 1..{n} (the teacher has {n} layers), got {keep}")
        # DistilBERT: 12 -> 6 keeps 0, 2, 4, ...: the first of each run of n/keep layers
        idx = [int(np.floor(i * n / keep)) for i in range(keep)]
    else:
        idx = sorted(int(i) for i in keep)
        if not idx or idx[0] < 0 or idx[-1] >= n or len(set(idx)) != len(idx):
            raise GraphoptError(f"layer indices {keep} do not name distinct layers of 0..{n - 1}")
    student = copy.deepcopy(teacher)
    _, s_layers = layer_list(student)
    _set_layers(student, name, torch.nn.ModuleList([s_layers[i] for i in idx]))
    for cfg in _configs(student):
        for key in ("num_hidden_layers", "n_layers", "num_layers"):
            if hasattr(cfg, key):
                setattr(cfg, key, len(idx))
    setattr(student, LAYER_MAP_ATTR, list(idx))
    return _trainable(student)


def _trainable(model: Any) -> Any:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _configs(model: Any) -> list[Any]:
    return [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "to_dict")]


def _linear(layer: Any, *paths: str) -> tuple[Any, str]:
    for p in paths:
        try:
            return layer.get_submodule(p), p
        except AttributeError:
            continue
    raise GraphoptError(f"layer {type(layer).__name__} has none of {paths} (not a BERT-family layer)")


_Q = ("attention.self.query", "attention.q_lin")
_K = ("attention.self.key", "attention.k_lin")
_V = ("attention.self.value", "attention.v_lin")
_O = ("attention.output.dense", "attention.out_lin")
_UP = ("intermediate.dense", "ffn.lin1")
_DOWN = ("output.dense", "ffn.lin2")


def _shrink(lin: Any, idx: Any, dim: int) -> Any:
    import torch

    w = lin.weight.detach().index_select(dim, idx).clone()
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None)
    new.weight = torch.nn.Parameter(w)
    if lin.bias is not None:
        b = lin.bias.detach() if dim == 1 else lin.bias.detach().index_select(0, idx)
        new.bias = torch.nn.Parameter(b.clone())
    return new


def _replace(layer: Any, path: str, module: Any) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(layer.get_submodule(parent) if parent else layer, attr, module)


def prune_torch(model: Any, heads: dict[int, list[int]] | None = None,
                neurons: dict[int, list[int]] | None = None) -> Any:
    """Keep only the listed heads / FFN neurons of each layer (index -> sorted kept indices), in place.

    Q/K/V lose the rows of dropped heads and the output projection their columns; the FFN's
    up projection loses rows and the down projection columns -- what ``prune-structured`` does
    to the graph, so a model pruned here and the pruned graph compute the same function
    (before the graph's least-squares refit).
    """
    import torch

    _, layers = layer_list(model)
    for li, keep in (heads or {}).items():
        layer = layers[li]
        attn = _linear(layer, "attention.self", "attention")[0]
        nh = int(getattr(attn, "num_attention_heads", getattr(attn, "n_heads", 0)) or
                 getattr(getattr(attn, "config", None), "num_attention_heads", 0))
        q, qp = _linear(layer, *_Q)
        if not nh:
            raise GraphoptError(f"layer {li}: cannot tell the number of heads of {type(attn).__name__}")
        d = q.out_features // nh
        keep = sorted(int(h) for h in keep)
        if not keep or keep[-1] >= nh:
            raise GraphoptError(f"layer {li}: kept heads {keep} not within 0..{nh - 1}")
        cols = torch.tensor([h * d + j for h in keep for j in range(d)], dtype=torch.long)
        for paths in (_Q, _K, _V):
            lin, p = _linear(layer, *paths)
            _replace(layer, p, _shrink(lin, cols, 0))
        o, op = _linear(layer, *_O)
        _replace(layer, op, _shrink(o, cols, 1))
        for key in ("num_attention_heads", "n_heads"):
            if hasattr(attn, key):
                setattr(attn, key, len(keep))
        for key in ("all_head_size", "dim"):
            if hasattr(attn, key) and key == "all_head_size":
                setattr(attn, key, len(keep) * d)
        if hasattr(attn, "attention_head_size"):
            attn.attention_head_size = d
        if hasattr(attn, "head_dim"):
            attn.head_dim = d
    for li, keep in (neurons or {}).items():
        layer = layers[li]
        up, upp = _linear(layer, *_UP)
        down, dp = _linear(layer, *_DOWN)
        idx = torch.tensor(sorted(int(j) for j in keep), dtype=torch.long)
        if not len(idx) or int(idx[-1]) >= up.out_features:
            raise GraphoptError(f"layer {li}: kept neurons not within 0..{up.out_features - 1}")
        _replace(layer, upp, _shrink(up, idx, 0))
        _replace(layer, dp, _shrink(down, idx, 1))
    return model


def _layer_index(label: str, order: int) -> int:
    m = re.search(r"layers?[._/](\d+)[._/]", label + "/")
    return int(m.group(1)) if m else order


def student_from_pruned(teacher: Any, report: Any, pruned: Any = None) -> Any:
    """A copy of ``teacher`` pruned as ``graphopt.prune`` pruned its graph: ``report`` is the
    :class:`graphopt.pruning.PruneReport`, whose ``kept_heads`` / ``kept_neurons`` name the kept
    indices per attention block / FFN (in layer order).

    ``pruned``: the graph ``graphopt.prune`` returned. With it the student also takes that graph's
    output projections and FFN down projections, which ``reconstruct=True`` refitted by least
    squares: the student then computes what the pruned graph computes, the better start for
    distillation (Kwon et al. 2022's mask tuning, then training)."""
    student = copy.deepcopy(teacher)
    heads = {_layer_index(k, i): v for i, (k, v) in enumerate(report.kept_heads.items())}
    neurons = {_layer_index(k, i): v for i, (k, v) in enumerate(report.kept_neurons.items())}
    if not heads and not neurons:
        raise GraphoptError("the prune report keeps no index lists (was anything pruned?)")
    student = prune_torch(student, heads, neurons)
    if pruned is not None:
        _take_refit(student, report, pruned)
    return _trainable(student)


def _take_refit(student: Any, report: Any, pruned: Any) -> None:
    """Copy the pruned graph's next-layer weights (W_o rows, W_2 rows) into the student's linears."""
    import torch

    from graphopt.passes.pruning.blocks import head_groups, linear_weight

    g = pruned.graph
    by_label = {n.name or n.label(): n for n in g}
    out_proj = {grp.mha.name or grp.mha.label(): grp.out_proj for grp in head_groups(g)}
    _, layers = layer_list(student)
    for paths, keys, nodes in ((_O, list(report.kept_heads), out_proj), (_DOWN, list(report.kept_neurons), by_label)):
        for i, key in enumerate(keys):
            node = nodes.get(key)
            w = linear_weight(node) if node is not None else None
            lin, _ = _linear(layers[_layer_index(key, i)], *paths)
            if w is None or tuple(w.shape[::-1]) != tuple(lin.weight.shape):
                raise GraphoptError(f"pruned graph: no linear layer '{key}' of shape {tuple(lin.weight.shape[::-1])} "
                                    "(give the model graphopt.prune returned with this report)")
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.float32)))
