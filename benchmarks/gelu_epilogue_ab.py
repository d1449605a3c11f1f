"""A/B of fuse-linear-epilogue's activation-through-Reshape rule on the zoo GPT-2 (sdpa + dynamo).

    flock /work/bench.lock python benchmarks/gelu_epilogue_ab.py [--seq 64] [--batch 1 8] [--rounds 15]

Plan A: O2 without the rule (the tanh-GELU as its own step after the Gemm and its Reshape); plan B:
O2 (GELU in the GEMM epilogue). Both compiled in this process at 1 thread, fp32 and int8, timed
interleaved (a ~150 ms pause before each block of calls); per-call thread CPU time and wall time,
medians over rounds. The outputs of A and B are compared too (max abs difference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import graphopt  # noqa: E402
from graphopt.passes.fusion import fuse_linear_epilogue as fle  # noqa: E402
from graphopt.testing.zoo import ZOO, export, make_feeds  # noqa: E402


def _compile(path: str, precision: str, with_rule: bool):
    rules = fle.FUSE_LINEAR_EPILOGUE.rules
    saved = list(rules)
    if not with_rule:
        rules[:] = [r for r in rules if r.name != "linear-activation-through-reshape"]
    try:
        return graphopt.compile(path, precision=precision, num_threads=1)
    finally:
        rules[:] = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=64)  # GPT-2 zoo: 64 positions
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    e = export("gpt2", "sdpa", "dynamo")
    print(f"load average {os.getloadavg()[0]:.1f}")
    for prec in ("fp32", "int8"):
        a, b = _compile(str(e.path), prec, False), _compile(str(e.path), prec, True)
        ka = sum(st.kind == "Gelu" for st in a._steps)
        kb = sum(st.kind == "Gelu" for st in b._steps)
        for batch in args.batch:
            feeds = make_feeds(ZOO["gpt2"], batch, args.seq)
            diff = float(np.abs(a.run(feeds)[0] - b.run(feeds)[0]).max())
            res: dict[str, tuple[list[float], list[float]]] = {"A": ([], []), "B": ([], [])}
            for _ in range(args.rounds):
                for name, s in (("A", a), ("B", b)):
                    time.sleep(0.15)
                    w0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(args.calls):
                        s.run(feeds)
                    res[name][0].append((time.perf_counter() - w0) / args.calls * 1e3)
                    res[name][1].append((time.thread_time() - c0) / args.calls * 1e3)
            wa, ca = statistics.median(res["A"][0]), statistics.median(res["A"][1])
            wb, cb = statistics.median(res["B"][0]), statistics.median(res["B"][1])
            print(f"{prec} batch {batch} seq {args.seq}: A ({ka} Gelu steps, {len(a._steps)} steps) "
                  f"{wa:.3f} ms wall / {ca:.3f} ms CPU; B ({kb} Gelu steps, {len(b._steps)} steps) {wb:.3f} / "
                  f"{cb:.3f}; B/A wall {wb / wa:.3f}, CPU {cb / ca:.3f}; max |A-B| {diff:.2e}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
