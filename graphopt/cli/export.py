"""``graphopt export``: ``graphopt.export`` -- optimize at a level, write ONNX or OpenVINO IR, read it back.

    graphopt export model.onnx --to openvino -o out/model.xml --precision bf16
    graphopt export model.onnx --to onnx -o out/model.opt.onnx --level O2 --check

``--check`` runs the original (onnxruntime, rewrites off) and the export on the same random
inputs. Its default bound fits the model: 1e-4 for a float model, 3e-2 for bf16 and for a
quantized (QDQ) model, whose export may requantize in a different order.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ._common import add_json, add_level, add_output, emit, ignored, say

_OPENVINO_ONLY = ("precision", "compress_to_fp16")


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write a model as ONNX or OpenVINO IR (.xml/.bin), read back by its target")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--to", choices=("openvino", "onnx"), required=True, help="target format")
    add_output(p, "output path (.xml for openvino, .onnx for onnx)")
    add_level(p, "pass pipeline before export (O0 as imported, O1 cleanup, O2 + fusions: fused ops become "
                 "onnxruntime contrib ops for --to onnx and standard ONNX for --to openvino)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="--to openvino: execution precision recorded in the IR (INFERENCE_PRECISION_HINT)")
    p.add_argument("--compress-to-fp16", action="store_true",
                   help="--to openvino: store fp32 weights as fp16 (off: keeps graphopt's precisions)")
    p.add_argument("--check", action="store_true",
                   help="run the original and the export on the same random inputs; exit 1 if "
                        "max|diff|/max|ref| exceeds --tol")
    p.add_argument("--tol", type=float, default=None,
                   help="--check bound (default: 1e-4; 3e-2 for --precision bf16 or a quantized model)")
    add_json(p)
    p.set_defaults(func=run, _defaults={"precision": None, "compress_to_fp16": False, "tol": None})


def run(args: argparse.Namespace) -> int:
    import graphopt
    from ..errors import UsageError
    from ..io.atomic import refuse_same_file

    out = Path(args.output)
    if args.to == "openvino" and out.suffix != ".xml":
        raise UsageError(f"--to openvino writes .xml/.bin; -o must end in .xml, got {out}")
    refuse_same_file(args.model, out)
    if args.to == "onnx":
        ignored(args, args._defaults, _OPENVINO_ONLY, "it applies to --to openvino")
        precision, fp16 = None, False
    else:
        precision, fp16 = args.precision, args.compress_to_fp16
    if not args.check:
        ignored(args, args._defaults, ("tol",), "it applies with --check")
    t = time.perf_counter()
    model = graphopt.load(args.model)
    model.verify()
    say(args, f"imported {args.model}: {len(model.graph)} nodes ({time.perf_counter() - t:.2f} s)")
    t = time.perf_counter()
    dst = graphopt.export(model, out, target=args.to, level=args.level, precision=precision, compress_to_fp16=fp16)
    seconds = time.perf_counter() - t
    say(args, f"{args.level}, wrote {dst} and read it back with {'onnxruntime' if args.to == 'onnx' else 'OpenVINO'} "
              f"({seconds:.2f} s)")
    result: dict[str, Any] = {"model": args.model, "output": str(dst), "target": args.to, "level": args.level,
                              "seconds": seconds}
    status = 0
    if args.check:
        result["check"] = check(model, dst, args)
        status = 0 if result["check"]["ok"] else 1
    emit(args, result)
    return status


def check(model: Any, dst: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Compare the export with the original on random inputs (symbolic dims = 2)."""
    import numpy as np

    from .._ort import run_ort
    from ..api import has_qdq
    from ..feeds import random_feeds

    feeds = random_feeds(model, dim=2)
    want = run_ort(args.model, feeds)
    if args.to == "onnx":
        got = run_ort(dst, feeds)
    else:
        from ..backends.openvino import compile_for_cpu, infer

        got = infer(compile_for_cpu(dst, precision=args.precision or "fp32"), feeds)
    rel = max((float(np.abs(g.astype(np.float64) - w).max() / max(float(np.abs(w).max()), 1e-30))
               for g, w in zip(got, want) if w.size and w.dtype.kind == "f"), default=0.0)
    exact = all(np.array_equal(g, w) for g, w in zip(got, want) if w.dtype.kind != "f")
    tol = args.tol if args.tol is not None else (3e-2 if args.precision == "bf16" or has_qdq(model) else 1e-4)
    ok = rel <= tol and exact and len(got) == len(want)
    say(args, f"check: {len(want)} output(s), max|diff|/max|ref| = {rel:.3g} (bound {tol:g})"
              f"{'' if exact else ', integer outputs differ'} -> {'ok' if ok else 'FAILED'}")
    return {"outputs": len(want), "max_rel_diff": rel, "tol": tol, "integer_outputs_equal": exact, "ok": ok}
