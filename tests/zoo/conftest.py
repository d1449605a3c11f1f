"""Prints the zoo coverage table after the run and writes it as markdown
(``$GRAPHOPT_ZOO_TABLE``, default ``<zoo cache>/coverage.md``) for the README."""

from __future__ import annotations

import os
from pathlib import Path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    try:
        from graphopt.testing.zoo import COVERAGE, cache_root, coverage_markdown
    except ImportError:
        return
    if not COVERAGE:
        return
    table = coverage_markdown()
    terminalreporter.section("zoo coverage")
    terminalreporter.write(table)
    try:
        path = Path(os.environ.get("GRAPHOPT_ZOO_TABLE") or cache_root() / "coverage.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(table)
        tmp.replace(path)
        terminalreporter.write_line(f"zoo coverage table written to {path}")
    except OSError as e:  # the table is a report, not a result
        terminalreporter.write_line(f"zoo coverage table not written: {e}")
