"""`graphopt bench --scale` on a tiny MatMul stack: each step in its own child, JSON/MD written."""

from __future__ import annotations

import json

from graphopt.cli import main


def test_bench_scale_tiny(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["bench", "--scale", "--sizes", "0.0002", "--hidden", "64", "--steps", "rtn,load",
               "--work", str(tmp_path / "work"), "--out", str(out), "--no-plot"])
    assert rc == 0, capsys.readouterr()
    rows = json.loads((out / "scale.json").read_text())
    assert [r["step"] for r in rows] == ["rtn", "load"]
    assert all("error" not in r and r["seconds"] >= 0 and r["peak_mb"] >= 0 for r in rows)
    assert {r["model"] for r in rows} == {"stack_0.0002gb_h64"}
    md = (out / "scale.md").read_text()
    assert "| stack_0.0002gb_h64 |" in md and "rtn" in md
    # a rerun of one step replaces its cell and keeps the others
    before = rows[1]["seconds"]
    assert main(["bench", "--scale", "--sizes", "0.0002", "--hidden", "64", "--steps", "load",
                 "--work", str(tmp_path / "work"), "--out", str(out), "--no-plot"]) == 0
    again = json.loads((out / "scale.json").read_text())
    assert [r["step"] for r in again] == ["rtn", "load"] and again[0] == rows[0]
    assert again[1]["seconds"] != before
    # every cell names its run: the kept rtn cell is marked as the older run's, the new load cell is not
    assert again[0]["run"] < again[1]["run"] and "load_avg" in again[1]
    md = (out / "scale.md").read_text()
    head, _, line = md.splitlines()[:3]
    cells = dict(zip((c.strip(" |") for c in head.split(" | ")), (c.strip(" |") for c in line.split(" | "))))
    assert cells["rtn"].endswith("(a)") and "(a)" not in cells["load"]
    assert f"(a) run {again[0]['run']}." in md and f"Run {again[1]['run']} (unmarked cells)." in md
    # --replace: the file holds this run only
    assert main(["bench", "--scale", "--sizes", "0.0002", "--hidden", "64", "--steps", "load", "--replace",
                 "--work", str(tmp_path / "work"), "--out", str(out), "--no-plot"]) == 0
    only = json.loads((out / "scale.json").read_text())
    assert [r["step"] for r in only] == ["load"] and "(a)" not in (out / "scale.md").read_text()


def test_bench_scale_rejects_bad_arguments(capsys) -> None:
    assert main(["bench", "--scale", "--steps", "load,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["bench", "--scale", "--sizes", "0.1,x"]) == 2
    assert "'x'" in capsys.readouterr().err
    assert main(["bench", "--scale", "no/such/model.onnx"]) == 2
