"""Scale benchmark: time and peak memory of each step against model size (issue 16).

Builds MatMul stacks of ~0.1, 1 and 4 GB (fp32, external data; hidden 2048) and
optionally the ~1.1B-parameter LLaMA-config decoder, then runs every step alone in a
child process (graphopt.bench.scale) and writes a markdown table, a JSON file and a PNG
plot of cost against model size.

    python benchmarks/scale.py --sizes 0.1,1 --out benchmarks/results/scale
    python benchmarks/scale.py --sizes 0.1,1,4 --steps load,o2,rtn,save,compile,ort,ort-nbits,nncf
    python benchmarks/scale.py --sizes 0.1 --steps gptq          # GPTQ is slow (numpy, per row)

Peak memory is the growth of VmHWM over the child's baseline after imports; "x model"
divides it by the model's bytes. Keep other big jobs off the machine while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from graphopt.bench.scale import STEPS, run_step
from graphopt.bench.scale_models import LLAMA_1B, llama_decoder, matmul_stack

HIDDEN = 2048
DEFAULT_STEPS = "load,o2,rtn,save,compile,ort,ort-nbits,nncf"


def _model(size_gb: float, work: Path) -> Path:
    layers = max(1, round(size_gb * 1e9 / (HIDDEN * HIDDEN * 4)))
    path = work / f"stack_{size_gb:g}gb.onnx"
    if not path.exists():
        print(f"building {path} ({layers} x {HIDDEN}^2 fp32)", file=sys.stderr)
        matmul_stack(path, layers, HIDDEN)
    return path


def _bytes(path: Path) -> int:
    return path.stat().st_size + (path.parent / (path.name + ".data")).stat().st_size


def table(rows: list[dict]) -> str:
    steps = list(dict.fromkeys(r["step"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = ["| model | GB | " + " | ".join(steps) + " |", "|---|---|" + "---|" * len(steps)]
    for m in models:
        mr = {r["step"]: r for r in rows if r["model"] == m}
        gb = next(r["gb"] for r in rows if r["model"] == m)
        cells = []
        for s in steps:
            r = mr.get(s)
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("error")
            else:
                peak = r["peak_mb"] * 2**20 / 1e9
                cells.append(f"{r['seconds']:.1f} s / {peak:.2f} GB ({peak / gb:.2f}x)")
        out.append(f"| {m} | {gb:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    stack = [r for r in rows if r["model"].startswith("stack") and "error" not in r]
    for s in dict.fromkeys(r["step"] for r in stack):
        pts = sorted((r["gb"], r["seconds"], r["peak_mb"] * 2**20 / 1e9) for r in stack if r["step"] == s)
        style = "--" if s in ("ort", "ort-nbits", "nncf") else "-"
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=s)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], style, marker="o", label=s)
    xs = sorted({r["gb"] for r in stack})
    ax2.plot(xs, [1.5 * x for x in xs], ":", color="grey", label="1.5x model")
    ax1.set(xlabel="model size (GB)", ylabel="wall time (s, log)", title="time per step", yscale="log")
    ax2.set(xlabel="model size (GB)", ylabel="peak memory growth (GB)", title="peak resident memory per step")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.1,1", help="MatMul-stack sizes in GB (comma-separated)")
    ap.add_argument("--steps", default=DEFAULT_STEPS, help=f"of {','.join(STEPS)}")
    ap.add_argument("--llama", action="store_true", help="also the ~1.1B LLaMA-config decoder (4.4 GB fp32)")
    ap.add_argument("--work", default=os.environ.get("GRAPHOPT_SCALE_TMP", "/tmp/graphopt-scale"))
    ap.add_argument("--out", default="benchmarks/results/scale")
    a = ap.parse_args(argv)
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRAPHOPT_SCALE_TMP", str(work))
    models = [_model(float(s), work) for s in a.sizes.split(",") if s]
    if a.llama:
        p = work / "llama_1b.onnx"
        if not p.exists():
            llama_decoder(p, LLAMA_1B, seq=16)
        models.append(p)
    rows = []
    prev = out / "scale.json"
    if prev.exists():  # runs add to (and replace in) earlier results
        rows = [r for r in json.loads(prev.read_text())]
    for m in models:
        gb = _bytes(m) / 1e9
        for s in a.steps.split(","):
            r = run_step(s, m)
            r.update(model=m.stem, gb=gb)
            print(json.dumps(r), flush=True)
            rows = [x for x in rows if not (x["model"] == r["model"] and x["step"] == s)] + [r]
    prev.write_text(json.dumps(rows, indent=1))
    (out / "scale.md").write_text(table(rows) + "\n")
    plot(rows, out / "scale.png")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
