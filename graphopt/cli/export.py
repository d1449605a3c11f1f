"""``graphopt export``: import a model, optimize it at a level, write ONNX or OpenVINO IR.

    graphopt export model.onnx --to openvino -o out/model.xml --precision bf16
    graphopt export model.onnx --to onnx -o out/model.opt.onnx --level O2
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LEVELS = ("O0", "O1", "O2")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model as ONNX or OpenVINO IR (.xml/.bin)")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--to", choices=("openvino", "onnx"), required=True, help="target format")
    p.add_argument("-o", "--out", required=True, help="output path (.xml for openvino, .onnx for onnx)")
    p.add_argument("--level", choices=LEVELS, default="O1",
                   help="pass pipeline before export (O0: as imported; default O1). Fused graphopt ops "
                        "(O2) are lowered to onnxruntime contrib ops for --to onnx and decomposed to "
                        "standard ONNX for --to openvino")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="OpenVINO execution precision recorded in the IR (INFERENCE_PRECISION_HINT)")
    p.add_argument("--compress-to-fp16", action="store_true",
                   help="OpenVINO: store fp32 weights as fp16 (off by default: keeps graphopt's precisions)")
    p.add_argument("--check", action="store_true",
                   help="run the original (onnxruntime, rewrites off) and the export on the same random inputs "
                        "and fail if max|diff|/max|ref| exceeds --tol")
    p.add_argument("--tol", type=float, default=None,
                   help="--check bound (default 1e-4; 3e-2 for --precision bf16)")
    p.set_defaults(func=run)


def optimize(model: Any, level: str) -> tuple[Any, str]:
    """Run the preset pipeline for ``level`` (graphopt.pm's PassManager) in place.
    Returns the model and a one-line description of what ran."""
    if level == "O0":
        return model, "O0: no passes"
    from ..pm import PassManager

    pm = PassManager.from_text(level)
    result = pm(model)
    logger.info("%s", result.table())
    text = pm.pipeline_text()
    return model, f"{level}: {text if len(text) <= 100 else text[:97] + '...'}"


def run(args: argparse.Namespace) -> int:
    from ..errors import GraphoptError
    from ..io import load, save

    from ..io.atomic import refuse_same_file

    out = Path(args.out)
    if args.to == "openvino" and out.suffix != ".xml":
        raise GraphoptError(f"--to openvino writes .xml/.bin; -o must end in .xml, got {out}")
    refuse_same_file(args.model, out)
    if args.precision and args.to != "openvino":
        raise GraphoptError("--precision applies to --to openvino (ONNX carries precision in the graph)")
    t = time.perf_counter()
    model = load(args.model)
    model.verify()
    print(f"imported {args.model}: {len(model.graph)} nodes ({time.perf_counter() - t:.2f} s)")
    t = time.perf_counter()
    model, what = optimize(model, args.level)
    print(f"{what} -> {len(model.graph)} nodes ({time.perf_counter() - t:.2f} s)")
    t = time.perf_counter()
    if args.to == "onnx":
        from ..io import from_onnx
        from .optimize import onnx_for_onnxruntime  # fused graphopt ops -> contrib/standard ONNX

        dst = save(from_onnx(onnx_for_onnxruntime(model)), out)
    else:
        from ..backends.openvino import export_openvino

        dst = export_openvino(model, out, precision=args.precision, compress_to_fp16=args.compress_to_fp16)
    print(f"wrote {dst} ({time.perf_counter() - t:.2f} s)")
    if args.check:
        return check(Path(args.model), dst, args)
    return 0


def check(src: Path, dst: Path, args: argparse.Namespace) -> int:
    """Compare the export with the original on random inputs (symbolic dims = 2)."""
    import numpy as np

    from ..io import load
    from ..pattern.testing import random_feeds

    feeds = random_feeds(load(src), dim=2)
    want = _ort(src, feeds)
    if args.to == "onnx":
        got = _ort(dst, feeds)
    else:
        from ..backends.openvino import compile_for_cpu, infer

        got = infer(compile_for_cpu(dst, precision=args.precision or "fp32"), feeds)
    rel = max((float(np.abs(g.astype(np.float64) - w).max() / max(float(np.abs(w).max()), 1e-30))
               for g, w in zip(got, want) if w.size and w.dtype.kind == "f"), default=0.0)
    exact = all(np.array_equal(g, w) for g, w in zip(got, want) if w.dtype.kind != "f")
    tol = args.tol if args.tol is not None else (3e-2 if args.precision == "bf16" else 1e-4)
    ok = rel <= tol and exact and len(got) == len(want)
    print(f"check: {len(want)} output(s), max|diff|/max|ref| = {rel:.3g} (bound {tol:g})"
          f"{'' if exact else ', integer outputs differ'} -> {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def _ort(path: Path, feeds: dict[str, Any]) -> list[Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare graphs as written
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
