"""Helpers for testing rules and passes (like onnxscript.rewriter.testing):
build a model from ONNX text, count ops, compare with onnxruntime.

>>> m = parse_model('''
...   <ir_version: 8, opset_import: ["" : 17]>
...   g (float[2] x) => (float[2] y) { y = Identity(x) }''')
>>> op_counts(m)
{'Identity': 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..feeds import random_feeds
from ..ir import Model

__all__ = ["parse_model", "op_counts", "assert_op_counts", "run_ort", "random_feeds", "assert_numerically_close",
           "check_pipeline", "assert_unchanged"]


def parse_model(text: str, *, infer_shapes: bool = True) -> Model:
    """A :class:`Model` from ``onnx.parser`` text (checked by onnx first), with
    inferred value types unless ``infer_shapes=False``."""
    import onnx
    import onnx.parser

    from ..io import from_onnx

    proto = onnx.parser.parse_model(text)
    onnx.checker.check_model(proto)
    model = from_onnx(proto)
    if infer_shapes:
        from ..io import infer_shapes as infer

        infer(model)
    return model


def op_counts(model: Model) -> dict[str, int]:
    return dict(model.graph.op_counts())


def assert_op_counts(model: Model, **expected: int) -> None:
    """``assert_op_counts(m, Conv=1, BatchNormalization=0)``."""
    got = model.graph.op_counts()
    wrong = {k: (got.get(k, 0), v) for k, v in expected.items() if got.get(k, 0) != v}
    if wrong:
        desc = ", ".join(f"{k}: got {g}, want {w}" for k, (g, w) in wrong.items())
        raise AssertionError(f"op counts differ: {desc}\nall ops: {got}")


def run_ort(model: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a Model (or ModelProto) in onnxruntime with all graph optimizations off, one thread."""
    from .._ort import run_ort as _run

    return _run(model, feeds, threads=1)


def assert_numerically_close(before: Any, after: Any, feeds: Mapping[str, np.ndarray] | None = None, *,
                             rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Both models give the same outputs in onnxruntime (ORT_DISABLE_ALL)."""
    if feeds is None:
        feeds = random_feeds(before)
    want = run_ort(before, feeds)
    got = run_ort(after, feeds)
    assert len(want) == len(got), f"{len(got)} outputs, expected {len(want)}"
    for i, (w, g) in enumerate(zip(want, got)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")


def check_pipeline(text: str, pipeline: str, *, feeds: Mapping[str, np.ndarray] | None = None,
                   rtol: float = 0.0, atol: float = 0.0, idempotent: bool = True, **counts: int) -> Any:
    """Parse ``text``, run ``pipeline`` with ``verify_each``, and check: the op
    ``counts``, numeric equality with the original in onnxruntime (exact by
    default, as cleanup must be), and that a second run changes nothing.
    Returns ``(model, PipelineResult)``.

    >>> m, r = check_pipeline(TEXT, "remove-noops", Identity=0)   # doctest: +SKIP
    """
    from ..pm import PassManager

    model = parse_model(text)
    original = parse_model(text)
    result = PassManager.from_text(pipeline, verify_each=True)(model)
    assert_op_counts(model, **counts)
    assert_numerically_close(original, model, feeds, rtol=rtol, atol=atol)
    if idempotent:
        again = PassManager.from_text(pipeline, verify_each=True)(model)
        assert not again.modified, f"{pipeline} is not idempotent: second run {again.stats()}"
    return model, result


def assert_unchanged(pass_: Any, model: Model) -> None:
    """The pass reports no change and really changed nothing (printed IR and
    constant data identical): for negative cases and analysis passes."""
    from ..pm import PassContext

    before = str(model)
    data = {k: v.const.tobytes() for k, v in model.graph.initializers.items() if v.const is not None
            and v.const.dtype != object}
    result = pass_.run(model, PassContext())
    assert not result.modified, f"{pass_.name} reported a change: {dict(result.stats)}"
    assert str(model) == before, f"{pass_.name} reported no change but changed the IR"
    after = {k: v.const.tobytes() for k, v in model.graph.initializers.items() if v.const is not None
             and v.const.dtype != object}
    assert after == data, f"{pass_.name} reported no change but changed constant data"
