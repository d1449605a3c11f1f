"""``graphopt passes``: the registered passes with one-line descriptions, and the presets."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_json, emit


def register(sub: Any) -> None:
    p = sub.add_parser("passes", help="list registered passes and the O1/O2 presets")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pm import presets, registered_passes

    passes = registered_passes()
    if args.json:
        emit(args, {"passes": {n: _describe(c) for n, c in passes.items()}, "presets": presets()})
        return 0
    width = max((len(n) for n in passes), default=10)
    for name, cls in passes.items():
        print(f"{name:{width}s}  {_describe(cls)}")
    print("\npresets:")
    for name, text in presets().items():
        print(f"  {name}: {text}")
    return 0


def _describe(cls: Any) -> str:
    doc = (cls.__doc__ or "").strip()
    return cls.description or (doc.splitlines()[0] if doc else "")
