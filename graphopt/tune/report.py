"""Files the tuner and ``graphopt sensitivity`` write: model, recipe, plots, HTML."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .space import Group

__all__ = ["write_outputs", "sensitivity_table", "plot_sensitivity", "write_sensitivity_report"]

logger = logging.getLogger(__name__)


def _atomic_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def sensitivity_table(err: Any, top: int | None = None) -> str:
    """Groups ranked by int8 error, with their bf16 error: a fixed-width text table."""
    precs = [p for p in ("int8", "bf16") if any(p in e for e in err.error.values())]
    rows = err.ranking("int8")[:top] if top else err.ranking("int8")
    head = f"{'rank':>4}  {'node':<48}" + "".join(f"{p + ' err':>12}" for p in precs)
    lines = [head, "-" * len(head)]
    for i, (g, _) in enumerate(rows, 1):
        lines.append(f"{i:>4}  {g[:48]:<48}" + "".join(f"{err.error[g].get(p, 0.0):>12.2e}" for p in precs))
    return "\n".join(lines)


def plot_sensitivity(err: Any, path: Path, title: str, top: int = 30) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = err.ranking("int8")[:top]
    names = [g for g, _ in rows][::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(names) + 1)))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [err.error[g]["int8"] for g in names], height=0.4, label="int8")
    if any("bf16" in err.error[g] for g in names):
        ax.barh([i - 0.2 for i in y], [err.error[g].get("bf16", 0.0) for g in names], height=0.4, label="bf16")
    ax.set_yticks(list(y))
    ax.set_yticklabels([n[-40:] for n in names], fontsize=7)
    ax.set_xscale("symlog", linthresh=1e-6)
    ax.set_xlabel("output error energy added (squared relative L2 vs fp32, unpadded rows)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sens_html(err: Any, top: int = 40) -> str:
    precs = [p for p in ("int8", "bf16") if any(p in e for e in err.error.values())]
    rows = "".join(f"<tr><td>{i}</td><td>{html.escape(g)}</td>" +
                   "".join(f"<td>{err.error[g].get(p, 0.0):.2e}</td>" for p in precs) + "</tr>"
                   for i, (g, _) in enumerate(err.ranking("int8")[:top], 1))
    return (f"<table><tr><th>rank</th><th>node</th>{''.join(f'<th>{p} error</th>' for p in precs)}</tr>{rows}</table>"
            f"<p>all-int8 output error energy: {err.all_int8:.3e}</p>")


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2){text-align:left}")


def write_sensitivity_report(out: Path, err: Any, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    png = plot_sensitivity(err, out / "sensitivity.png", title)
    _atomic_text(out / "sensitivity.txt", sensitivity_table(err) + "\n")
    _atomic_text(out / "sensitivity.json", json.dumps(err.to_dict(), indent=1))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            "<p>Output error energy (squared relative L2 vs fp32, padded rows left out) each node adds at "
            "each precision (int8: leave-one-out bypass of the all-int8 model, scaled to sum to its energy; "
            "bf16: that node's weight rounded, doubled for its input).</p>"
            f"<img src='{png.name}'>{_sens_html(err, top=10**6)}</body></html>")
    return [png, out / "sensitivity.txt", _atomic_text(out / "report.html", page)]


def _plot_pareto(path: Path, res: Any, front: Sequence, bar: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if front:
        a1.plot([t * 1e3 for _, t, _ in front], [e for _, _, e in front], "o-", ms=3, label="predicted front")
        ev = [r for r in res.trials if r.get("pred_latency_ms") is not None]
        a1.scatter([r["pred_latency_ms"] for r in ev], [r["pred_error"] for r in ev], c="r", s=18, label="scored")
    a1.set_xlabel("predicted latency (ms)")
    a1.set_ylabel("predicted output error energy")
    a1.set_yscale("symlog", linthresh=1e-5)
    a1.set_title("cost x error tables: predicted front" if front else "no predicted front (strategy does not use it)")
    if front:
        a1.legend()
    rows = [r for r in res.trials]
    a2.scatter([r["latency_ms"] for r in rows], [r["accuracy"] for r in rows], s=18, label="scored candidates")
    a2.axhline(bar, color="r", ls="--", lw=1, label="tolerance bar")
    if res.latency_ms is not None:
        a2.scatter([res.latency_ms], [res.accuracy], marker="*", s=200, c="gold", edgecolors="k", label="chosen")
    a2.set_xlabel("measured latency (ms)")
    a2.set_ylabel("score (user's evaluate)")
    a2.set_title(f"{res.strategy} on {res.target}: {res.evaluations} evaluations")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def write_outputs(out: Path, res: Any, groups: Sequence[Group], cost: Any, err: Any, front: Sequence,
                  table_seconds: float, bar: float) -> None:
    from ..io import save

    save(res.model, out / "model.onnx")
    _atomic_text(out / "recipe.json", json.dumps(res.recipe.to_dict(), indent=1, sort_keys=True))
    summary = res.summary()
    summary["table_seconds"] = round(table_seconds, 1)
    ev = [r for r in res.trials if r.get("pred_latency_ms") and r.get("latency_ms")]
    if ev:
        mape = sum(abs(r["pred_latency_ms"] - r["latency_ms"]) / r["latency_ms"] for r in ev) / len(ev)
        summary["cost_table_mean_abs_error"] = round(mape, 4)
    if cost is not None and cost.load:
        summary["cost_table_load_average"] = round(cost.load, 1)  # measured busy: not cached, less trustworthy
    _atomic_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    png = _plot_pareto(out / "pareto.png", res, front, bar)
    if err is not None:
        plot_sensitivity(err, out / "sensitivity.png", "per-node sensitivity")
    trs = "".join(
        f"<tr><td>{r['trial']}</td><td>{html.escape(r['phase'])}</td><td>{r['accuracy']:.4f}</td>"
        f"<td>{'' if r.get('paired_lower') is None else format(r['paired_lower'], '+.4f')}</td>"
        f"<td>{r['latency_ms']:.2f}</td><td>{_ms(r.get('pred_latency_ms'))}</td>"
        f"<td>{r['counts']['int8']}/{r['counts']['bf16']}/{r['counts']['fp32']}</td><td>{r['eval_seconds']}</td></tr>"
        for r in res.trials)
    st = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                 for k, v in summary.items() if k != "recipe")
    cost_rows = ""
    if cost is not None:
        cost_rows = "".join(f"<tr><td>{i}</td><td>{html.escape(g)}</td>" +
                            "".join(f"<td>{cost.cost[g][p] * 1e6:.0f}</td>" for p in cost.cost[g]) + "</tr>"
                            for i, g in enumerate(cost.groups, 1))
        precs = list(cost.cost[cost.groups[0]]) if cost.groups else []
        cost_rows = (f"<h2>Cost table (µs per group, measured on {html.escape(cost.target)}; fp32 model "
                     f"{cost.total_fp32 * 1e3:.2f} ms)</h2><table><tr><th>#</th><th>group</th>"
                     + "".join(f"<th>{p}</th>" for p in precs) + f"</tr>{cost_rows}</table>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>graphopt tune</title><style>{_CSS}</style>"
            f"</head><body><h1>graphopt tune: {html.escape(res.strategy)} on {html.escape(res.target)}</h1>"
            f"<p><b>{html.escape(res.message)}</b></p><table>{st}</table>"
            f"<h2>Accuracy / latency</h2><img src='{png.name}' width='100%'>"
            "<h2>Trials</h2><table><tr><th>#</th><th>phase</th><th>score</th><th>paired lower bound</th><th>latency ms</th>"
            f"<th>predicted ms</th><th>int8/bf16/fp32</th><th>eval s</th></tr>{trs}</table>"
            + (f"<h2>Sensitivity</h2><img src='sensitivity.png'>{_sens_html(err)}" if err is not None else "")
            + cost_rows + "</body></html>")
    _atomic_text(out / "report.html", page)
