"""The repository's own checks run in the suite: the examples run, ruff and mypy pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_examples_exist():
    assert EXAMPLES


def test_ruff_lint():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "graphopt", "passes", "tests", "examples", "tools"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]


def test_mypy_on_the_typed_front_door():
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:]


def test_package_ships_py_typed():
    import graphopt

    assert (Path(graphopt.__file__).parent / "py.typed").exists()
