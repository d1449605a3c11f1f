"""The ``graphopt`` command line: a thin layer over :mod:`graphopt.api`.

Each subcommand lives in its own module that defines ``register(subparsers)``; add the
module name to ``COMMANDS``. Conventions shared by every command are in
:mod:`graphopt.cli._common`. Exit status: 0 success, 1 run-time error, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from ..errors import GraphoptError, UsageError

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
    "distill", "qat",
    "tune", "sensitivity",
)


def _verbosity() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's -v/-q adds to, and does not reset, the one given before its name
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what each step does (INFO level)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="only errors; no progress lines")
    return common


class _Subcommands:
    """``add_parser`` with the shared options and a help formatter that shows every default."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self._sub = sub
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs["parents"] = [*kwargs.get("parents", []), self._common]
        if "help" in kwargs:
            kwargs.setdefault("description", kwargs["help"])
        return self._sub.add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    common = _verbosity()
    parser = argparse.ArgumentParser(
        prog="graphopt", parents=[common],
        description="Graph optimizer for deep-learning inference on CPUs. "
                    "`graphopt COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"graphopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wrapped = _Subcommands(sub, common)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(wrapped)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    args.verbose, args.quiet = verbose, quiet
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"graphopt {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except GraphoptError as e:
        print(f"graphopt {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"graphopt {args.command}: interrupted (no output was replaced)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a foreign error: still one line; -v shows the traceback
        if getattr(args, "verbose", 0):
            raise
        print(f"graphopt {args.command}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(run with -v for the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    return "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
