"""The benchmark machinery runs end to end on a tiny configuration (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphopt.bench.kernels import EPILOGUES, BenchConfig, epilogue_costs, evaluate_targets, plot, run_kernel_bench
from graphopt.cli import main


def tiny(**kw: object) -> BenchConfig:
    cfg = BenchConfig(ms=(1, 33), kns=((16, 40),), threads=(1,), rounds=1, block_s=0.001, min_reps=2,
                      max_reps=3, pause_s=0.0, peak_s=0.01,
                      systems=("ours_int8", "ours_bf16", "ours_fp32", "numpy_fp32"))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_report_fields_and_ratios(tmp_path: Path) -> None:
    rep = run_kernel_bench(tiny())
    names = {r.system for r in rep.results}
    assert names == {"ours_int8", "ours_bf16", "ours_fp32", "numpy_fp32"}
    assert all(r.gops > 0 and r.median_s > 0 for r in rep.results)
    f32 = [r for r in rep.results if r.system == "ours_fp32"]
    assert all(r.best_peer == "numpy_fp32" and r.ratio_best_peer is not None for r in f32)
    assert rep.peaks_gops_per_core["fp32"] > 0
    data = json.loads(rep.to_json())
    assert data["machine"]["logical_cpus"] >= 1 and len(data["results"]) == len(rep.results)
    assert [t.name for t in evaluate_targets(rep)]
    plot(rep, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0


def test_cli_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench-kernels", "--quick", "--m", "1", "--threads", "1", "--rounds", "1",
               "--systems", "ours_int8", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "ours_int8" in out and "targets" in out
    assert (tmp_path / "results.json").exists() and (tmp_path / "gemm.png").exists()


def test_epilogue_costs_cover_every_epilogue() -> None:
    us = epilogue_costs(M=7, K=20, N=33, rounds=1, block_s=0.0)
    assert set(us) == set(EPILOGUES) and all(v > 0 for v in us.values())
