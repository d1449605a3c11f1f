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

import numpy as np

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="main job: import, optimize, quantize, compile and benchmark "
                                   "(default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("model", nargs="?", help="an .onnx encoder (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("-o", "--out", default="out", help="output folder (default: out/)")
    p.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    p.add_argument("--eval", type=int, default=100, help="evaluation sentences for int8 fidelity (default 100)")
    p.add_argument("--no-bench", action="store_true", help="skip the side-by-side timing")
    p.set_defaults(func=run)


def _ort(path_or_proto, feeds: dict[str, np.ndarray], optimize: bool = False) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:  # compare graphs as written, not after onnxruntime's own rewrites
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = str(path_or_proto) if isinstance(path_or_proto, Path) else path_or_proto.SerializeToString()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    e = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def run(args: argparse.Namespace) -> int:
    from ..data import sentences
    from ..io import load, save, to_onnx
    from ..ir.clone import clone
    from ..models import minilm_onnx, sample_feeds
    from ..ops import lower_to_onnxruntime
    from ..pm import PassManager

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if args.model:
        src = Path(args.model)
        spec = None
        print(f"[1/4] model {src}")
    else:
        spec = minilm_onnx()
        src = spec.path
        print(f"[1/4] bundled all-MiniLM-L6-v2 (real weights) exported to ONNX: {src} "
              f"({time.perf_counter() - t:.1f} s)")
    model = load(src)
    model.verify()
    names = tuple(v.name for v in model.graph.inputs if not v.is_initializer)
    spec = spec or _spec_for(src, names)
    feeds = sample_feeds(spec, sentences("eval", limit=8), seq=args.seq)
    rt = save(model, out / f"{src.stem}.roundtrip.onnx")
    same = all(np.array_equal(a, b) for a, b in zip(_ort(src, feeds), _ort(rt, feeds)))
    print(f"      imported and verified: {len(model.graph)} nodes; ONNX round trip "
          f"{'bit-identical in onnxruntime' if same else 'DIFFERS'}")
    if not same:
        return 1

    # --- 2. optimize -------------------------------------------------------------
    fp32 = clone(model)
    result = PassManager.from_text("O2")(model)
    lowered = clone(model)
    lower_to_onnxruntime(lowered)
    opt_path = save(lowered, out / f"{src.stem}.O2.onnx")
    ref = _ort(src, feeds)[0]
    diff = float(np.max(np.abs(_ort(opt_path, feeds)[0] - ref)))
    fused = ", ".join(f"{op.split('::')[1]}×{n}" for op, n in model.graph.op_counts().items() if "::" in op)
    print(f"[2/4] O2: {result.nodes_before} -> {result.nodes_after} nodes in {result.seconds:.2f} s; "
          f"fused: {fused or 'nothing'}; max |diff| vs original {diff:.2g}; wrote {opt_path}")

    # --- 3. quantize -------------------------------------------------------------
    from ..quant.api import quantize

    calib = sample_feeds(spec, sentences("calib", limit=100), seq=args.seq)
    calib_batches = [{k: v[i:i + 8] for k, v in calib.items()} for i in range(0, len(calib[names[0]]), 8)]
    q_model = clone(fp32)
    PassManager.from_text("O1")(q_model)
    t = time.perf_counter()
    q_model, qrep = quantize(q_model, data=calib_batches, progress=True)
    q_path = save(q_model, out / f"{src.stem}.int8.onnx")
    ev = sample_feeds(spec, sentences("eval", limit=args.eval), seq=args.seq)
    e_ref = _pooled(_ort(src, ev)[0], ev["attention_mask"])
    e_q = _pooled(_ort(q_path, ev, optimize=True)[0], ev["attention_mask"])
    cos = (e_ref * e_q).sum(1)
    ratio = q_path.stat().st_size / Path(src).stat().st_size
    print(f"[3/4] static int8 (SmoothQuant, {len(calib[names[0]])} calibration sentences, "
          f"{time.perf_counter() - t:.1f} s): cosine to fp32 on {len(cos)} eval sentences "
          f"mean {cos.mean():.4f} min {cos.min():.4f}; file {ratio:.1%} of fp32; wrote {q_path}")

    if args.no_bench:
        return 0
    # --- 4. compile + side by side ------------------------------------------------
    from ..bench.models import BenchConfig, plot, run_model_bench
    from .bench import print_report

    cfg = BenchConfig.quick(str(src) if args.model else "minilm")
    cfg.seq = args.seq
    cfg.threads = (os.cpu_count() or 1,)
    print("[4/4] native runtime vs onnxruntime / OpenVINO / PyTorch (batch 1, all threads):")
    rep = run_model_bench(cfg, progress=lambda s: print(f"      .. {s}", flush=True))
    print_report(rep)
    png = out / "latency.png"
    plot(rep, png)
    print(f"wrote {png}")
    return 0


def _spec_for(path: Path, names: tuple[str, ...]):
    from ..models import ModelSpec

    return ModelSpec(path, names, path.stem)
