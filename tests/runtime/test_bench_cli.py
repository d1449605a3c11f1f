"""`graphopt bench` end to end on a tiny configuration (JSON and PNG written, targets evaluated)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_cli_quick(tmp_path, minilm_spec, capsys):
    from graphopt.cli import main

    rc = main(["bench", "--quick", "--threads", "1", "--rounds", "1", "--per-round", "1", "--seq", "32",
               "--systems", "graphopt-fp32", "graphopt-int8", "ort-fp32", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "graphopt-int8" in out and "targets" in out
    data = json.loads((tmp_path / "results.json").read_text())
    systems = {r["system"] for r in data["results"]}
    assert systems == {"graphopt-fp32", "graphopt-int8", "ort-fp32"}
    fp32 = next(r for r in data["results"] if r["system"] == "graphopt-fp32")
    assert fp32["cosine"] > 0.9999 and fp32["median_ms"] > 0
    assert (tmp_path / "latency.png").stat().st_size > 1000
    assert any(t["target"].startswith("fp32") for t in data["targets"])


def test_bench_rejects_unknown_system(capsys):
    from graphopt.cli import main

    assert main(["bench", "--systems", "nope"]) == 2
