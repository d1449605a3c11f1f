"""Conventions every command shares: --version, help, -v/-q, -o/--output, --level, --json, exit codes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

import graphopt
from graphopt.api import DEFAULT_LEVEL, LEVELS
from graphopt.cli import COMMANDS, build_parser, main
from graphopt.quant.testing import mlp_model

NAMES = [c.replace("_", "-") for c in COMMANDS]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_version_and_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "graphopt", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["graphopt", graphopt.__version__]


def test_bare_graphopt_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_verbosity_help_and_defaults(name):
    p = _subparsers()[name]
    opts = _options(p)
    assert {"-v", "--verbose", "-q", "--quiet"} <= set(opts)
    assert p.formatter_class is argparse.ArgumentDefaultsHelpFormatter  # every default shown in --help
    for a in p._actions:
        if a.option_strings and a.dest != "help":
            assert a.help, f"{name} {a.option_strings} has no help text"


@pytest.mark.parametrize("name", NAMES)
def test_output_has_one_spelling(name):
    opts = _options(_subparsers()[name])
    writes = "--out" in opts or "--output" in opts
    if writes:
        assert opts["-o"] is opts["--output"], f"{name}: -o and --output must be the same option"


def test_one_level_set_with_one_default():
    parsers = _subparsers()
    levels = {n: _options(p)["--level"] for n, p in parsers.items() if "--level" in _options(p)}
    assert {"optimize", "export"} <= set(levels)
    for name, action in levels.items():
        assert tuple(action.choices) == LEVELS and action.default == DEFAULT_LEVEL, name


@pytest.mark.parametrize("name", ["info", "inspect", "optimize", "export", "quantize", "passes", "convert", "run"])
def test_commands_that_print_a_result_take_json(name):
    assert "--json" in _options(_subparsers()[name])


def test_verbosity_flags_work_before_and_after_the_command(tmp_path, capsys):
    src = graphopt.save(mlp_model(), tmp_path / "m.onnx")
    assert main(["-q", "optimize", str(src), "-o", str(tmp_path / "a.onnx")]) == 0
    assert main(["optimize", "-v", str(src), "--output", str(tmp_path / "b.onnx"), "--level", "O1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pipeline"] == "O1" and result["nodes_after"] <= result["nodes_before"]


def test_exit_codes_usage_2_runtime_1(tmp_path):
    src = graphopt.save(mlp_model(), tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as e:  # argparse: unknown option / bad choice
        main(["optimize", str(src), "-o", str(tmp_path / "x.onnx"), "--level", "O3"])
    assert e.value.code == 2
    assert main(["optimize", str(src), "-o", str(tmp_path / "x.onnx"), "--passes", "no-such-pass"]) == 2
    assert main(["optimize", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "x.onnx")]) == 1


def test_a_flag_ignored_in_a_mode_says_so(tmp_path, caplog):
    src = graphopt.save(mlp_model(), tmp_path / "m.onnx")
    assert main(["optimize", str(src), "-o", str(tmp_path / "x.onnx"), "--rtol", "0.5"]) == 0
    assert "--rtol is ignored" in caplog.text
    assert main(["quantize", str(src), "-o", str(tmp_path / "q.onnx"), "--mode", "dynamic", "--bits", "4"]) == 0
    assert "--bits is ignored" in caplog.text
