"""``graphopt prune``: structured pruning of attention heads and FFN neurons, and weight sparsity.

    graphopt prune model.onnx --heads 0.25 --ffn 0.25 --calib batches/ -o model.pruned.onnx
    graphopt prune model.onnx --sparsity 0.8 --pattern 4x1 --scope layer -o model.sparse.onnx

A thin layer over :func:`graphopt.prune`; the output is brought to ``--level`` (O2: fused) and
is quantized, compiled or exported like any other model. 4x1-sparse weights are marked in the
file for the native sparse int8 kernel.
"""

from __future__ import annotations

import argparse

from ._common import add_json, add_level, add_output, add_progress, emit, progress, say, usage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove attention heads and FFN neurons (calibrated, least-squares refit); "
                                     "magnitude sparsity (unstructured, 2:4, 4x1)")
    p.add_argument("model", help="an .onnx file")
    add_output(p, "output .onnx path", dest="out")
    p.add_argument("--heads", type=float, default=0.0, help="fraction of heads removed in every layer (default 0)")
    p.add_argument("--ffn", type=float, default=0.0, help="fraction of FFN neurons removed in every layer (default 0)")
    p.add_argument("--calib", help="calibration data: a folder of .npz batches or an .npz file (needed for "
                                   "--heads/--ffn; with --sparsity it enables the least-squares refit)")
    p.add_argument("--no-reconstruct", action="store_true",
                   help="no least-squares refit (of the layers after removed heads/neurons, of sparse weights)")
    p.add_argument("--sparsity", type=float, default=0.0,
                   help="fraction of the linear weights set to zero by magnitude (4x1: of the blocks; default 0)")
    p.add_argument("--pattern", choices=("unstructured", "2:4", "4x1"), default="unstructured",
                   help="sparsity pattern (default unstructured; 2:4 is always 50%%; 4x1 runs on the sparse int8 kernel)")
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="layer: the same ratio in every weight; global: one magnitude ranking (default layer)")
    add_level(p, "pass pipeline before pruning: O0 as imported, O1 cleanup, O2 cleanup + fusions (default)")
    add_progress(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import load, save
    from ..io.atomic import refuse_same_file
    from ..pruning import prune

    if (args.heads or args.ffn) and not args.calib:
        raise usage("--heads/--ffn need --calib (calibration batches)")
    if not (args.heads or args.ffn or args.sparsity or args.pattern == "2:4"):
        raise usage("nothing to do: give --heads, --ffn or --sparsity")
    refuse_same_file(args.model, args.out)
    model = load(args.model)
    model, rep = prune(model, args.calib, heads=args.heads, ffn=args.ffn, reconstruct=not args.no_reconstruct,
                       sparsity=args.sparsity, pattern=args.pattern, scope=args.scope, level=args.level,
                       progress=progress(args))
    out = save(model, args.out)
    result = {"output": str(out), "params_before": rep.params_before, "params_after": rep.params_after,
              "heads": {k: list(v) for k, v in rep.heads.items()},
              "neurons": {k: list(v) for k, v in rep.neurons.items()}, "seconds": round(rep.seconds, 2)}
    if rep.sparsity is not None:
        result["sparsity"] = rep.sparsity.as_dict()
    emit(args, result)
    if not args.json:
        kept_h = sum(a for _, a in rep.heads.values()), sum(b for b, _ in rep.heads.values())
        kept_n = sum(a for _, a in rep.neurons.values()), sum(b for b, _ in rep.neurons.values())
        text = (f"wrote {out}: heads {kept_h[0]}/{kept_h[1]}, FFN neurons {kept_n[0]}/{kept_n[1]}, "
                f"parameters {rep.params_after / max(rep.params_before, 1):.1%} of the input")
        if rep.sparsity is not None:
            sp = rep.sparsity
            marked = sum(1 for x in sp.layers if x.mark)
            text += (f"; linear weights {sp.sparsity:.1%} zero ({args.pattern}, {args.scope}), {marked} of "
                     f"{len(sp.layers)} on the sparse int8 kernel, int8 size {sp.int8_bytes / 1e6:.1f} MB")
        say(args, text + f" ({rep.seconds:.1f} s)")
    return 0
