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
    assert fp32["cosine"] > 0.9999 and fp32["median_ms"] > 0 and fp32["cpu_ms"] > 0
    assert "loadavg_start" in data["machine"] and "loadavg_end" in data["machine"]
    assert (tmp_path / "latency.png").stat().st_size > 1000
    assert any(t["target"].startswith("fp32") for t in data["targets"])


def test_targets_best_fp32_peer_and_cpu_ratio():
    """Issue 12's fp32 target takes the fastest fp32 peer of any library; CPU-time ratios are given
    at 1 thread only (at 2+ threads CPU time also counts pool spinning)."""
    from graphopt.bench.models import BenchReport, SystemResult, evaluate_targets

    rep = BenchReport("m", 128, {})
    for t in (1, 2):
        rep.results += [SystemResult("graphopt-fp32", 1, t, median_ms=80.0, cpu_ms=78.0),
                        SystemResult("ort-fp32", 1, t, median_ms=120.0, cpu_ms=118.0),
                        SystemResult("ov-fp32", 1, t, median_ms=100.0, cpu_ms=90.0)]
    rows = {(r["threads"], r["target"]): r for r in evaluate_targets(rep)}
    best = rows[(1, "fp32 vs best fp32 peer (ov-fp32)")]
    assert best["ratio"] == 0.8 and best["met"] and best["cpu_ratio"] == round(78 / 90, 3)
    assert rows[(1, "fp32 vs ORT fp32 (optimized)")]["ratio"] == round(80 / 120, 3)
    assert rows[(2, "fp32 vs best fp32 peer (ov-fp32)")]["cpu_ratio"] is None


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
