"""Per-layer quantization error: run the float and the quantized model on the same inputs,
fetch the outputs of each quantized layer from both, and compare.

>>> errs = layer_errors(fp32_model, q_model, feeds)          # doctest: +SKIP
>>> print(format_layer_table(errs))                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..ir import Model, Value
from .calibrate import _session
from .specs import PRECISION

__all__ = ["quantized_layer_outputs", "layer_errors", "format_layer_table", "plot_layer_errors"]

logger = logging.getLogger(__name__)


def quantized_layer_outputs(q_model: Model) -> list[str]:
    """Output names of nodes that run quantized (PRECISION int8/int4), in graph order."""
    return [n.outputs[0].name for n in q_model.graph
            if str(n.meta.get(PRECISION, "")).startswith(("int8", "int4")) and n.op_type != "Gather"]


def _values(model: Model, names: Sequence[str]) -> list[Value]:
    by = {v.name: v for v in model.graph.all_values()}
    return [by[n] for n in names if n in by]


def layer_errors(fp32: Model, quant: Model, feeds: Iterable[dict[str, np.ndarray]],
                 names: Sequence[str] | None = None) -> dict[str, float]:
    """Relative L2 error ``|q - f| / |f|`` of each named value, accumulated over ``feeds``."""
    names = list(names) if names is not None else quantized_layer_outputs(quant)
    fv, qv = _values(fp32, names), _values(quant, names)
    common = [v.name for v in fv if v.name in {q.name for q in qv}]
    if not common:
        return {}
    fs = _session(fp32, [v for v in fv if v.name in common])
    qs = _session(quant, [v for v in qv if v.name in common])
    num = dict.fromkeys(common, 0.0)
    den = dict.fromkeys(common, 0.0)
    for b in feeds:
        fo = fs.run(common, b)
        qo = qs.run(common, b)
        for n, a, c in zip(common, fo, qo):
            num[n] += float(np.sum((a.astype(np.float64) - c) ** 2))
            den[n] += float(np.sum(a.astype(np.float64) ** 2))
    return {n: float(np.sqrt(num[n] / max(den[n], 1e-30))) for n in common}


def format_layer_table(errs: dict[str, float], top: int | None = None) -> str:
    """A text table, worst layers first."""
    rows = sorted(errs.items(), key=lambda kv: -kv[1])[:top]
    w = max([len(k) for k, _ in rows] + [5])
    lines = [f"{'layer output':<{w}}  rel. error", f"{'-' * w}  ----------"]
    lines += [f"{k:<{w}}  {v:10.4%}" for k, v in rows]
    return "\n".join(lines)


def plot_layer_errors(errs: dict[str, float], path: str | os.PathLike, title: str = "") -> Path:
    """Bar chart of the per-layer relative error, in graph order (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    labels = [k.replace("/MatMul_output_0", "").replace("_output_0", "").lstrip("/") for k in errs]
    fig, ax = plt.subplots(figsize=(max(8, 0.22 * len(errs)), 4.5))
    ax.bar(range(len(errs)), [100 * v for v in errs.values()], color="#4477aa")
    ax.set_xticks(range(len(errs)))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("relative L2 error of layer output (%)")
    ax.set_title(title or "per-layer quantization error")
    fig.tight_layout()
    from ..io.atomic import atomic_output

    with atomic_output(p) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return p
