"""The scale benchmark end to end: build the models, run every step in its own child process
(:func:`graphopt.bench.scale.run_step`), and write a table, JSON and a plot of cost against size.

Used by ``graphopt bench --scale`` and ``benchmarks/scale.py``. Models are MatMul stacks of
about ``size`` GB (fp32, ``hidden x hidden`` weights, external data), optionally the ~1.1B
LLaMA-config decoder, or ONNX files the user names.

>>> rows = run_scale([0.1, 1], ["load", "rtn", "ort"], out="out/scale")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .scale import STEPS, run_step

__all__ = ["DEFAULT_STEPS", "PEER_STEPS", "parse_sizes", "parse_steps", "run_scale", "table", "plot"]

DEFAULT_STEPS = ("load", "o2", "rtn", "save", "compile", "ort", "ort-nbits", "nncf")
PEER_STEPS = frozenset({"ort", "ort-nbits", "nncf"})


def parse_sizes(text: str) -> list[float]:
    """``"0.1,1,4"`` -> ``[0.1, 1.0, 4.0]``; a clear error for anything that is not a positive number."""
    out = []
    for s in (t.strip() for t in text.split(",")):
        if not s:
            continue
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"--sizes: '{s}' is not a number of GB") from None
        if not v > 0:
            raise ValueError(f"--sizes: {s} GB is not a positive size")
        out.append(v)
    return out


def parse_steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"--steps: unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    return steps


def stack_model(size_gb: float, work: Path, hidden: int = 2048) -> Path:
    """The MatMul stack of about ``size_gb`` (at least one layer), built once per work directory."""
    from .scale_models import matmul_stack

    layers = max(1, round(size_gb * 1e9 / (hidden * hidden * 4)))
    path = work / (f"stack_{size_gb:g}gb.onnx" if hidden == 2048 else f"stack_{size_gb:g}gb_h{hidden}.onnx")
    if not path.exists():
        print(f"building {path} ({layers} x {hidden}^2 fp32)", file=sys.stderr, flush=True)
        matmul_stack(path, layers, hidden)
    return path


def model_bytes(path: Path) -> int:
    """The model file plus its external data (every ``*.data`` file beside it that it names)."""
    data = path.parent / (path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


_UNTAGGED = "untagged (before run tags)"


def run_tag(r: dict) -> str:
    """The run a row was measured in (UTC start time of its ``run_scale`` call)."""
    return r.get("run") or _UNTAGGED


def table(rows: list[dict]) -> str:
    """Markdown: one row per model, one cell per step, ``seconds / peak GB (x model bytes)``.

    Every cell names its run: cells of the newest run are plain, a cell merged from an older run
    carries a letter that the lines under the table resolve to that run's date, so a table is
    never read as one run when it is not."""
    order = list(STEPS)  # pipeline order, then the peers, whatever order the rows were merged in
    steps = sorted(dict.fromkeys(r["step"] for r in rows), key=lambda s: order.index(s) if s in order else len(order))
    models = list(dict.fromkeys(r["model"] for r in rows))
    runs = sorted({run_tag(r) for r in rows}, key=lambda t: (t != _UNTAGGED, t))  # oldest first
    newest = runs[-1] if runs else None
    mark = {t: chr(ord("a") + i) for i, t in enumerate(x for x in runs if x != newest)}
    out = ["| model | GB | " + " | ".join(steps) + " |", "|---|---|" + "---|" * len(steps)]
    for m in models:
        mr = {r["step"]: r for r in rows if r["model"] == m}
        gb = next(r["gb"] for r in rows if r["model"] == m)
        cells = []
        for s in steps:
            r = mr.get(s)
            if r is None:
                cells.append("")
                continue
            cell = "error" if "error" in r else \
                f"{r['seconds']:.1f} s / {r['peak_mb'] * 2**20 / 1e9:.2f} GB ({r['peak_mb'] * 2**20 / 1e9 / gb:.2f}x)"
            t = run_tag(r)
            cells.append(cell + (f" ({mark[t]})" if t in mark else ""))
        out.append(f"| {m} | {gb:.2f} | " + " | ".join(cells) + " |")
    if newest is not None:
        out.append("")
        out.append(f"Run {newest}" + (" (unmarked cells)" if mark else "") + ".")
        out += [f"({c}) run {t}." for t, c in mark.items()]
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    """Time and peak memory of each step against model size (the MatMul stacks), with the 1.5x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    stack = [r for r in rows if r["model"].startswith("stack") and "error" not in r]
    for s in dict.fromkeys(r["step"] for r in stack):
        pts = sorted((r["gb"], r["seconds"], r["peak_mb"] * 2**20 / 1e9) for r in stack if r["step"] == s)
        style = "--" if s in PEER_STEPS else "-"
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=s)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], style, marker="o", label=s)
    xs = sorted({r["gb"] for r in stack})
    ax2.plot(xs, [1.5 * x for x in xs], ":", color="grey", label="1.5x model")
    if xs:  # on log-log axes linear growth is a slope-1 line: this guide, through 1 s at 1 GB
        ax1.plot(xs, xs, ":", color="grey", label="linear (slope 1)")
    ax1.set(xlabel="model size (GB, log)", ylabel="wall time (s, log)", title="time per step", xscale="log", yscale="log")
    ax1.legend(fontsize=8)
    ax2.set(xlabel="model size (GB)", ylabel="peak memory growth (GB)", title="peak resident memory per step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_scale(sizes: Sequence[float], steps: Sequence[str], *, out: str | os.PathLike, work: str | os.PathLike | None = None,
              models: Sequence[str | os.PathLike] = (), llama: bool = False, hidden: int = 2048,
              timeout: float = 3600, plot_png: bool = True, replace: bool = False,
              progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run ``steps`` on each model (stacks of ``sizes`` GB, then ``models``, then the LLaMA decoder)
    and write ``out/scale.json``, scale.md and scale.png. Every row is tagged with this run (its UTC
    start, ``run``) and the load average. ``replace``: the file holds this run only; otherwise this
    run's (model, step) cells replace the old ones and the rest are kept, each with its own tag (the
    table marks them). Returns every row written."""
    from .scale_models import LLAMA_1B, llama_decoder

    workd = Path(work or os.environ.get("GRAPHOPT_SCALE_TMP") or "/tmp/graphopt-scale")
    outd = Path(out)
    workd.mkdir(parents=True, exist_ok=True)
    outd.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRAPHOPT_SCALE_TMP", str(workd))  # the children's outputs go beside the models
    paths = [stack_model(s, workd, hidden) for s in sizes] + [Path(m) for m in models]
    if llama:
        p = workd / "llama_1b.onnx"
        if not p.exists():
            llama_decoder(p, LLAMA_1B, seq=16)
        paths.append(p)
    prev = outd / "scale.json"
    rows: list[dict[str, Any]] = json.loads(prev.read_text()) if prev.exists() and not replace else []
    run = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for m in paths:
        gb = model_bytes(m) / 1e9
        for s in steps:
            r = run_step(s, m, timeout=timeout)
            r.update(model=m.stem, gb=gb, run=run, load_avg=round(os.getloadavg()[0], 1))
            if progress is not None:
                progress(r)
            rows = [x for x in rows if not (x["model"] == r["model"] and x["step"] == s)] + [r]
            prev.write_text(json.dumps(rows, indent=1))  # after every step: a long run keeps what it measured
    (outd / "scale.md").write_text(table(rows) + "\n")
    if plot_png:
        plot(rows, outd / "scale.png")
    return rows
