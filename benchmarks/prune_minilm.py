"""Structured pruning of all-MiniLM-L6-v2: fidelity of the pruned model, sliced vs least-squares refit.

    python benchmarks/prune_minilm.py [--export-form sdpa-dynamo] [--out benchmarks/results/prune-minilm]

Calibration: the 104 shipped calibration sentences + the first 200 eval sentences (seq 32);
evaluation: the next 100 eval sentences. Fidelity = cosine of the mean-pooled sentence
embedding (unpadded tokens) to the unpruned model, both run natively at fp32. Prints a
markdown table and writes it with a JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.data import sentences  # noqa: E402
from graphopt.models import minilm_onnx, sample_feeds  # noqa: E402

SETTINGS = [(0.25, 0.0), (0.0, 0.25), (0.25, 0.25), (0.5, 0.5)]


def pooled(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    h = graphopt.compile(model, precision="fp32").run(feeds)[0]
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    return (h * mask).sum(1) / mask.sum(1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export-form", default="eager-torchscript", help="{eager,sdpa}-{torchscript,dynamo}")
    ap.add_argument("--out", default="benchmarks/results/prune-minilm", help="folder for table.md and results.json")
    args = ap.parse_args(argv)
    attn, _, exporter = args.export_form.partition("-")
    spec = minilm_onnx(attn=attn, exporter=exporter)
    cal = sentences("calib") + sentences("eval")[:200]
    calib = [sample_feeds(spec, cal[i:i + 16], batch=16, seq=32) for i in range(0, len(cal), 16)]
    held = sample_feeds(spec, sentences("eval")[200:300], batch=100, seq=32)
    ref = pooled(graphopt.load(spec.path), held)
    rows = []
    for heads, ffn in SETTINGS:
        row = {"heads": heads, "ffn": ffn}
        for refit in (False, True):
            t = time.perf_counter()
            m, rep = graphopt.prune(graphopt.load(spec.path), calib, heads=heads, ffn=ffn, reconstruct=refit,
                                    progress=False)
            c = cosine(ref, pooled(m, held))
            key = "refit" if refit else "sliced"
            row[key] = {"mean_cosine": float(c.mean()), "min_cosine": float(c.min()),
                        "seconds": time.perf_counter() - t}
            row["params"] = rep.params_after / rep.params_before
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [f"all-MiniLM-L6-v2 ({args.export_form}), cosine of mean-pooled embeddings to the unpruned model, "
             "100 held-out sentences", "",
             "| removed per layer | parameters | cosine, sliced (mean / min) | cosine, refit (mean / min) |",
             "|---|---|---|---|"]
    for r in rows:
        what = " + ".join(x for x in (f"{r['heads']:.0%} heads" if r["heads"] else "",
                                      f"{r['ffn']:.0%} FFN" if r["ffn"] else "") if x)
        s, f = r["sliced"], r["refit"]
        lines.append(f"| {what} | {r['params']:.0%} | {s['mean_cosine']:.3f} / {s['min_cosine']:.3f} | "
                     f"{f['mean_cosine']:.3f} / {f['min_cosine']:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
