"""ONNX's backend test data through load -> verify -> save -> onnxruntime."""

import pytest

from graphopt.testing.conformance import run_suite


@pytest.mark.slow
def test_backend_suite_roundtrips(capsys):
    report = run_suite()
    summary = report.summary()
    with capsys.disabled():
        print("\n" + summary)
    c = report.counts()
    assert c["fail"] == 0, summary
    assert c["pass"] >= 1700, summary  # ~1724 of 2033 run in onnxruntime 1.32
