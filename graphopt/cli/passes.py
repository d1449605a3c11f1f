"""``graphopt passes``: the registered passes with one-line descriptions, and the presets."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("passes", help="list registered passes and the O1/O2/O3 presets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pm import presets, registered_passes

    passes = registered_passes()
    width = max((len(n) for n in passes), default=10)
    for name, cls in passes.items():
        doc = (cls.__doc__ or "").strip()
        desc = cls.description or (doc.splitlines()[0] if doc else "")
        print(f"{name:{width}s}  {desc}")
    print("\npresets:")
    for name, text in presets().items():
        print(f"  {name}: {text}")
    return 0
