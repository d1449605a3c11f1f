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


@pytest.mark.slow
def test_memory_measured_alone_in_a_child(minilm_spec):
    """A compiled int8 MiniLM holds its packed weights (~11 MB) and the fp32 embedding table (~47 MB)."""
    from graphopt.bench.memory import measure

    r = measure("graphopt-int8", "minilm", batch=1, seq=16, threads=1)
    assert not r.error, r.error
    assert 40 < r.resident_mb < 400 and r.peak_mb >= r.resident_mb
    bad = measure("no-such-system", "minilm", batch=1, seq=16, threads=1)
    assert bad.resident_mb is None and "unknown system" in bad.error
