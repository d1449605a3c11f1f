"""``graphopt bench-kernels``: time our GEMMs against onnxruntime, PyTorch and numpy."""

from __future__ import annotations

import argparse
import math
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-kernels", help="benchmark native GEMM kernels against peers (table, JSON, PNG)")
    p.add_argument("-o", "--output", "--out", dest="out", default="out/bench-kernels", help="directory for results.json and gemm.png")
    p.add_argument("--quick", action="store_true", help="a fast subset of shapes and fewer rounds")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    p.add_argument("--m", type=int, nargs="+", help="M values to run (default: 1 32 128 512)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per shape")
    p.add_argument("--systems", nargs="+", help="only these systems (e.g. ours_int8 ort_matmulinteger)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.set_defaults(func=run)


def _fmt(v: float | None, spec: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def run(args: argparse.Namespace) -> int:
    from ..bench.kernels import BenchConfig, evaluate_targets, plot, run_kernel_bench

    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    if args.threads:
        cfg.threads = tuple(args.threads)
    if args.m:
        cfg.ms = tuple(args.m)
    if args.rounds:
        cfg.rounds = args.rounds
    if args.systems:
        cfg.systems = tuple(args.systems)
    from .._quiet import quiet

    with quiet():  # other libraries' deprecation chatter and onnxruntime's quantizer hint
        report = run_kernel_bench(cfg, progress=lambda s: print(f"  .. {s}", flush=True))
    m = report.machine
    caches = ", ".join(f"{k} {v >> 10} KiB" for k, v in m.get("caches_bytes", {}).items())  # type: ignore[union-attr]
    print(f"\nmachine: {m['cpu']}; {m['logical_cpus']} logical CPUs; {caches}; isa={m['isa_selected']}; "
          f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, numpy {m['numpy']}")
    pk = report.peaks_gops_per_core
    print(f"measured per-core peak GOPS: int8 {pk['int8']:.0f}, bf16 {pk['bf16']:.0f}, fp32 {pk['fp32']:.0f}")
    from ..bench.peers import SYSTEMS
    measured = {r.system for r in report.results}
    for sysd in SYSTEMS:
        if sysd.name in measured:
            print(f"  {sysd.name:>17}: {sysd.note}")
    for k, v in report.skipped.items():
        print(f"skipped/note: {k}: {v}")
    names = [s for s in dict.fromkeys(r.system for r in report.results)]
    hdr = f"{'thr':>3} {'M':>4} {'K':>5} {'N':>5} | " + " ".join(f"{n:>17}" for n in names)
    print("\nGOPS (% of peak) per system; ours also x best peer of the same precision")
    print(hdr)
    print("-" * len(hdr))
    rows: dict[tuple[int, int, int, int], dict[str, object]] = {}
    for r in report.results:
        rows.setdefault((r.threads, r.M, r.K, r.N), {})[r.system] = r
    for key in sorted(rows):
        cells = []
        for n in names:
            r = rows[key].get(n)
            if r is None:
                cells.append(f"{'-':>17}")
                continue
            s = f"{r.gops:.0f}({_fmt(r.pct_peak)}%)"  # type: ignore[attr-defined]
            if r.ours and r.ratio_best_peer is not None:  # type: ignore[attr-defined]
                s += f" x{r.ratio_best_peer:.2f}"  # type: ignore[attr-defined]
            cells.append(f"{s:>17}")
        print(f"{key[0]:>3} {key[1]:>4} {key[2]:>5} {key[3]:>5} | " + " ".join(cells))
    print("\ntargets (worst case over the shapes measured):")
    for t in evaluate_targets(report):
        print(f"  [{'met' if t.met else 'MISSED'}] {t.name}: {t.value:.2f} (goal {t.goal:.2f}); {t.detail}")
    os.makedirs(args.out, exist_ok=True)
    jpath = os.path.join(args.out, "results.json")
    from ..io.atomic import write_text

    write_text(jpath, report.to_json())
    print(f"\nwrote {jpath}")
    if not args.no_plot:
        ppath = os.path.join(args.out, "gemm.png")
        plot(report, ppath)
        print(f"wrote {ppath}")
    return 0
