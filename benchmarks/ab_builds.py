"""Interleaved A/B of two graphopt builds (two virtual environments) on one model and precision.

Each build runs in its own worker process, which compiles the model once (as ``graphopt bench``
does) and then times one inference per request; the parent alternates the workers with a pause
before each run, so both see the same machine state. Reports wall and process-CPU medians and
checks that every run of a build returns the bits of its first run.

    flock /work/bench.lock python benchmarks/ab_builds.py /work/venv-base/bin/python /work/venv-new/bin/python \\
        --model distilbert --batch 8 --threads 1 --rounds 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import sys, time
import numpy as np
import graphopt
from graphopt.bench.models import _feeds, _spec
model, form, precision, threads, batch, seq = sys.argv[1:7]
spec = _spec(model, form)
feeds = _feeds(spec, int(batch), int(seq))
s = graphopt.compile(spec, precision=precision, num_threads=int(threads))
first = s.run(feeds)[0]
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    c0, t0 = time.process_time(), time.perf_counter()
    out = s.run(feeds)[0]
    w, c = time.perf_counter() - t0, time.process_time() - c0
    print(f"{w * 1e3:.4f} {c * 1e3:.4f} {int(np.array_equal(out, first))}", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="python of the base build")
    ap.add_argument("new", help="python of the new build")
    ap.add_argument("--model", default="distilbert")
    ap.add_argument("--export-form", default="sdpa-dynamo")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--pause", type=float, default=0.15)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    argv = [args.model, args.export_form, args.precision, str(args.threads), str(args.batch), str(args.seq)]
    procs = {k: subprocess.Popen([py, "-c", WORKER, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd="/tmp") for k, py in (("base", args.base), ("new", args.new))}
    for k, p in procs.items():
        if p.stdout.readline().strip() != "ready":
            sys.exit(f"{k} worker failed to start")
    load0 = os.getloadavg()[0]
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in procs}
    same = {k: True for k in procs}
    for _ in range(args.rounds):
        for k, p in procs.items():
            time.sleep(args.pause)
            p.stdin.write("run\n")
            p.stdin.flush()
            w, c, eq = p.stdout.readline().split()
            runs[k].append((float(w), float(c)))
            same[k] &= eq == "1"
    for p in procs.values():
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.wait()
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
    res = {"model": args.model, "export_form": args.export_form, "precision": args.precision, "batch": args.batch,
           "threads": args.threads, "rounds": args.rounds, "loadavg": [load0, os.getloadavg()[0]],
           "wall_ms": {k: m[0] for k, m in med.items()}, "cpu_ms": {k: m[1] for k, m in med.items()},
           "bit_identical_run_to_run": same}
    print(f"{args.model} ({args.export_form}) {args.precision} b{args.batch} t{args.threads}, {args.rounds} interleaved "
          f"rounds, load {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    for k, (w, c) in med.items():
        print(f"  {k:5s} wall {w:8.2f} ms  cpu {c:8.2f} ms  identical run to run: {same[k]}")
    print(f"  new / base: wall {med['new'][0] / med['base'][0]:.3f}, cpu {med['new'][1] / med['base'][1]:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
