"""``graphopt info``: what this CPU can execute and which kernels will run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_json


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="CPU features, selected ISA and thread count")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._native import cpu_info

    info = cpu_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    flags = [k for k, v in info.items() if v is True]
    print(f"cpu:           {info['vendor']} {info['brand']}")
    print(f"features:      {' '.join(flags)}")
    print(f"isa available: {info['isa_available']}")
    print(f"isa selected:  {info['isa_selected']}  (cap with GRAPHOPT_ISA=scalar|avx2|avx512|avx512_vnni|avx512_bf16|amx)")
    print(f"threads:       {info['num_threads']}")
    return 0
