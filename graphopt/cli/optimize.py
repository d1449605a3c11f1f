"""``graphopt optimize MODEL -o OUT``: run a pass pipeline and print a per-pass table.

    graphopt optimize model.onnx -o model.opt.onnx --level O1
    graphopt optimize model.onnx -o out.onnx --passes "fold-constants,fixpoint(cse,remove-unused)" --check
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="run a pass pipeline (O1/O2/O3 or a list of passes) on an ONNX model")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("-o", "--out", required=True, help="where to write the optimized .onnx")
    p.add_argument("--level", choices=("O1", "O2", "O3"), default="O2", help="preset pipeline (default O2)")
    p.add_argument("--passes", help="pipeline text instead of --level, e.g. 'fold-constants,fixpoint(cse,max=3)'")
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR before the pipeline and after each pass to DIR")
    p.add_argument("--check", action="store_true",
                   help="run onnxruntime before/after every pass on random inputs; stop at the first pass "
                        "that changes the outputs")
    p.add_argument("--rtol", type=float, default=1e-4, help="--check relative tolerance (default 1e-4)")
    p.add_argument("--atol", type=float, default=1e-4, help="--check absolute tolerance (default 1e-4)")
    p.add_argument("--dim", type=int, default=8, help="--check: size of symbolic input dims (default 8)")
    p.add_argument("--disable", default="", help="comma-separated pass names to skip, e.g. fuse-attention")
    p.add_argument("--reproducer", metavar="DIR",
                   help="on failure, write the input model and the pipeline that fails to DIR")
    p.set_defaults(func=run)


def onnx_for_onnxruntime(model: Any) -> Any:
    """A ModelProto onnxruntime can run: graphopt-domain ops are lowered first (on a copy)."""
    from ..pm.instruments import _default_export

    return _default_export(model)


def run(args: argparse.Namespace) -> int:
    from ..io import load
    from ..pm import DumpIR, NumericGuard, PassContext, PassManager, Reproducer
    from ..pattern.testing import random_feeds

    from ..io.atomic import atomic_output, refuse_same_file

    refuse_same_file(args.model, args.out)
    t0 = time.perf_counter()
    model = load(args.model)
    text = args.passes or args.level
    instruments: list[Any] = []
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
            from ..errors import GraphoptError

            raise GraphoptError(f"--check cannot make inputs: {e}") from e
        instruments.append(NumericGuard(feeds, rtol=args.rtol, atol=args.atol, exporter=onnx_for_onnxruntime))
    pm = PassManager.from_text(text, instruments=instruments)
    t1 = time.perf_counter()
    disabled = {n.strip() for n in args.disable.split(",") if n.strip()}
    if disabled:
        from ..pm import registered_passes

        unknown = disabled - set(registered_passes())
        if unknown:
            from ..errors import GraphoptError

            raise GraphoptError(f"--disable: unknown pass(es) {sorted(unknown)}")
    with PassContext(disabled=frozenset(disabled)):
        result = pm(model)
    t2 = time.perf_counter()
    print(f"pipeline: {pm.pipeline_text()}")
    print(result.table())
    import onnx

    proto = onnx_for_onnxruntime(model)
    from pathlib import Path

    out = Path(args.out)
    from ..io import from_onnx, save

    with atomic_output(out) as tmp:  # OUT appears only once the checker passed
        save(from_onnx(proto), tmp)
        try:
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as e:
            from ..errors import GraphoptError

            raise GraphoptError(f"the optimized model fails onnx.checker; {out} not written: {e}") from e
    print(f"nodes {result.nodes_before} -> {result.nodes_after}; passes {1e3 * (t2 - t1):.0f} ms "
          f"(load {1e3 * (t1 - t0):.0f} ms); wrote {out}")
    if args.check:
        print(f"check: onnxruntime outputs unchanged within rtol={args.rtol}, atol={args.atol} after every pass")
    if args.dump_ir:
        print(f"IR dumps in {args.dump_ir}/")
    return 0
