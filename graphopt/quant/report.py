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

__all__ = ["quantized_layer_outputs", "layer_errors", "end_to_end", "file_bytes", "format_layer_table",
           "plot_layer_errors"]

logger = logging.getLogger(__name__)


def quantized_layer_outputs(q_model: Model) -> list[str]:
    """Output names of nodes that run quantized (PRECISION int8/int4), in graph order."""
    return [n.outputs[0].name for n in q_model.graph
            if str(n.meta.get(PRECISION, "")).startswith(("int8", "int4")) and n.op_type != "Gather"]


def _values(model: Model, names: Sequence[str]) -> list[Value]:
    by = {v.name: v for v in model.graph.all_values()}
    return [by[n] for n in names if n in by]


def _unpadded(arr: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``arr`` at the positions ``mask`` [B, S] keeps (all of it when the shapes do not line up)."""
    if mask is None or arr.ndim < 2 or arr.shape[:2] != mask.shape:
        return arr
    return arr[mask.astype(bool)]


def _mask(feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    m = feeds.get("attention_mask")
    return None if m is None or np.ndim(m) != 2 else np.asarray(m)


def layer_errors(fp32: Model, quant: Model, feeds: Iterable[dict[str, np.ndarray]],
                 names: Sequence[str] | None = None) -> dict[str, float]:
    """Relative L2 error ``|q - f| / |f|`` of each quantized layer's output, accumulated over ``feeds``,
    keyed by the layer's (node) name in the float model.

    For text models (an ``attention_mask`` feed), only unpadded positions count: padded ones
    are masked downstream, and their error would hide the error that matters.
    """
    names = list(names) if names is not None else quantized_layer_outputs(quant)
    fv, qv = _values(fp32, names), _values(quant, names)
    common = [v.name for v in fv if v.name in {q.name for q in qv}]
    if not common:
        return {}
    label = {v.name: (v.producer().name if v.producer() is not None and v.producer().name else v.name)
             for v in fv}
    fs = _session(fp32, [v for v in fv if v.name in common])
    qs = _session(quant, [v for v in qv if v.name in common])
    num = dict.fromkeys(common, 0.0)
    den = dict.fromkeys(common, 0.0)
    for b in feeds:
        mask = _mask(b)
        fo = fs.run(common, b)
        qo = qs.run(common, b)
        for n, a, c in zip(common, fo, qo):
            a64, c64 = _unpadded(a.astype(np.float64), mask), _unpadded(c.astype(np.float64), mask)
            num[n] += float(np.sum((a64 - c64) ** 2))
            den[n] += float(np.sum(a64 ** 2))
    return {label[n]: float(np.sqrt(num[n] / max(den[n], 1e-30))) for n in common}


def end_to_end(fp32: Model, quant: Model, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """Fidelity of the model outputs (float outputs, unpadded positions): relative L2 error and the
    mean / min cosine similarity per row of the first output's last axis."""
    from .._ort import run_ort

    num = den = 0.0
    cos: list[np.ndarray] = []
    for b in feeds:
        mask = _mask(b)
        for w, g in zip(run_ort(fp32, b), run_ort(quant, b, optimize=True)):
            if w.dtype.kind != "f":
                continue
            w64, g64 = _unpadded(w.astype(np.float64), mask), _unpadded(g.astype(np.float64), mask)
            num += float(np.sum((w64 - g64) ** 2))
            den += float(np.sum(w64 ** 2))
            if w64.ndim >= 1 and w64.size:
                wr, gr = w64.reshape(-1, w64.shape[-1]), g64.reshape(-1, g64.shape[-1])
                cos.append((wr * gr).sum(1) / np.maximum(np.linalg.norm(wr, axis=1) * np.linalg.norm(gr, axis=1),
                                                         1e-30))
    c = np.concatenate(cos) if cos else np.ones(1)
    return {"relative_l2": float(np.sqrt(num / max(den, 1e-30))), "cosine_mean": float(c.mean()),
            "cosine_min": float(c.min())}


def file_bytes(path: str | os.PathLike) -> int:
    """Size of an ONNX file with its external-data files (each counted once)."""
    import onnx

    p = Path(path)
    total = p.stat().st_size
    try:
        mp = onnx.load(str(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - an unreadable file: its own size
        return total
    seen: set[str] = set()
    for t in onnx.external_data_helper._get_all_tensors(mp):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc and loc not in seen and (p.parent / loc).is_file():
                seen.add(loc)
                total += (p.parent / loc).stat().st_size
    return total


def format_layer_table(errs: dict[str, float], top: int | None = None) -> str:
    """A text table, worst layers first."""
    rows = sorted(errs.items(), key=lambda kv: -kv[1])[:top]
    w = max([len(k) for k, _ in rows] + [5])
    lines = [f"{'layer':<{w}}  rel. error", f"{'-' * w}  ----------"]
    lines += [f"{k:<{w}}  {v:10.4%}" for k, v in rows]
    return "\n".join(lines)


def plot_layer_errors(errs: dict[str, float], path: str | os.PathLike, title: str = "") -> Path:
    """Bar chart of the per-layer relative error, in graph order (PNG)."""
    from ..errors import require

    matplotlib = require("matplotlib", "report", "the --report plot")
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
