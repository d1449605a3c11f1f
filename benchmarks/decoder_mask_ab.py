"""Decoder attention before/after the mask canonicalization (issue 12): the LLaMA-style decoder of
benchmarks/decoder_attention.py (hidden 1024, 4 layers, 16 q / 4 KV heads, sdpa + dynamo export),
compiled by two graphopt builds -- BASE (a checkout before the change) and NEW -- each in its own worker
process, timed interleaved (rounds x configs x builds, 150 ms pause before each block; medians of
per-call CPU time at 1 thread, wall time beside it).

    python benchmarks/decoder_mask_ab.py --base-python /work/venv-mask-base/bin/python \\
        [--rounds 5] [--per-round 5] [--seqs 128,256] [--batches 1,4]

Batch 4 is padded: rows of 100 %, 75 % (right padding), 60 % (left padding) and 90 % of the sequence.
Writes benchmarks/results/decoder-mask-ab.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def feeds(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (batch, seq)).astype(np.int64)
    am = np.ones((batch, seq), np.int64)
    if batch > 1:
        am[1, int(seq * 0.75):] = 0
    if batch > 2:
        am[2, :int(seq * 0.4)] = 0
    if batch > 3:
        am[3, int(seq * 0.9):] = 0
    return {"input_ids": ids, "attention_mask": am}


def _kernel(b: int, s: int, k: int) -> dict:
    """The attention kernel alone, 16 q / 4 KV heads, d 64, fp32: the exported [B, 1, S, S] mask (BASE's
    input) against causal + the [B, 1, 1, S] key-padding mask (what NEW's plan passes), same padding."""
    from graphopt.runtime import kernels

    rng = np.random.default_rng(0)
    q = rng.standard_normal((b, 16, s, 64)).astype(np.float32)
    kv = [rng.standard_normal((b, 4, s, 64)).astype(np.float32) for _ in range(2)]
    am = feeds(b, s)["attention_mask"].astype(bool)
    fmin = float(np.finfo(np.float32).min)
    new = "causal_fill" in (kernels.attention.__doc__ or "")
    if new:
        pad = np.where(am, 0.0, fmin).astype(np.float32)[:, None, None, :]
        run = lambda: kernels.attention(q, *kv, pad, causal=True, causal_fill=fmin)  # noqa: E731
    else:
        keep = np.tril(np.ones((s, s), bool))[None, None] & am[:, None, None, :]
        full = np.where(keep, 0.0, fmin).astype(np.float32)
        run = lambda: kernels.attention(q, *kv, full)  # noqa: E731
    y = run()
    cpu, wall = [], []
    for _ in range(k):
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return {"cpu": cpu, "wall": wall, "sum": float(np.abs(y).sum()), "steps": 1}


def worker(path: str) -> None:
    """Reads 'precision batch seq n' lines; answers one JSON line per request."""
    import graphopt
    from graphopt.pm import PassManager

    m = graphopt.load(path)
    PassManager.from_text("O2")(m)
    att = [n for n in m.graph if n.op == "graphopt::Attention"]
    info = {"attention": len(att), "causal": sum(int(n.attr("causal", 0)) for n in att),
            "bias": sum(len(n.inputs) > 4 and n.inputs[4] is not None for n in att)}
    sessions = {}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        prec, b, s, k = line.split()
        b, s, k = int(b), int(s), int(k)
        if prec == "kernel":
            print(json.dumps(_kernel(b, s, k)), flush=True)
            continue
        if prec not in sessions:
            sessions[prec] = graphopt.compile(m, precision=prec, level="O0", num_threads=1)
        sess, f = sessions[prec], feeds(b, s)
        y = np.asarray(sess.run(f)[0])  # warm, and the output for the cross-build check
        cpu, wall = [], []
        for _ in range(k):
            c0, w0 = time.process_time(), time.perf_counter()
            sess.run(f)
            cpu.append((time.process_time() - c0) * 1e3)
            wall.append((time.perf_counter() - w0) * 1e3)
        print(json.dumps({"cpu": cpu, "wall": wall, "sum": float(np.abs(y).sum()), "steps": len(sess._steps)}),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--base-python", required=False)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--seqs", default="128,256")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--precisions", default="fp32,bf16,kernel")
    ap.add_argument("--out", default=str(HERE / "results" / "decoder-mask-ab.md"))
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return
    sys.path.insert(0, str(HERE))
    from decoder_attention import export

    path = Path(tempfile.mkdtemp(prefix="decoder-mask-ab-")) / "llama-sdpa-dynamo.onnx"
    export(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for name, py in (("base", a.base_python), ("new", sys.executable)):
        p = subprocess.Popen([py, str(Path(__file__).resolve()), "--worker", str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd="/tmp")
        procs[name] = (p, json.loads(p.stdout.readline()))
    configs = [(p, b, s) for p in a.precisions.split(",") for s in map(int, a.seqs.split(","))
               for b in map(int, a.batches.split(","))]
    samples: dict[str, dict[str, list[float]]] = {f"{c}|{n}": {"cpu": [], "wall": []} for c in configs for n in procs}
    extra: dict[str, dict] = {}
    for r in range(a.rounds):
        for c in configs:
            for n, (p, _) in procs.items():
                time.sleep(0.15)
                p.stdin.write(f"{c[0]} {c[1]} {c[2]} {a.per_round}\n")
                p.stdin.flush()
                res = json.loads(p.stdout.readline())
                samples[f"{c}|{n}"]["cpu"] += res["cpu"]
                samples[f"{c}|{n}"]["wall"] += res["wall"]
                extra[f"{c}|{n}"] = {"sum": res["sum"], "steps": res["steps"]}
        print(f"round {r + 1}/{a.rounds}", flush=True)
    for p, _ in procs.values():
        p.stdin.close()
        p.wait()
    load = os.getloadavg()
    md = ["# Decoder attention before/after the mask canonicalization", "",
          "LLaMA-style decoder (hidden 1024, 4 layers, 16 q / 4 KV heads; sdpa + dynamo export, random weights), "
          "1 thread; two graphopt builds in two worker processes, interleaved (150 ms pause before each block); "
          f"medians over {a.rounds} rounds x {a.per_round} calls. `python benchmarks/decoder_mask_ab.py "
          f"--rounds {a.rounds} --per-round {a.per_round} --seqs {a.seqs} --batches {a.batches}`; "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared 2-core box).", "",
          f"base: {procs['base'][1]}; new: {procs['new'][1]} (attention blocks, causal, with a bias).", "",
          "`kernel` rows: the attention kernel alone (16 q / 4 KV heads, d 64, fp32), BASE with the exported "
          "[B, 1, S, S] mask, NEW with causal + the key-padding mask.", "",
          "| precision | batch | seq | base CPU ms | new CPU ms | new / base (CPU) | base wall ms | new wall ms | "
          "plan steps base / new | outputs agree |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for c in configs:
        b_, n_ = samples[f"{c}|base"], samples[f"{c}|new"]
        mb, mn = float(np.median(b_["cpu"])), float(np.median(n_["cpu"]))
        wb, wn = float(np.median(b_["wall"])), float(np.median(n_["wall"]))
        rows.append({"precision": c[0], "batch": c[1], "seq": c[2], "base_cpu": mb, "new_cpu": mn,
                     "base_wall": wb, "new_wall": wn, "steps": (extra[f"{c}|base"]["steps"], extra[f"{c}|new"]["steps"])})
        sb, sn = extra[f"{c}|base"]["sum"], extra[f"{c}|new"]["sum"]
        agree = abs(sb - sn) <= 1e-4 * abs(sb) if c[0] in ("fp32", "kernel") else abs(sb - sn) <= 2e-2 * abs(sb)
        md.append(f"| {c[0]} | {c[1]} | {c[2]} | {mb:.2f} | {mn:.2f} | {mn / mb:.2f}x | {wb:.2f} | {wn:.2f} | "
                  f"{extra[f'{c}|base']['steps']} / {extra[f'{c}|new']['steps']} | "
                  f"{'yes' if agree else 'NO'} (sum |y| {sb:.6g} / {sn:.6g}) |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "samples": samples, "load": load}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
