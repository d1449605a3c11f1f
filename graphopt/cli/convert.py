"""``graphopt convert``: a PyTorch module (from a factory) -> ONNX, through graphopt.

    graphopt convert --torch mypkg.models:make_net --example-shape 1,3,224,224 -o net.onnx
    graphopt convert --torch mypkg.nlp:make_bert --example-shape 1,128 --example-dtype int64 \\
        --input-names input_ids -o bert.onnx

``factory`` is called with no arguments and returns a ``torch.nn.Module``. The
current directory is on the import path, as for ``python -m``. The batch axis
(and, for integer token inputs, the sequence axis) is exported as dynamic
unless ``--static`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

from ._common import add_json, add_output, emit, say

_DTYPES = ("float32", "int64")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a PyTorch module (package.module:factory) to ONNX")
    p.add_argument("--torch", required=True, metavar="MODULE:FACTORY",
                   help="import path of a zero-argument function returning a torch.nn.Module")
    p.add_argument("--example-shape", required=True, action="append", metavar="D0,D1,...",
                   help="shape of an example input; repeat for several inputs")
    p.add_argument("--example-dtype", choices=_DTYPES, action="append", default=None,
                   help="dtype of the example input(s) (default float32; int64 draws token ids)")
    p.add_argument("--input-names", nargs="+", default=None, help="ONNX input names")
    p.add_argument("--output-names", nargs="+", default=None, help="ONNX output names")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="torch.onnx exporter (auto: the dynamo exporter, then TorchScript)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset to export")
    p.add_argument("--static", action="store_true", help="export with fixed shapes (no dynamic axes)")
    add_output(p, "output .onnx path")
    add_json(p)
    p.set_defaults(func=run)


def _factory(spec: str) -> Any:
    from ..errors import GraphoptError, UsageError

    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise UsageError(f"--torch wants package.module:factory, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise GraphoptError(f"cannot import {mod_name!r} for --torch: {e}") from e
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise GraphoptError(f"{mod_name} has no callable {attr!r}")
    return fn


def _shape(text: str) -> tuple[int, ...]:
    from ..errors import UsageError

    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"--example-shape wants positive integers like 1,3,224,224, got {text!r}")
    return dims


def run(args: argparse.Namespace) -> int:
    import graphopt
    from ..errors import GraphoptError, UsageError, require

    torch = require("torch", "torch", "graphopt convert")
    shapes = [_shape(s) for s in args.example_shape]
    dtypes = args.example_dtype or ["float32"]
    if len(dtypes) == 1:
        dtypes = dtypes * len(shapes)
    if len(dtypes) != len(shapes):
        raise UsageError(f"{len(dtypes)} --example-dtype for {len(shapes)} --example-shape")
    module = _factory(args.torch)()
    if not isinstance(module, torch.nn.Module):
        raise GraphoptError(f"{args.torch} returned a {type(module).__name__}, not a torch.nn.Module")
    g = torch.Generator().manual_seed(0)
    examples = tuple(torch.randn(s, generator=g) if d == "float32" else torch.randint(1, 1000, s, generator=g)
                     for s, d in zip(shapes, dtypes))
    names = args.input_names
    if names is not None and len(names) != len(shapes):
        raise UsageError(f"{len(names)} --input-names for {len(shapes)} example inputs")
    dynamic = None
    if not args.static:
        from ..io.torch_import import _default_input_names

        names = names or _default_input_names(module, len(shapes))
        dynamic = {n: ({0: "batch", 1: "seq"} if d == "int64" and len(s) >= 2 else {0: "batch"})
                   for n, s, d in zip(names, shapes, dtypes)}
    t = time.perf_counter()
    model = graphopt.from_torch(module, examples, input_names=names, output_names=args.output_names,
                       dynamic_shapes=dynamic, opset=args.opset, exporter=args.exporter)
    dst = graphopt.save(model, args.output)
    ins = ", ".join(f"{v.name}{list(v.shape) if v.shape is not None else ''}" for v in model.graph.inputs
                    if not v.is_initializer)
    say(args, f"converted {type(module).__name__} ({ins}) -> {dst}: {len(model.graph)} nodes "
              f"({time.perf_counter() - t:.1f} s)")
    emit(args, {"module": args.torch, "output": str(dst), "nodes": len(model.graph),
                "inputs": [v.name for v in model.graph.inputs if not v.is_initializer]})
    return 0
