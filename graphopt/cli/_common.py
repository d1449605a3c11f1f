"""Options every command shares, so each means the same everywhere.

* ``-v/--verbose``, ``-q/--quiet``: on every command (before or after its name);
* ``-o/--output``: where the command writes its result (the model file; a folder for
  commands that write several files);
* ``--level``: one set, ``O0``..``O2``, default ``O2`` (``graphopt.api.LEVELS``);
* ``--json``: the command's result as one JSON document on stdout (logs stay on stderr);
* ``--no-progress``: no progress bars (they are drawn only when stderr is a terminal anyway).

A flag that a mode ignores says so (:func:`ignored`); a usage error exits 2, a run-time error 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..api import DEFAULT_LEVEL, LEVELS
from ..errors import UsageError

__all__ = ["add_output", "add_level", "add_json", "add_progress", "emit", "ignored", "progress", "say"]

logger = logging.getLogger("graphopt.cli")


def add_output(p: argparse.ArgumentParser, help: str, *, required: bool = True, default: str | None = None,
               dest: str = "output") -> None:
    p.add_argument("-o", "--output", "--out", dest=dest, required=required, default=default, metavar="PATH",
                   help=help)


def add_level(p: argparse.ArgumentParser, help: str = "pass pipeline: O0 as imported, O1 cleanup, "
                                                      "O2 cleanup + fusions") -> None:
    p.add_argument("--level", choices=LEVELS, default=DEFAULT_LEVEL, help=help)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (bars are drawn only when stderr is a terminal)")


def progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def say(args: argparse.Namespace, text: str) -> None:
    """A human-readable line on stdout (nothing with ``--json`` or ``-q``)."""
    if not getattr(args, "json", False) and not getattr(args, "quiet", False):
        print(text, flush=True)


def emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """With ``--json``, print ``result`` as one JSON document."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=str))


def ignored(args: argparse.Namespace, parser_defaults: dict[str, Any], names: Sequence[str], why: str) -> None:
    """Warn for each of ``names`` (argparse dests) given a non-default value although ``why``."""
    for name in names:
        if getattr(args, name, None) != parser_defaults.get(name):
            flag = "--" + name.replace("_", "-")
            logger.warning("%s is ignored: %s", flag, why)


def usage(message: str) -> UsageError:
    return UsageError(message)
