"""``graphopt run``: the main job on a model (default: the bundled all-MiniLM-L6-v2).

Stages: import -> verify -> shape inference -> summary -> export -> check in
onnxruntime against the original on real sentences.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Graph compilers fuse operators so that fewer kernels touch memory.",
    "She planted tomatoes in the garden after the last frost of spring.",
    "Quantization trades a little accuracy for a large gain in speed.",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="main job: import, check and export a model (default: bundled MiniLM)")
    p.add_argument("model", nargs="?", help="an .onnx file (default: the bundled all-MiniLM-L6-v2, exported with torch)")
    p.add_argument("-o", "--out", default="out", help="output folder (default: out/)")
    p.add_argument("--seq", type=int, default=128, help="sequence length of the check inputs")
    p.set_defaults(func=run)


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # No ORT graph rewrites: the check compares the two graphs as written.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def run(args: argparse.Namespace) -> int:
    from ..io import infer_shapes, load, save
    from ..ir.summary import format_summary, summarize

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model:
        src = Path(args.model)
        feeds = None
    else:
        from ..models import minilm_onnx, sample_feeds

        t = time.perf_counter()
        spec = minilm_onnx()
        src = spec.path
        print(f"[1/5] bundled all-MiniLM-L6-v2 exported to ONNX: {src} ({time.perf_counter() - t:.1f} s)")
        feeds = sample_feeds(spec, _SENTENCES, seq=args.seq)

    t = time.perf_counter()
    model = load(src)
    model.verify()
    print(f"[2/5] imported and verified {src.name}: {len(model.graph)} nodes ({time.perf_counter() - t:.2f} s)")
    t = time.perf_counter()
    infer_shapes(model)
    known = sum(1 for n in model.graph for o in n.outputs if o.shape is not None)
    total = sum(len(n.outputs) for n in model.graph)
    print(f"[3/5] shape inference: {known}/{total} values typed ({time.perf_counter() - t:.2f} s)")
    print(format_summary(summarize(model)))
    dst = save(model, out / (src.stem + ".roundtrip.onnx"))
    print(f"[4/5] exported {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")

    if feeds is None:
        feeds = _random_feeds(model)
    a, b = _ort_run(src, feeds), _ort_run(dst, feeds)
    diff = max(float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
               for x, y in zip(a, b))
    ok = diff == 0.0
    print(f"[5/5] onnxruntime (graph optimizations off), original vs round trip on {len(next(iter(feeds.values())))} inputs: "
          f"max |diff| = {diff:.3g} -> {'identical' if ok else 'DIFFERENT'}")
    return 0 if ok else 1


def _random_feeds(model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for v in model.graph.inputs:
        if v.is_initializer:
            continue
        shape = tuple(d if isinstance(d, int) else 1 for d in (v.shape or ()))
        dt = v.dtype.numpy
        feeds[v.name] = (rng.standard_normal(shape).astype(dt) if dt.kind == "f"
                         else rng.integers(0, 2, size=shape).astype(dt))
    return feeds
