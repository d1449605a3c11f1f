"""ONNX's backend test data through import -> O2 -> lower-to-onnxruntime -> export:
every case that passes the lossless round trip still passes."""

from __future__ import annotations

import onnx
import pytest

import graphopt
from graphopt.ops import lower_to_onnxruntime
from graphopt.pm import PassManager
from graphopt.testing.conformance import roundtrip, run_suite

pytestmark = pytest.mark.slow


def o2_transform(mp: onnx.ModelProto) -> onnx.ModelProto:
    m = graphopt.from_onnx(mp)
    PassManager.from_text("O2")(m)
    lower_to_onnxruntime(m)
    return graphopt.to_onnx(m)


def test_o2_conformance():
    base = run_suite(transform=roundtrip)
    passing = {r.name for r in base.results if r.status == "pass"}
    assert len(passing) > 1500
    report = run_suite(transform=o2_transform)
    failures = [r for r in report.results if r.status == "fail" and r.name in passing]
    counts = report.counts()
    assert not failures, (f"{len(failures)} of {len(passing)} round-trip cases fail after O2 ({dict(counts)}):\n"
                          + "\n".join(f"  {r.name}: {r.reason}" for r in failures[:20]))
