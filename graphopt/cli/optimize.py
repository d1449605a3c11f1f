"""``graphopt optimize MODEL -o OUT``: ``graphopt.optimize`` + ``graphopt.save``, with a per-pass table.

    graphopt optimize model.onnx -o model.opt.onnx --level O1
    graphopt optimize model.onnx -o out.onnx --passes "fold-constants,fixpoint(cse,remove-unused)" --check

The file written loads in onnxruntime (graphopt's fused ops as com.microsoft contrib ops) and
``graphopt.load`` reads those back as graphopt's fused ops.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import time
from typing import Any

from ._common import add_json, add_level, add_output, emit, ignored, say

_CHECK_ONLY = ("rtol", "atol", "dim")


def register(sub: Any) -> None:
    p = sub.add_parser("optimize", help="run a pass pipeline (a --level preset or --passes) on an ONNX model")
    p.add_argument("model", help="an .onnx file")
    add_output(p, "where to write the optimized .onnx")
    add_level(p)
    p.add_argument("--passes", help="pipeline text instead of --level, e.g. 'fold-constants,fixpoint(cse,max=3)'")
    p.add_argument("--disable", default="", help="comma-separated pass names to skip, e.g. fuse-attention")
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR before the pipeline and after each pass to DIR")
    p.add_argument("--check", action="store_true",
                   help="run onnxruntime before/after every pass on random inputs; stop at the first pass "
                        "that changes the outputs")
    p.add_argument("--rtol", type=float, default=1e-4, help="--check relative tolerance")
    p.add_argument("--atol", type=float, default=1e-4, help="--check absolute tolerance")
    p.add_argument("--dim", type=int, default=8, help="--check: size of symbolic input dims")
    p.add_argument("--reproducer", metavar="DIR",
                   help="on failure, write the input model and the pipeline that fails to DIR")
    add_json(p)
    p.set_defaults(func=run, _defaults={"rtol": 1e-4, "atol": 1e-4, "dim": 8, "level": "O2"})


def run(args: argparse.Namespace) -> int:
    import graphopt
    from ..errors import GraphoptError
    from ..feeds import random_feeds
    import onnx

    from ..io.atomic import atomic_output, refuse_same_file
    from ..pm import DumpIR, NumericGuard, Reproducer, Timing

    if not args.check:
        ignored(args, args._defaults, _CHECK_ONLY, "it applies with --check")
    if args.passes:
        ignored(args, args._defaults, ("level",), "--passes gives the pipeline")
    refuse_same_file(args.model, args.output)
    t0 = time.perf_counter()
    model = graphopt.load(args.model)
    timing = Timing()
    instruments: list[Any] = [timing]
    if args.dump_ir:
        instruments.append(DumpIR(args.dump_ir))
    if args.reproducer:
        instruments.append(Reproducer(args.reproducer))
    if args.check:
        from ..io import infer_shapes

        infer_shapes(model)
        try:
            feeds = random_feeds(model, dim=args.dim)
        except ValueError as e:
            raise GraphoptError(f"--check cannot make inputs: {e}") from e
        instruments.append(NumericGuard(feeds, rtol=args.rtol, atol=args.atol))
    t1 = time.perf_counter()
    disabled = [n.strip() for n in args.disable.split(",") if n.strip()]
    out_model = graphopt.optimize(model, args.level, passes=args.passes, disable=disabled, instruments=instruments)
    t2 = time.perf_counter()
    with atomic_output(args.output) as tmp:  # OUT appears only once onnx's checker passed
        graphopt.save(out_model, tmp)
        try:
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as e:
            raise GraphoptError(f"the optimized model fails onnx.checker; {args.output} not written: "
                                f"{_first_line(e)}") from e
    out = Path(args.output)
    before, after = len(model.graph), len(out_model.graph)
    say(args, timing.table())
    say(args, f"nodes {before} -> {after}; passes {1e3 * (t2 - t1):.0f} ms (load {1e3 * (t1 - t0):.0f} ms); "
              f"wrote {out}")
    if args.check:
        say(args, f"check: onnxruntime outputs unchanged within rtol={args.rtol}, atol={args.atol} after every pass")
    if args.dump_ir:
        say(args, f"IR dumps in {args.dump_ir}/")
    emit(args, {"model": args.model, "output": str(out), "pipeline": args.passes or args.level,
                "nodes_before": before, "nodes_after": after, "seconds": t2 - t1,
                "op_counts": dict(out_model.graph.op_counts()), "checked": bool(args.check),
                "passes": [{"name": r.name, "seconds": r.seconds, "nodes_before": r.nodes_before,
                            "nodes_after": r.nodes_after, "modified": r.modified, "stats": r.stats}
                           for r in timing.records]})
    return 0


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
