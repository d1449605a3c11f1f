"""The ``graphopt`` command line. Each subcommand lives in its own module that
defines ``register(subparsers)``; add the module name to ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import GraphoptError

COMMANDS: tuple[str, ...] = (
    "info",
    "inspect", "check",
    "run", "optimize", "passes",
    "export", "convert",
    "bench_kernels",
    "bench_ort",
    "bench",
    "quantize",
    "prune",
    "tune", "sensitivity",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphopt",
        description="Graph optimizer for deep-learning inference on CPUs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except GraphoptError as e:
        print(f"graphopt {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"graphopt {args.command}: interrupted (no output was replaced)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a foreign error: still one line; -v shows the traceback
        if args.verbose:
            raise
        print(f"graphopt {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(run with -v for the traceback)", file=sys.stderr)
        return 3


def _one_line(e: BaseException) -> str:
    return "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
