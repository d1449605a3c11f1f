"""ONNX's backend test models through import -> O1 -> export still pass."""

import pytest

from graphopt.testing.conformance import run_suite


def _o1(mp):
    from graphopt.io import from_onnx, to_onnx
    from graphopt.pm import PassManager

    m = from_onnx(mp)
    PassManager.from_text("O1")(m)
    return to_onnx(m)


@pytest.mark.slow
def test_backend_suite_after_o1(capsys):
    report = run_suite(transform=_o1)
    summary = report.summary()
    with capsys.disabled():
        print("\nafter O1: " + summary)
    c = report.counts()
    assert c["fail"] == 0, summary
    assert c["pass"] >= 1700, summary
