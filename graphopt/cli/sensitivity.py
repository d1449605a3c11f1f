"""``graphopt sensitivity MODEL --calib DATA --report DIR``: per-node ranking per precision.

Each quantizable node's output error energy (squared relative L2 vs fp32 on the
first calibration batches, padded rows left out) when it alone is int8
(leave-one-out bypass of the all-int8 model, scaled to add up to its energy) or bf16; printed as a table and written as
``sensitivity.txt``, ``sensitivity.json``, ``sensitivity.png`` and ``report.html``.

    graphopt sensitivity model.onnx --calib batches/ --report sens/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="per-node quantization sensitivity per precision (table, PNG, HTML)")
    p.add_argument("model", help="an .onnx file, or 'bbc' for the BBC News MiniLM classifier")
    p.add_argument("--calib", help="calibration data: folder of .npz batches or an .npz file")
    p.add_argument("--report", help="folder for the table, PNG and HTML page")
    p.add_argument("--probe", type=int, default=4, help="calibration batches to measure the error on")
    p.add_argument("--smoothquant", type=float, default=None, metavar="ALPHA",
                   help="SmoothQuant alpha for transformers (default 0.8; negative: off)")
    p.add_argument("--top", type=int, default=20, help="rows to print")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import GraphoptError
    from ..io import load
    from ..quant.api import prepare_batches
    from ..tune.report import sensitivity_table, write_sensitivity_report
    from ..tune.space import Recipe, build, find_groups, preset_for
    from ..tune.tables import measure_errors

    src, calib = args.model, args.calib
    if src == "bbc":
        from ..models.bbc import bbc_classifier

        task = bbc_classifier()
        src, calib = task.path, calib or str(task.calib)
    if not calib:
        raise GraphoptError("--calib DATA is required")
    fp32 = load(src)
    groups = find_groups(fp32)
    batches = prepare_batches(fp32, calib)
    sq = 0.8 if preset_for(fp32) == "transformer" else None
    if args.smoothquant is not None:
        sq = None if args.smoothquant < 0 else args.smoothquant
    quant = build(fp32, Recipe.make({}, smoothquant=sq), groups, batches)
    err = measure_errors(fp32, groups, quant, batches[:args.probe], ("int8", "bf16", "fp32"),
                         progress=sys.stderr.isatty())
    print(f"{Path(str(src)).name}: {len(groups)} quantizable nodes; all-int8 output error energy {err.all_int8:.3e}")
    print(sensitivity_table(err, top=args.top))
    if args.report:
        for f in write_sensitivity_report(Path(args.report), err, f"{Path(str(src)).name}: per-node sensitivity"):
            print(f"wrote {f}")
    return 0
