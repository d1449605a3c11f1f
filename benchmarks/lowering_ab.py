"""A/B of two graphopt trees on the reference plans: steps, outputs and latency, interleaved.

Each side is a worker process holding one compiled plan (MiniLM eager/TorchScript and sdpa/dynamo,
DistilBERT; fp32, bf16, int8 dynamic, int8 static from graphopt's QDQ file; the plans of
tests/runtime_tests/test_plan_steps.py), 1 thread, batch 1, seq 128, one shipped sentence. The
parent alternates the sides' blocks (order swapped every round, ~150 ms pause before each block) and
reports medians, after/before ratios, and the max abs difference of the two outputs.

The "before" tree is another checkout's package importable from ``--before-path`` (its ``graphopt``
with the built ``_C`` and ``passes`` copied to ``graphopt/passes``), run by ``--before-python`` (a
venv without the editable install, whose finder would win over PYTHONPATH).

    flock /work/bench.lock python benchmarks/lowering_ab.py --before-path /tmp/old --before-python /tmp/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
MODELS = ("minilm", "minilm-sdpa-dynamo", "distilbert")
PRECISIONS = ("fp32", "bf16", "int8", "int8-static")


def worker(model: str, precision: str, out: str) -> None:
    sys.path.insert(0, str(TESTS))
    from runtime_tests.test_plan_steps import _plan

    from graphopt.data import sentences
    from graphopt.models import distilbert_onnx, minilm_onnx, sample_feeds

    sess = _plan(model, precision)
    spec = distilbert_onnx() if model == "distilbert" else minilm_onnx() if model == "minilm" else \
        minilm_onnx(attn="sdpa", exporter="dynamo")
    feeds = {k: v for k, v in sample_feeds(spec, sentences("calib")[40:41], seq=128).items() if k in spec.input_names}
    np.save(out, sess.run(feeds)[0])
    for _ in range(3):
        sess.run(feeds)
    print(f"ready {len(sess._steps)}", flush=True)
    for line in sys.stdin:
        ts = []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            sess.run(feeds)
            ts.append(time.perf_counter() - t0)
        print(" ".join(f"{t * 1e3:.4f}" for t in ts), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before-path", help="directory holding the before tree's graphopt package")
    ap.add_argument("--before-python", help="interpreter for the before side")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side per round")
    ap.add_argument("--out", default="benchmarks/results/lowering-table")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)
    if not args.before_path or not args.before_python:
        ap.error("--before-path and --before-python are required")
    me = str(Path(__file__).resolve())
    sides = {"before": ["env", f"PYTHONPATH={args.before_path}", args.before_python, me],
             "after": [sys.executable, me]}
    tmp = Path(tempfile.mkdtemp(prefix="lowering-ab-"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = {}
    for model in MODELS:
        for prec in PRECISIONS:
            procs, steps = {}, {}
            for side, cmd in sides.items():
                p = subprocess.Popen(cmd + ["--worker", model, prec, str(tmp / f"{side}.npy")],
                                     cwd=tempfile.gettempdir(), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
                assert p.stdout is not None
                steps[side] = int(p.stdout.readline().split()[1])
                procs[side] = p
            ts: dict[str, list[float]] = {s: [] for s in sides}
            for r in range(args.rounds):
                for side in list(sides)[:: 1 if r % 2 == 0 else -1]:
                    time.sleep(0.15)
                    p = procs[side]
                    assert p.stdin is not None and p.stdout is not None
                    p.stdin.write(f"{args.runs}\n")
                    p.stdin.flush()
                    ts[side] += [float(x) for x in p.stdout.readline().split()]
            for p in procs.values():
                assert p.stdin is not None
                p.stdin.close()
                p.wait()
            med = {s: statistics.median(v) for s, v in ts.items()}
            diff = float(np.abs(np.load(tmp / "before.npy") - np.load(tmp / "after.npy")).max())
            res[f"{model}/{prec}"] = {"steps_before": steps["before"], "steps_after": steps["after"],
                                      "ms_before": round(med["before"], 3), "ms_after": round(med["after"], 3),
                                      "ratio": round(med["after"] / med["before"], 3), "max_abs_diff": diff}
            print(model, prec, res[f"{model}/{prec}"], flush=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs", "threads": 1, "batch": 1,
            "seq": 128, "rounds": args.rounds, "runs_per_round": args.runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1) + "\n")
    rows = [f"Before/after, interleaved ({args.rounds} rounds x {args.runs} runs per side, medians), 1 thread, batch 1, "
            f"seq 128; {meta['machine']}. `python benchmarks/lowering_ab.py` (see its docstring).", "",
            "| model | precision | steps before -> after | ms before | ms after | after/before | max abs diff |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {k.split('/')[0]} | {k.split('/')[1]} | {v['steps_before']} -> {v['steps_after']} | {v['ms_before']:.2f} | "
             f"{v['ms_after']:.2f} | {v['ratio']:.3f} | {v['max_abs_diff']:.2g} |" for k, v in res.items()]
    (out / "table.md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
