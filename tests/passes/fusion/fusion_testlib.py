"""Shared helpers of the fusion tests: build a model from ONNX text, run a pass with
verification, check numerics (onnxruntime, no ORT optimizations) through both the
onnxruntime lowering and the standard-ONNX decomposition, and idempotence."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

import graphopt
from graphopt.ir import Model
from graphopt.ops import decompose_all, lower_to_onnxruntime
from graphopt.pattern import explain
from graphopt.pm import PassContext, get_pass
from graphopt.testing.asserts import assert_numerically_close

RNG = np.random.default_rng(0)


def f32(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def load(text: str, inits: dict[str, np.ndarray] | None = None) -> Model:
    mp = onnx.parser.parse_model(text)
    for name, arr in (inits or {}).items():
        mp.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
    onnx.checker.check_model(mp)
    return graphopt.from_onnx(mp)


def copy(m: Model) -> Model:
    return graphopt.from_onnx(graphopt.to_onnx(m))


def run_pass(m: Model, name: str) -> dict:
    """Run the registered pass ``name`` in place, verifying the graph after it."""
    res = get_pass(name)().run(m, PassContext())
    m.verify()
    return dict(res.stats) if res.modified else {}


def fuse(text: str, name: str, feeds: dict[str, np.ndarray], inits: dict | None = None, *,
         atol: float = 1e-5, rtol: float = 1e-5, pre: tuple[str, ...] = ()) -> tuple[Model, dict]:
    """before -> pass -> (numerics via lowering and decomposition, idempotence). Returns (after, stats).

    ``pre`` passes run first and are part of "before" (for passes that rewrite fused ops)."""
    before = load(text, inits)
    for p in pre:
        run_pass(before, p)
    after = copy(before)
    stats = run_pass(after, name)
    reference = copy(before)
    decompose_all(reference)  # a "before" graph may hold graphopt ops itself (e.g. Gelu before BiasGelu)
    for lower in (lower_to_onnxruntime, decompose_all):
        target = copy(after)
        lower(target)
        target.verify()
        assert_numerically_close(reference, target, feeds, atol=atol, rtol=rtol)
    again = copy(after)
    assert run_pass(again, name) == {}, f"{name} is not idempotent"
    assert again.graph.op_counts() == after.graph.op_counts()
    return after, stats


def assert_not_fused(text: str, name: str, rule, reason: str, inits: dict | None = None) -> None:
    """The pass leaves the model alone, and the rule's best partial match fails for ``reason``."""
    m = load(text, inits)
    before = m.graph.op_counts()
    assert run_pass(m, name) == {}
    assert m.graph.op_counts() == before
    graphopt.infer_shapes(m)
    why = explain(rule, m)
    assert why.matches == 0
    assert reason in why.reason, f"expected {reason!r} in {why.reason!r}"
