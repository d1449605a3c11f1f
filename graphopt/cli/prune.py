"""``graphopt prune``: structured pruning of attention heads and FFN neurons.

    graphopt prune model.onnx --heads 0.25 --ffn 0.25 --calib batches/ -o model.pruned.onnx

A thin layer over :func:`graphopt.prune`; the output is fused (O2) and smaller, and is
quantized, compiled or exported like any other model.
"""

from __future__ import annotations

import argparse

from ._common import add_json, add_output, add_progress, emit, progress, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove attention heads and FFN neurons (calibrated, least-squares refit)")
    p.add_argument("model", help="an .onnx file")
    add_output(p, "output .onnx path", dest="out")
    p.add_argument("--heads", type=float, default=0.0, help="fraction of heads removed in every layer (default 0)")
    p.add_argument("--ffn", type=float, default=0.0, help="fraction of FFN neurons removed in every layer (default 0)")
    p.add_argument("--calib", required=True, help="calibration data: a folder of .npz batches or an .npz file")
    p.add_argument("--no-reconstruct", action="store_true", help="no least-squares refit of the next layers")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import load, save
    from ..io.atomic import refuse_same_file
    from ..pruning import prune

    refuse_same_file(args.model, args.out)
    model = load(args.model)
    model, rep = prune(model, args.calib, heads=args.heads, ffn=args.ffn, reconstruct=not args.no_reconstruct,
                       progress=progress(args))
    out = save(model, args.out)
    result = {"output": str(out), "params_before": rep.params_before, "params_after": rep.params_after,
              "heads": {k: list(v) for k, v in rep.heads.items()},
              "neurons": {k: list(v) for k, v in rep.neurons.items()}, "seconds": round(rep.seconds, 2)}
    emit(args, result)
    if not args.json:
        kept_h = sum(a for _, a in rep.heads.values()), sum(b for b, _ in rep.heads.values())
        kept_n = sum(a for _, a in rep.neurons.values()), sum(b for b, _ in rep.neurons.values())
        say(args, f"wrote {out}: heads {kept_h[0]}/{kept_h[1]}, FFN neurons {kept_n[0]}/{kept_n[1]}, "
              f"parameters {rep.params_after / max(rep.params_before, 1):.1%} of the input ({rep.seconds:.1f} s)")
    return 0
