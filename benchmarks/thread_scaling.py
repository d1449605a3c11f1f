"""Why 2 threads gain what they gain (issue 12): a per-step account of a transformer at 1 vs 2 threads.

For DistilBERT (or MiniLM) in the default export form at ``--batch`` x ``--seq``, graphopt fp32, bf16 and
static int8 (the bench's QDQ model) are compiled at 1 and at 2 threads and run in interleaved rounds
(~150 ms pause and one untimed call before each session's timed call, as ``graphopt bench``; without
that call a batch-1 run timed the pool's wake-up: MiniLM 2 threads 1.08x instead of 1.47x at int8)
with the plan's per-step clock on (``Session.profile``'s timer).
Steps are grouped by what they do -- Linear by its weight shape K x N, Attention, LayerNorm, the
rest by kind -- and each group's median time at 1 and 2 threads gives its speedup and the milliseconds
it costs above the ideal 2-thread time (t1 / 2). ``between steps`` is the run's wall time minus the sum
of its steps (the Python call, input checks, output copies, the clock itself).

    flock /work/bench.lock python benchmarks/thread_scaling.py --model distilbert --batch 8 \
        --out benchmarks/results/thread-scaling
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import graphopt
from graphopt import _C
from graphopt.bench.models import _Builder, _feeds, _spec

PRECISIONS = ("fp32", "bf16", "int8s")


def groups(sess) -> list[str]:
    """Each step's group: a GEMM step by its kind and weight shape K x N, else its kind."""
    shapes = sess._plan.step_weight_shapes()
    return [f"{s.kind} {kn[0]}x{kn[1]}" if kn else s.kind for s, kn in zip(sess._steps, shapes)]


def timed_run(sess, feeds) -> tuple[float, list[float]]:
    """(wall ms of one run, per-step ms) with the plan's step clock on."""
    plan = sess._plan
    plan.set_profile(True)
    try:
        t0 = time.perf_counter()
        sess.run(feeds)
        wall = (time.perf_counter() - t0) * 1e3
        return wall, [u / 1e3 for u in plan.step_us]
    finally:
        plan.set_profile(False)


def account(sessions: dict[int, object], walls: dict[int, list[float]], steps: dict[int, list[list[float]]]) -> dict:
    """Per group: median ms at 1 and 2 threads (each step's median over the rounds, summed)."""
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    for t, sess in sessions.items():
        med = np.median(np.array(steps[t]), axis=0)
        for g, ms in zip(groups(sess), med):
            out[g][t] += float(ms)
            if t == 1:
                counts[g] += 1
        # per run (a sum of per-step medians is not the median of the sums)
        out["between steps"][t] = float(np.median([w - sum(s) for w, s in zip(walls[t], steps[t])]))
    for t in sessions:
        out["total (wall)"][t] = float(np.median(walls[t]))
    return {g: {"steps": counts.get(g, 0), "t1_ms": v[1], "t2_ms": v[2]} for g, v in out.items()}


def table(prec: str, acc: dict) -> list[str]:
    lines = [f"{prec}: {'group':<22}{'steps':>6}{'1 thr ms':>10}{'2 thr ms':>10}{'speedup':>9}{'over t1/2 ms':>14}"]
    total = acc["total (wall)"]
    rows = sorted(((g, r) for g, r in acc.items() if g != "total (wall)"), key=lambda gr: -(gr[1]["t2_ms"] - gr[1]["t1_ms"] / 2))
    for g, r in rows + [("total (wall)", total)]:
        sp = r["t1_ms"] / r["t2_ms"] if r["t2_ms"] > 0 else float("nan")
        lines.append(f"      {g:<22}{r['steps']:>6}{r['t1_ms']:10.2f}{r['t2_ms']:10.2f}{sp:9.2f}"
                     f"{r['t2_ms'] - r['t1_ms'] / 2:14.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="distilbert")
    ap.add_argument("--export-form", default="sdpa-dynamo")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.15)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--out", default="benchmarks/results/thread-scaling")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. before/after a change)")
    args = ap.parse_args()

    spec = _spec(args.model, args.export_form)
    feeds = _feeds(spec, args.batch, args.seq)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="graphopt-scaling-") as tmp:
        b = _Builder(spec, Path(tmp))
        sessions: dict[str, dict[int, object]] = {}
        for prec in args.precisions:
            sessions[prec] = {}
            for t in (1, 2):
                sessions[prec][t] = (graphopt.compile(b.static_int8(), precision="int8", num_threads=t, level="O0")
                                     if prec == "int8s" else graphopt.compile(spec, precision=prec, num_threads=t))
                sessions[prec][t].run(feeds)
        walls = {p: {t: [] for t in (1, 2)} for p in sessions}
        steps = {p: {t: [] for t in (1, 2)} for p in sessions}
        for _ in range(args.rounds):
            for p, by_t in sessions.items():
                for t, sess in by_t.items():
                    time.sleep(args.pause)
                    sess.run(feeds)  # untimed, as graphopt bench: the first call after a pause is cold
                    w, s = timed_run(sess, feeds)
                    walls[p][t].append(w)
                    steps[p][t].append(s)
    load1 = os.getloadavg()[0]
    result = {"model": spec.name, "export_form": args.export_form, "batch": args.batch, "seq": args.seq,
              "rounds": args.rounds, "loadavg": [load0, load1], "precisions": {}}
    lines = [f"{spec.name} ({args.export_form}), batch {args.batch} x seq {args.seq}, graphopt at 1 vs 2 threads, "
             f"{args.rounds} interleaved rounds, medians; load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs; "
             f"CPU {_C.cpu_features().get('brand', '')}; 'over t1/2': ms above a perfect 2x", ""]
    for p in sessions:
        acc = account(sessions[p], walls[p], steps[p])
        result["precisions"][p] = acc
        lines += table(p, acc) + [""]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.model}-b{args.batch}" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.txt").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
