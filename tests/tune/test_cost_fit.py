"""CostTable.fitted: whole-model anchors pin the per-precision scales; mixed recipes interpolate."""

import pytest

from graphopt.tune.space import Recipe
from graphopt.tune.tables import CostTable


def _table():
    cost = {"a": {"fp32": 4.0, "bf16": 2.0, "int8": 1.0}, "b": {"fp32": 2.0, "bf16": 1.5, "int8": 1.0}}
    return CostTable(cost, {"b": 0.25}, 10.0, "native", "m", ["a", "b"])


def test_anchors_are_reproduced_and_a_mixed_recipe_uses_each_precisions_scale():
    t = _table()
    prod = {"b": ["a"]}
    fp32, bf16, int8 = (Recipe.make({"a": p, "b": p}) for p in ("fp32", "bf16", "int8"))
    # whole model: 20 s fp32 (a = 2); bf16 gains 1.5x the one-node gain, int8 only 0.5x
    anchors = [(fp32, 20.0), (bf16, 20.0 - 1.5 * 2.5), (int8, 20.0 - 0.5 * 4.0)]
    f = t.fitted(anchors, prod)
    for r, secs in anchors:
        assert f.predict(r, prod) == pytest.approx(secs)
    mixed = Recipe.make({"a": "bf16", "b": "int8"})
    # a: bf16 gain 2.0 * 1.5; b: int8 gain 1.0 * 0.5; b's input changes precision: transition 0.25 * a
    assert f.predict(mixed, prod) == pytest.approx(20.0 - 3.0 - 0.5 + 0.5)


def test_a_precision_without_an_anchor_keeps_the_fp32_scale():
    t = _table()
    f = t.fitted([(Recipe.make({"a": "fp32", "b": "fp32"}), 30.0)], {})
    assert f.predict(Recipe.make({"a": "bf16", "b": "fp32"}), {}) == pytest.approx(30.0 - 3 * 2.0)


def test_a_mixed_anchor_fits_the_cost_of_precision_changes():
    t = _table()
    prod = {"b": ["a"]}
    fp32, int8 = Recipe.make({"a": "fp32", "b": "fp32"}), Recipe.make({})
    alt = Recipe.make({"a": "fp32", "b": "int8"})  # b quantizes a's float output: one transition
    # a = 2, int8 gains 1x, transitions cost 4x their one-node time (0.25 -> 1.0)
    f = t.fitted([(fp32, 20.0), (int8, 20.0 - 4.0), (alt, 20.0 - 1.0 + 1.0)], prod)
    assert f.predict(alt, prod) == pytest.approx(20.0)
    assert f.transition["b"] == pytest.approx(1.0)


def _tiny_gemm_model():
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from graphopt.io import from_onnx

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "t",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 16])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 8])], [w])
    feeds = {"x": np.ones((2, 16), np.float32)}
    return from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])), feeds


def test_cost_cache_is_per_build_and_never_written_from_a_busy_machine(tmp_path, monkeypatch):
    from graphopt.tune import tables
    from graphopt.tune.space import find_groups

    model, feeds = _tiny_gemm_model()
    groups = find_groups(model)
    measure = lambda: tables.measure_costs(model, groups, feeds, "native", ("fp32", "int8"),  # noqa: E731
                                           cache_dir=tmp_path)
    monkeypatch.setattr(tables, "machine_busy", lambda: 9.5)
    busy = measure()
    assert busy.load == 9.5 and not list(tmp_path.glob("*.json"))   # used, not cached
    monkeypatch.setattr(tables, "machine_busy", lambda: None)
    quiet = measure()
    assert quiet.load is None and len(list(tmp_path.glob("*.json"))) == 1
    monkeypatch.setattr(tables, "time_run", lambda *a, **k: pytest.fail("a cached table is re-measured"))
    assert measure().cost == quiet.cost                                # from the cache
    monkeypatch.setattr(tables, "build_id", lambda: "other-build")
    with pytest.raises(pytest.fail.Exception, match="re-measured"):   # new kernels: the old table is not used
        measure()
