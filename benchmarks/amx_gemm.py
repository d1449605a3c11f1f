"""Where an AMX GEMM's time goes (issue 12): DistilBERT's GEMM shapes at batch 8 x seq 128 (M = 1024;
K x N = 768 x 768, the packed QKV 768 x 2304, 768 x 3072, 3072 x 768), int8 and bf16, at 1 and 2 threads.

Per shape and thread count, timed interleaved (every variant once per round, ``--reps`` calls each,
medians over ``--rounds``), as % of the tile unit's peak (``_C.peak_gops`` x threads):

- ``products``: the block loop's tile loads and products only (``_C.amx_stage_seconds``);
- ``stores``: + the C tile stores to the thread's tile buffer;
- then whole GEMM calls writing into a preallocated output (no fresh-mapping page faults), which add the
  per-call A copy (+ row sums) and each epilogue: int8 ``s32`` (integer terms only), ``f32`` (dequant),
  ``f32+bias``, ``u8+bias`` / ``s8+bias`` (requant), ``gelu->u8`` (bias, GELU, requant); bf16 ``f32``,
  ``f32+bias``, ``bf16+bias``, ``gelu->bf16``.

    flock /work/bench.lock python benchmarks/amx_gemm.py --out benchmarks/results/amx_gemm
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphopt import _C
from graphopt.runtime import kernels as gk

SHAPES = ((768, 768), (768, 2304), (768, 3072), (3072, 768))


def variants(m: int, k: int, n: int, dtype: str) -> dict[str, Callable[[], object]]:
    """name -> one call, for a random M x K x N problem of this dtype."""
    rng = np.random.default_rng(k + n)
    bias = rng.standard_normal(n).astype(np.float32)
    if dtype == "int8":
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = gk.pack_int8(rng.integers(-127, 128, (k, n), dtype=np.int8), rng.uniform(0.001, 0.01, n).astype(np.float32))
        outs = {t: np.empty((m, n), dtype=t) for t in (np.int32, np.float32, np.uint8, np.int8)}
        q = dict(a_scale=0.02, a_zero_point=128)

        return {
            "products": lambda: _C.amx_stage_seconds(w, m, "products"),
            "stores": lambda: _C.amx_stage_seconds(w, m, "stores"),
            "s32": lambda: _C.gemm_s8(a, w, **q, out_dtype="s32", out=outs[np.int32]),
            "f32": lambda: _C.gemm_s8(a, w, **q, out=outs[np.float32]),
            "f32+bias": lambda: _C.gemm_s8(a, w, **q, bias=bias, out=outs[np.float32]),
            "u8+bias": lambda: _C.gemm_s8(a, w, **q, bias=bias, out_dtype="u8", out_scale=0.05, out_zero_point=128,
                                          out=outs[np.uint8]),
            "s8+bias": lambda: _C.gemm_s8(a, w, **q, bias=bias, out_dtype="s8", out_scale=0.05, out=outs[np.int8]),
            "gelu->u8": lambda: _C.gemm_s8(a, w, **q, bias=bias, activation="gelu", out_dtype="u8", out_scale=0.05,
                                           out_zero_point=3, out=outs[np.uint8]),
        }
    a = gk.to_bf16(rng.standard_normal((m, k)).astype(np.float32))
    w = gk.pack_bf16(gk.to_bf16(rng.standard_normal((k, n)).astype(np.float32)))
    f32, bf = np.empty((m, n), np.float32), np.empty((m, n), np.uint16)
    return {
        "products": lambda: _C.amx_stage_seconds(w, m, "products"),
        "stores": lambda: _C.amx_stage_seconds(w, m, "stores"),
        "f32": lambda: _C.gemm_bf16(a, w, out=f32),
        "f32+bias": lambda: _C.gemm_bf16(a, w, bias=bias, out=f32),
        "bf16+bias": lambda: _C.gemm_bf16(a, w, bias=bias, out_dtype="bf16", out=bf),
        "gelu->bf16": lambda: _C.gemm_bf16(a, w, bias=bias, activation="gelu", out_dtype="bf16", out=bf),
    }


def cpu_peak(kind: str) -> float:
    """The tile unit's peak per second of this thread's CPU time (the C++ loop divides by wall time)."""
    w0, c0 = time.perf_counter(), time.thread_time()
    g = _C.peak_gops(kind, 0.2)
    w, c = time.perf_counter() - w0, time.thread_time() - c0
    return g * w / c if c > 0 else g


def measure(calls: dict[str, Callable[[], object]], rounds: int, reps: int, threads: int) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved round by round: CPU time of the calling thread
    at 1 thread (the machine is shared; another process does not inflate it), else wall time."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = clock()
            inner = 0.0
            for _ in range(reps):
                r = fn()
                inner += r if isinstance(r, float) else 0.0
            # The stage probes time themselves inside the kernel (CPU time per thread, the slowest).
            times[name].append(inner / reps if inner else (clock() - t0) / reps)
    return {name: float(np.median(v)) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["int8", "bf16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None, help="directory for amx_gemm.txt")
    args = ap.parse_args()
    if _C.isa_available() != "amx":
        raise SystemExit("no AMX tiles on this CPU/OS")
    peak = {"int8": max(cpu_peak("int8_amx") for _ in range(3)), "bf16": max(cpu_peak("bf16_amx") for _ in range(3))}
    load0 = os.getloadavg()[0]
    lines = [f"AMX GEMM accounting, M = {args.m}; per-core tile peak GOPS: int8 {peak['int8']:.0f}, "
             f"bf16 {peak['bf16']:.0f}; {args.rounds} interleaved rounds x {args.reps} calls, medians"]
    prev = _C.get_num_threads()
    try:
        for dtype in args.dtypes:
            for t in args.threads:
                _C.set_num_threads(t)
                lines.append(f"\n{dtype}, {t} thread(s): us per call (% of {t} x tile peak)")
                for k, n in SHAPES:
                    med = measure(variants(args.m, k, n, dtype), args.rounds, args.reps, t)
                    gop = 2.0 * args.m * k * n / 1e9
                    cells = [f"{name} {s * 1e6:6.0f} ({100 * gop / s / (peak[dtype] * t):3.0f}%)" for name, s in med.items()]
                    lines.append(f"  {k:>4}x{n:<5}" + "  ".join(cells))
    finally:
        _C.set_num_threads(prev)
    lines.append(f"\nload average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "amx_gemm.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
