"""``graphopt run``: the main job, on a model (default: the bundled all-MiniLM-L6-v2).

The whole story in one command:

1. import the model (the bundled MiniLM is exported from its real weights with torch),
   verify it and check the ONNX round trip is exact;
2. optimize with ``O2`` (cleanup + transformer fusions) and check it against the original;
3. quantize to static int8 (SmoothQuant, calibrated on the shipped calibration sentences) and
   measure fidelity on shipped evaluation sentences;
4. compile for the native runtime (fp32, bf16, int8) and time it side by side with
   onnxruntime and OpenVINO (``graphopt bench``'s machinery), printing a table and saving a chart.

``--no-bench`` stops after step 3.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._common import add_json, add_output, add_progress, emit, progress, say

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="main job: import, optimize, quantize, compile and benchmark "
                                   "(default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("model", nargs="?", help="an .onnx encoder (default: the bundled all-MiniLM-L6-v2)")
    add_output(p, "output folder (round trip, O2 and int8 models, latency.png)", required=False, default="out")
    p.add_argument("--seq", type=int, default=128, help="sequence length")
    p.add_argument("--eval", type=int, default=100, help="evaluation sentences for int8 fidelity")
    p.add_argument("--no-bench", action="store_true", help="skip the side-by-side timing (step 4)")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def run(args: argparse.Namespace) -> int:
    import graphopt
    from .._ort import run_ort
    from ..data import sentences
    from ..models import minilm_onnx, sample_feeds
    from ..pm import Timing

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    t = time.perf_counter()
    if args.model:
        src = Path(args.model)
        spec = None
        say(args, f"[1/4] model {src}")
    else:
        say(args, "[1/4] exporting the bundled all-MiniLM-L6-v2 (real weights) to ONNX (cached after the first run)")
        spec = minilm_onnx()
        src = spec.path
        say(args, f"      {src} ({time.perf_counter() - t:.1f} s)")
    model = graphopt.load(src)
    model.verify()
    names = tuple(v.name for v in model.graph.inputs if not v.is_initializer)
    spec = spec or _spec_for(src, names)
    feeds = sample_feeds(spec, sentences("eval", limit=8), seq=args.seq)
    rt = graphopt.save(model, out / f"{src.stem}.roundtrip.onnx")
    same = all(np.array_equal(a, b) for a, b in zip(run_ort(src, feeds), run_ort(rt, feeds)))
    result["import"] = {"model": str(src), "nodes": len(model.graph), "roundtrip_identical": same}
    say(args, f"      imported and verified: {len(model.graph)} nodes; ONNX round trip "
              f"{'bit-identical in onnxruntime' if same else 'DIFFERS'}")
    if not same:
        emit(args, result)
        return 1

    # --- 2. optimize -------------------------------------------------------------
    timing = Timing()
    t = time.perf_counter()
    optimized = graphopt.optimize(model, "O2", instruments=[timing])
    seconds = time.perf_counter() - t
    opt_path = graphopt.save(optimized, out / f"{src.stem}.O2.onnx")  # fused ops as onnxruntime contrib ops
    ref = run_ort(src, feeds)[0]
    diff = float(np.max(np.abs(run_ort(opt_path, feeds)[0] - ref)))
    fused = {op.split("::")[1]: n for op, n in optimized.graph.op_counts().items() if "::" in op}
    result["optimize"] = {"nodes_before": len(model.graph), "nodes_after": len(optimized.graph), "fused": fused,
                          "max_abs_diff": diff, "output": str(opt_path), "seconds": seconds}
    say(args, f"[2/4] O2: {len(model.graph)} -> {len(optimized.graph)} nodes in {seconds:.2f} s; fused: "
              f"{', '.join(f'{k}×{v}' for k, v in fused.items()) or 'nothing'}; max |diff| vs original {diff:.2g}; "
              f"wrote {opt_path}")

    # --- 3. quantize -------------------------------------------------------------
    calib = sample_feeds(spec, sentences("calib", limit=100), seq=args.seq)
    count = len(calib[names[0]])
    calib_batches = [{k: v[i:i + 8] for k, v in calib.items()} for i in range(0, count, 8)]
    say(args, f"[3/4] static int8 (SmoothQuant): calibrating on {count} sentences")
    t = time.perf_counter()
    q_model = graphopt.quantize(graphopt.optimize(model, "O1"), calib_batches, progress=progress(args))
    q_path = graphopt.save(q_model, out / f"{src.stem}.int8.onnx")
    seconds = time.perf_counter() - t
    ev = sample_feeds(spec, sentences("eval", limit=args.eval), seq=args.seq)
    e_ref = _pooled(run_ort(src, ev)[0], ev["attention_mask"])
    e_q = _pooled(run_ort(q_path, ev, optimize=True)[0], ev["attention_mask"])
    cos = (e_ref * e_q).sum(1)
    from ..quant.report import file_bytes

    ratio = file_bytes(q_path) / file_bytes(src)
    result["quantize"] = {"calibration_sentences": count, "seconds": seconds, "eval_sentences": len(cos),
                          "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "size_ratio": ratio,
                          "output": str(q_path)}
    say(args, f"      {seconds:.1f} s: cosine to fp32 on {len(cos)} eval sentences mean {cos.mean():.4f} "
              f"min {cos.min():.4f}; file {ratio:.1%} of fp32; wrote {q_path}")

    if args.no_bench:
        emit(args, result)
        return 0
    # --- 4. compile + side by side ------------------------------------------------
    from .._quiet import quiet
    from ..bench.models import BenchConfig, plot, run_model_bench
    from .bench import print_report

    cfg = BenchConfig.quick(str(src) if args.model else "minilm")
    cfg.seq = args.seq
    cfg.threads = (os.cpu_count() or 1,)
    say(args, "[4/4] native runtime vs onnxruntime / OpenVINO / PyTorch (batch 1, all threads):")
    with quiet():  # other libraries' deprecation chatter and onnxruntime's quantizer hint
        rep = run_model_bench(cfg, progress=lambda s: say(args, f"      .. {s}"))
    if not args.json and not args.quiet:
        print_report(rep)
    png = out / "latency.png"
    plot(rep, png)
    result["bench"] = rep.to_json()
    say(args, f"wrote {png}")
    emit(args, result)
    return 0


def _spec_for(path: Path, names: tuple[str, ...]):
    from ..models import ModelSpec

    return ModelSpec(path, names, path.stem)
