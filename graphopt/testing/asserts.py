"""Assertion helpers for tests of passes and exporters (a public API, like tvm.testing).

>>> assert_op_counts(model, MatMul=2, Add=0)                 # doctest: +SKIP
>>> assert_numerically_close(before, after, feeds)           # doctest: +SKIP
>>> assert_graph_equal(after, expected)                      # doctest: +SKIP
>>> result, calls = count_calls(PassManager.from_text("O1"), model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir import Graph, Model

__all__ = ["assert_op_counts", "assert_graph_equal", "assert_numerically_close", "run_onnxruntime",
           "structural_signature", "count_calls"]


def count_calls(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """``fn(*args, **kwargs)`` and the number of Python and builtin function calls it made: a
    deterministic measure of work for complexity guards (tests never assert a timing: on a shared
    machine the clock says more about the neighbours than about the code)."""
    import sys

    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.setprofile(previous)
    return result, calls


def _graph(m: Model | Graph) -> Graph:
    return m.graph if isinstance(m, Model) else m


def assert_op_counts(model: Model | Graph, **expected: int) -> None:
    """Assert op counts; ``domain::Op`` names are written ``domain__Op`` in kwargs."""
    counts = _graph(model).op_counts()
    wrong = {}
    for op, n in expected.items():
        key = op.replace("__", "::")
        if counts.get(key, 0) != n:
            wrong[key] = (counts.get(key, 0), n)
    if wrong:
        detail = ", ".join(f"{k}: got {g}, want {w}" for k, (g, w) in wrong.items())
        raise AssertionError(f"op counts differ: {detail}\nall counts: {counts}")


def structural_signature(model: Model | Graph) -> list[str]:
    """A name-independent description of the graph: one line per node with op,
    attributes and inputs written as (producer index, output index) or input/const ids."""
    g = _graph(model)
    ids: dict[int, str] = {}
    for i, v in enumerate(g.inputs):
        ids[id(v)] = f"in{i}"
    for v in g.initializers.values():
        if id(v) not in ids:
            c = v.const
            ids[id(v)] = f"const[{v.type}]#{hash(c.tobytes()) if c is not None and c.dtype != object else 0:x}"
    lines = []
    for k, n in enumerate(g):
        for j, o in enumerate(n.outputs):
            ids[id(o)] = f"n{k}.{j}"
        ins = ",".join("-" if v is None else ids.get(id(v), "outer") for v in n.inputs)
        attrs = ",".join(f"{a.name}={_attr_sig(a.value)}" for a in sorted(n.attrs.values(), key=lambda a: a.name))
        types = ",".join(str(o.type) for o in n.outputs)
        lines.append(f"{n.op}<{attrs}>({ins}) -> {types}")
    lines.append("return " + ",".join(ids.get(id(v), "?") for v in g.outputs))
    return lines


def _attr_sig(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"tensor{v.shape}#{hash(v.tobytes()) if v.dtype != object else 0:x}"
    if isinstance(v, Graph):
        return "{" + ";".join(structural_signature(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_attr_sig(x) for x in v) + "]"
    return repr(v)


def assert_graph_equal(actual: Model | Graph, expected: Model | Graph) -> None:
    """Structural equality ignoring value names (TVM's assert_structural_equal)."""
    a, e = structural_signature(actual), structural_signature(expected)
    if a != e:
        import difflib

        diff = "\n".join(difflib.unified_diff(e, a, "expected", "actual", lineterm=""))
        raise AssertionError(f"graphs differ structurally:\n{diff}")


def run_onnxruntime(model: Model | Graph, feeds: Mapping[str, np.ndarray], *,
                    optimize: bool = False) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime; graph optimizations are off unless asked, so
    onnxruntime's own fusions cannot hide a bug in ours."""
    from ..io import to_onnx

    from .._ort import ort_session

    m = model if isinstance(model, Model) else Model(model)
    sess = ort_session(to_onnx(m), optimize=optimize)
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


_DEFAULT_TOL = {np.dtype(np.float32): (1e-5, 1e-5), np.dtype(np.float16): (1e-2, 1e-2),
                np.dtype(np.float64): (1e-9, 1e-9)}


def assert_numerically_close(before: Model | Graph, after: Model | Graph, feeds: Mapping[str, np.ndarray],
                             *, rtol: float | None = None, atol: float | None = None) -> None:
    """Run both in onnxruntime (no ORT optimizations) and compare every output
    with per-dtype default tolerances (fp32: 1e-5)."""
    want = run_onnxruntime(before, feeds)
    got = run_onnxruntime(after, feeds)
    if len(want) != len(got):
        raise AssertionError(f"{len(got)} outputs, expected {len(want)}")
    for i, (w, g) in enumerate(zip(want, got)):
        w, g = np.asarray(w), np.asarray(g)
        r, a = _DEFAULT_TOL.get(w.dtype, (0.0, 0.0))
        np.testing.assert_allclose(g, w, rtol=r if rtol is None else rtol, atol=a if atol is None else atol,
                                   err_msg=f"output {i}")

