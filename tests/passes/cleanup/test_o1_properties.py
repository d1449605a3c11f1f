"""Properties of O1 on random element-wise graphs (Hypothesis): verifies after
every pass, exact onnxruntime numerics, idempotent."""

import numpy as np
from hypothesis import given, settings

from graphopt.ir.clone import clone
from graphopt.pattern.testing import run_ort
from graphopt.pm import CheckUnmodified, PassManager
from graphopt.testing.strategies import graphs

FEEDS = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}


@settings(max_examples=20, deadline=None)
@given(graphs(max_nodes=10))
def test_o1_preserves_numerics_and_is_idempotent(model):
    original = clone(model, copy_constants=True)
    PassManager.from_text("O1", verify_each=True, instruments=[CheckUnmodified()])(model)
    for want, got in zip(run_ort(original, FEEDS), run_ort(model, FEEDS)):
        np.testing.assert_array_equal(got, want)
    assert len(model.graph) <= len(original.graph)
    again = PassManager.from_text("O1")(model)
    assert not again.modified, again.table()
    assert [v.name for v in model.graph.outputs] == [v.name for v in original.graph.outputs]
