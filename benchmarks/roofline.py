"""Roofline account of a transformer's run per precision (issue 12): what the GEMMs must cost at the
measured per-core peak, against what graphopt and OpenVINO spend, per part.

For DistilBERT (or MiniLM) in the default export form at ``--batch`` x ``--seq``:

- **GEMM work** from the O2 graph: 2*M*K*N for every constant-weight GEMM (M = batch x seq; the
  packed Q/K/V projection included), and the attention products (QK^T and PV, 4*B*S*S*hidden).
- **Per-core peaks** of register-resident loops (``_C.peak_gops``, best of 3 bursts): int8 on
  AMX tiles (``tdpbusd``) and AVX-512 VNNI, bf16 on AMX (``tdpbf16ps``) and AVX512-BF16, fp32 FMA.
  The minimum GEMM time of a precision is its GEMM work at the best unit's peak: no system can run
  the model's GEMMs faster on one core, whatever it does around them.
- **Times**: graphopt fp32 / bf16 / int8 static (the bench's QDQ model) / int8 dynamic and OpenVINO
  fp32 / bf16 / int8 (NNCF PTQ on the same calibration sentences), built as ``graphopt bench`` builds
  them, timed in interleaved rounds (~150 ms pause before each system), medians of process CPU time
  (at 1 thread: the run's own work, which other processes on a shared machine barely move) and wall.
- **Parts**: graphopt's per-step profile (``Session.profile``: Linear = GEMMs with their fused
  epilogues, Attention + PaddingMask = attention, everything else = the rest), OpenVINO's
  ``PERF_COUNT`` profile (FullyConnected = GEMMs; MatMul, Softmax and fused attention nodes =
  attention; the rest), each scaled to its system's median CPU time.

Then, per precision: the goal (int8 <= 0.8x OpenVINO+NNCF, bf16 <= 0.85x OpenVINO bf16, fp32 <= 0.9x
OpenVINO fp32) in ms, and whether it lies below the GEMM minimum (then the goal is not reachable
without skipping work) or what is left for graphopt to cut.

    flock /work/bench.lock python benchmarks/roofline.py --model distilbert --batch 8 --out benchmarks/results/roofline
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import graphopt
from graphopt import _C
from graphopt.bench.models import _Builder, _feeds, _spec
from graphopt.runtime.compile import prepare

GEMM_OPS = ("MatMul", "Gemm", "graphopt::Linear", "graphopt::FusedLinear", "graphopt::MultiHeadAttention")
#: precision -> (graphopt system, OpenVINO system, goal ratio, peak kinds of the units that can run it)
PRECISIONS = {
    "int8": ("graphopt-int8s", "ov-int8", 0.80, ("int8_amx", "int8_vnni")),
    "int8 dynamic": ("graphopt-int8", "ov-int8", 0.80, ("int8_amx", "int8_vnni")),
    "bf16": ("graphopt-bf16", "ov-bf16", 0.85, ("bf16_amx", "bf16")),
    "fp32": ("graphopt-fp32", "ov-fp32", 0.90, ("fp32_avx512",)),
}
PARTS = ("gemm", "attention", "rest")


def gemm_work(spec, rows: int, batch: int, seq: int) -> tuple[float, float]:
    """(GOP of the constant-weight GEMMs, GOP of the attention products) for ``rows`` = batch x seq."""
    m = prepare(spec, "O2")
    gemm = attn = 0.0
    for n in m.graph:
        if n.op not in GEMM_OPS and n.op_type not in GEMM_OPS:
            continue
        w = n.inputs[1].const if len(n.inputs) > 1 and n.inputs[1] is not None else None
        if w is None or w.ndim != 2:
            continue
        gemm += 2.0 * rows * w.shape[0] * w.shape[1]
        if n.op_type == "MultiHeadAttention":
            attn += 4.0 * batch * seq * seq * w.shape[0]
    return gemm / 1e9, attn / 1e9


def _peak(kind: str, seconds: float) -> float:
    """GOPS per second of this thread's CPU time: the C++ loop divides by wall time, which a shared
    machine stretches (as the systems' times below, the peak is taken on CPU time)."""
    w0, c0 = time.perf_counter(), time.thread_time()
    g = _C.peak_gops(kind, seconds)
    w, c = time.perf_counter() - w0, time.thread_time() - c0
    return g * w / c if c > 0 else g


def peaks(seconds: float) -> dict[str, float]:
    kinds = ("int8_amx", "int8_vnni", "bf16_amx", "bf16", "fp32_avx512")
    return {k: max(_peak(k, seconds / 3) for _ in range(3)) for k in kinds}


def graphopt_part(kind: str) -> str:
    return "gemm" if kind == "Linear" else "attention" if kind in ("Attention", "PaddingMask") else "rest"


def ov_part(node_type: str) -> str:
    t = node_type.lower()
    if t == "fullyconnected":
        return "gemm"
    if t in ("matmul", "softmax") or "attn" in t or "mha" in t or "sdpa" in t:
        return "attention"
    return "rest"


def fractions(rows: list[tuple[str, float]]) -> dict[str, float]:
    tot = sum(t for _, t in rows) or 1.0
    return {p: sum(t for q, t in rows if q == p) / tot for p in PARTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="distilbert")
    ap.add_argument("--export-form", default="sdpa-dynamo")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.15)
    ap.add_argument("--peak-seconds", type=float, default=0.9)
    ap.add_argument("--out", default="benchmarks/results/roofline")
    args = ap.parse_args()

    spec = _spec(args.model, args.export_form)
    feeds = _feeds(spec, args.batch, args.seq)
    rows = args.batch * args.seq
    gemm_gop, attn_gop = gemm_work(spec, rows, args.batch, args.seq)
    pk = peaks(args.peak_seconds)
    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="graphopt-roofline-") as tmp:
        b = _Builder(spec, Path(tmp))
        runners, parts = {}, {}
        for name in sorted({s for g, o, _, _ in PRECISIONS.values() for s in (g, o)}):
            if name.startswith("graphopt-"):
                prec = name.split("-")[1]
                sess = graphopt.compile(b.static_int8(), precision="int8", num_threads=args.threads, level="O0") \
                    if name == "graphopt-int8s" else graphopt.compile(spec, precision=prec, num_threads=args.threads)
                runners[name] = lambda f, s=sess: s.run(f)[0]
                parts[name] = fractions([(graphopt_part(k), us) for k, _, us in sess.profile(feeds, repeats=3)])
            else:
                import openvino as ov

                model = b.nncf_int8() if name == "ov-int8" else str(spec.path)
                cfg = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                       "PERF_COUNT": True}
                if name != "ov-int8":
                    cfg["INFERENCE_PRECISION_HINT"] = {"ov-fp32": "f32", "ov-bf16": "bf16"}[name]
                cm = ov.Core().compile_model(model, "CPU", cfg)
                req, out = cm.create_infer_request(), cm.outputs[0]
                runners[name] = lambda f, r=req, o=out: r.infer(f)[o]
                runners[name](feeds)
                prof = [(ov_part(p.node_type), p.real_time.total_seconds()) for p in req.get_profiling_info()]
                parts[name] = fractions(prof)
            runners[name](feeds)
        cpu: dict[str, list[float]] = {n: [] for n in runners}
        wall: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(args.rounds):
            for n, fn in runners.items():
                time.sleep(args.pause)
                c0, t0 = time.process_time(), time.perf_counter()
                fn(feeds)
                cpu[n].append((time.process_time() - c0) * 1e3)
                wall[n].append((time.perf_counter() - t0) * 1e3)
    med = {n: float(np.median(v)) for n, v in cpu.items()}
    medw = {n: float(np.median(v)) for n, v in wall.items()}

    lines = [f"{spec.name} ({args.export_form}), batch {args.batch} x seq {args.seq}, {args.threads} thread(s); "
             f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; CPU {_C.cpu_features().get('brand', '')}",
             f"GEMM work {gemm_gop:.1f} GOP (+ attention products {attn_gop:.2f} GOP); per-core peaks GOPS: " +
             ", ".join(f"{k} {v:.0f}" for k, v in pk.items()),
             "",
             f"{'precision':<13}{'system':<16}{'CPU ms':>8}{'wall ms':>9}{'GEMMs':>8}{'attn':>7}{'rest':>7}"
             f"{'GEMM min':>10}{'GEMM % pk':>10}"]
    result = {"model": spec.name, "export_form": args.export_form, "batch": args.batch, "seq": args.seq,
              "threads": args.threads, "loadavg": [load0, os.getloadavg()[0]], "gemm_gop": gemm_gop,
              "attention_gop": attn_gop, "peaks_gops": pk, "cpu_ms": med, "wall_ms": medw, "parts": parts,
              "verdicts": {}}
    for prec, (g, o, goal, units) in PRECISIONS.items():
        best = max(units, key=lambda u: pk.get(u, 0.0))
        gmin = gemm_gop / pk[best] * 1e3 if pk.get(best) else float("nan")
        for n in (g, o):
            if n not in med or (prec == "int8 dynamic" and n == o):
                continue
            p = {k: v * med[n] for k, v in parts[n].items()}
            lines.append(f"{prec:<13}{n:<16}{med[n]:8.1f}{medw[n]:9.1f}{p['gemm']:8.1f}{p['attention']:7.1f}"
                         f"{p['rest']:7.1f}{gmin:10.1f}{100 * gmin / p['gemm']:9.0f}%")
        if g in med and o in med:
            target = goal * med[o]
            cut = med[g] - target
            g_parts = {k: v * med[g] for k, v in parts[g].items()}
            floor = gmin + 0.0
            reachable = target > floor
            verdict = (f"{prec}: {med[g] / med[o]:.2f}x {o} (goal {goal}x = {target:.1f} ms); the GEMMs alone need >= "
                       f"{gmin:.1f} ms at the {best} peak: " +
                       (f"reachable in principle; {max(cut, 0):.1f} ms to cut (graphopt GEMMs {g_parts['gemm']:.1f} = "
                        f"{100 * gmin / g_parts['gemm']:.0f}% of peak, attention {g_parts['attention']:.1f}, "
                        f"rest {g_parts['rest']:.1f})" if reachable else
                        "NOT reachable without skipping work"))
            result["verdicts"][prec] = {"ratio": med[g] / med[o], "goal_ms": target, "gemm_min_ms": gmin,
                                        "unit": best, "reachable": reachable, "to_cut_ms": cut}
            lines.append("  " + verdict)
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.model}-b{args.batch}-t{args.threads}"
    (out / f"{stem}.txt").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
