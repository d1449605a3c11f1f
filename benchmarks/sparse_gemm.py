"""The 4x1-block sparse int8 GEMM against the dense int8 GEMM, on all-MiniLM-L6-v2's shapes.

    python benchmarks/sparse_gemm.py [--threads 1] [--rows 128,1024] [--out benchmarks/results/sparse-gemm]

Shapes: the four linear layers of a MiniLM layer (QKV 384x1152, output 384x384, FFN up
384x1536, FFN down 1536x384) at M = 128 rows (batch 1 x 128 tokens) and 1024 (batch 8);
weights with 50 / 75 / 90 % of their 4x1 blocks zero (random blocks, random int8 values),
u8 activations, fp32 output with per-channel scales and a bias (the runtime's epilogue).
Both kernels get the same inputs; their outputs are checked bit-identical first. The two are
interleaved in rounds (a ~150 ms pause before each system's block), each block timing `--calls`
calls; the table gives per-call medians over the rounds and dense / sparse. Writes table.md
and results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import graphopt
from graphopt import _C
from graphopt.runtime import kernels as gk

SHAPES = {"QKV": (384, 1152), "attention output": (384, 384), "FFN up": (384, 1536), "FFN down": (1536, 384)}
SPARSITY = (0.5, 0.75, 0.9)


def block_sparse(rng: np.random.Generator, k: int, n: int, sparsity: float) -> np.ndarray:
    kg = -(-k // 4)
    zero = np.zeros(kg * n, bool)
    zero[rng.permutation(kg * n)[:int(round(sparsity * kg * n))]] = True
    b = rng.integers(-127, 128, (kg * 4, n), dtype=np.int8)
    b[np.repeat(zero.reshape(kg, n), 4, axis=0)] = 0
    return np.ascontiguousarray(b[:k])


def time_block(fn, calls: int) -> float:
    time.sleep(0.15)
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default="128,1024", help="M values (comma-separated)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/sparse-gemm")
    args = ap.parse_args(argv)
    graphopt.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for m in (int(x) for x in args.rows.split(",")):
        for layer, (k, n) in SHAPES.items():
            a = rng.integers(0, 256, (m, k), dtype=np.uint8)
            scale = (rng.random(n) * 0.01 + 1e-3).astype(np.float32)
            bias = rng.standard_normal(n).astype(np.float32)
            for sp in SPARSITY:
                b = block_sparse(rng, k, n, sp)
                dense, sparse = gk.pack_int8(b, scale, 0), gk.pack_int8_sparse(b, scale, 0)
                kw = dict(a_scale=0.02, a_zero_point=7, bias=bias)
                assert np.array_equal(gk.gemm_int8(a, dense, **kw), gk.gemm_int8(a, sparse, **kw))
                td, ts = [], []
                for _ in range(args.rounds):
                    td.append(time_block(lambda: gk.gemm_int8(a, dense, **kw), args.calls))
                    ts.append(time_block(lambda: gk.gemm_int8(a, sparse, **kw), args.calls))
                row = {"M": m, "layer": layer, "K": k, "N": n, "sparsity_4x1": sp,
                       "dense_us": float(np.median(td)) * 1e6, "sparse_us": float(np.median(ts)) * 1e6,
                       "dense_isa": dense.isa, "sparse_isa": sparse.isa,
                       "dense_bytes": dense.nbytes, "sparse_bytes": sparse.nbytes}
                row["speedup"] = row["dense_us"] / row["sparse_us"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    cpu = graphopt.cpu_info() if hasattr(graphopt, "cpu_info") else {}
    machine = (f"{platform.processor() or platform.machine()}, {args.threads} thread(s), ISA {_C.isa_selected()}; "
               f"shared 2-core machine (timings noisy); {args.rounds} rounds x {args.calls} calls, medians")
    lines = [f"4x1-block sparse int8 GEMM vs the dense int8 GEMM (same weights, bit-identical outputs). {machine}", "",
             "| M | layer (K x N) | 4x1 blocks zero | dense int8 (us) | sparse int8 (us) | dense / sparse | "
             "weight bytes sparse / dense |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['M']} | {r['layer']} ({r['K']}x{r['N']}) | {r['sparsity_4x1']:.0%} | {r['dense_us']:.0f} | "
                     f"{r['sparse_us']:.0f} | {r['speedup']:.2f}x | {r['sparse_bytes'] / r['dense_bytes']:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"machine": machine, "cpu": str(cpu), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
