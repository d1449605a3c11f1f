"""``graphopt check MODEL``: the native plan against onnxruntime on the same inputs.

Feeds are generated for the model's inputs (token ids within the embedding table, attention
masks of ones with some padding) unless ``--feeds`` names an .npz. Prints the per-output error
and the first diverging node (value, op, max abs error, the precision's tolerance); the exit
code is 1 when the outputs diverge, 0 when they match.
"""

from __future__ import annotations

import argparse

from ._common import add_level
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the native plan and onnxruntime on the same inputs; name the first "
                                     "diverging node (exit code 1 when the outputs diverge)")
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32", help="native precision (default fp32)")
    add_level(p, "pass pipeline before lowering: O0 as imported, O1 cleanup, O2 cleanup + fusions")
    p.add_argument("--batch", type=int, default=2, help="batch of the generated feeds (default 2)")
    p.add_argument("--seq", type=int, default=16, help="sequence length of the generated feeds (default 16)")
    p.add_argument("--feeds", help="an .npz of input arrays instead of generated feeds")
    p.add_argument("--threads", type=int, default=None, help="native threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import load
    from ..runtime.check import check, make_feeds

    level = None if args.level == "O0" else args.level
    model = load(args.model)
    if args.feeds:
        with np.load(args.feeds) as z:
            feeds = {k: z[k] for k in z.files}
    else:
        feeds = make_feeds(model, batch=args.batch, seq=args.seq)
    report = check(model, args.precision, feeds, num_threads=args.threads, optimize=level)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report)
    return 0 if report.ok else 1
