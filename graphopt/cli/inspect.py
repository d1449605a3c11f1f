"""``graphopt inspect MODEL``: interface, op histogram, parameters by dtype, opsets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_json


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="summarize an ONNX model (inputs/outputs, ops, parameters)")
    p.add_argument("model", help="path to an .onnx file")
    add_json(p)
    p.add_argument("--ir", action="store_true", help="also print the IR text form")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import load  # the file as written (no read-back of contrib ops)
    from ..ir.summary import format_summary, summarize

    model = load(args.model)
    model.verify()
    s = summarize(model)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(format_summary(s))
    if args.ir:
        print(model)
    return 0
