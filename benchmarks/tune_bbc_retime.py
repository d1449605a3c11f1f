"""Re-time the models of ``benchmarks/tune_bbc.py`` interleaved (round-robin medians), so a shared
machine's load drifts over all of them alike. Batch 1, 128 tokens, ``--threads`` each.

    python benchmarks/tune_bbc_retime.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import graphopt
from graphopt.models.bbc import NAMES, bbc_classifier, load_split
from graphopt.tune import make_runner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/tune-bbc/retime.json")
    args = ap.parse_args()
    task = bbc_classifier()
    val = load_split(task.val)
    feeds = {k: val[k][:1] for k in NAMES}
    res = Path("benchmarks/results")
    runs = {"graphopt fp32": make_runner(graphopt.load(task.path), "native", args.threads)}
    s = graphopt.compile(task.path, "bf16", num_threads=args.threads)
    runs["graphopt bf16"] = lambda f, s=s: s.run(f)
    for strat in ("pareto", "basic", "greedy"):
        p = res / "tune-bbc-strategies" / f"tune-{strat}" / "model.onnx"
        if p.exists():
            runs[f"graphopt tune {strat}"] = make_runner(graphopt.load(p), "native", args.threads)
    p = res / "tune-bbc" / "ort_static.onnx"
    if p.exists():
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        o = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        runs["onnxruntime quantize_static"] = lambda f, o=o: o.run(None, f)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for k, run in runs.items():
            run(feeds)
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                run(feeds)
                ts.append(time.perf_counter() - t)
            times[k].append(statistics.median(ts))
    out = {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}
    Path(args.out).write_text(json.dumps(out, indent=1))
    for k, v in out.items():
        print(f"{k:32s} {v:8.2f} ms  ({v / out['graphopt fp32']:.2f}x fp32)")


if __name__ == "__main__":
    main()
