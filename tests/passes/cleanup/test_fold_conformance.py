"""Constant folding against onnxruntime on every ONNX node test: feed the test
inputs as initializers, run O1 (which then folds nearly every graph to
constants) and compare with onnxruntime on the original."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from graphopt.io import from_onnx, to_onnx
from graphopt.pm import PassManager
from graphopt.conformance import all_close, run_outputs, session, iter_cases


def _constant_inputs(mp: onnx.ModelProto, xs: list) -> onnx.ModelProto:
    inits = {i.name for i in mp.graph.initializer}
    ins = [i for i in mp.graph.input if i.name not in inits]
    out = onnx.ModelProto()
    out.CopyFrom(mp)
    keep = [i for i in out.graph.input if i.name in inits]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    for vi, x in zip(ins, xs):
        out.graph.initializer.append(numpy_helper.from_array(np.asarray(x), vi.name))
    return out


@pytest.mark.slow
def test_fold_every_node_test_with_constant_inputs(capsys):
    counts = {"pass": 0, "exact": 0, "folded": 0}
    failures = []
    for case in iter_cases(("node",)):
        try:
            mp = case.load_model()
            data = case.load_data(mp)
            xs = data[0][0]
            want = run_outputs(session(mp), mp, xs)
        except Exception:  # noqa: BLE001 - onnxruntime cannot run the original: not our case
            continue
        n_in = sum(1 for i in mp.graph.input if i.name not in {t.name for t in mp.graph.initializer})
        if n_in != len(xs) or not all(isinstance(x, np.ndarray) for x in xs):
            continue
        m = from_onnx(_constant_inputs(mp, xs))
        PassManager.from_text("O1")(m)
        out = to_onnx(m)
        got = run_outputs(session(out), out, [])
        counts["folded"] += len(out.graph.node) == 0
        if all_close(got, want, 0.0, 0.0):
            counts["exact"] += 1
        elif not all_close(got, want, case.rtol, case.atol):
            failures.append(case.name)
            continue
        counts["pass"] += 1
    with capsys.disabled():
        print(f"\nfold conformance: {counts['pass']} node tests with constant inputs pass "
              f"({counts['exact']} bit-exact), {counts['folded']} folded to constants entirely")
    assert not failures, failures
    assert counts["pass"] >= 1590 and counts["folded"] >= 1540
