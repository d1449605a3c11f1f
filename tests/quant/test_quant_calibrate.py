"""Calibration runner: data sources, ranges on IR values, JSON, and bad input caught before work."""

import numpy as np
import pytest

from graphopt.errors import GraphoptError
from graphopt.quant import CALIB, CHANNEL_MAX, CalibrationResult, QuantConfig, calibrate, quantize
from graphopt.quant.testing import mlp_model, random_batches, run_ort

TARGETS = ["ln", "r"]


def _expected_minmax(model, batches, name):
    outs = [run_ort(model, b, [name])[0] for b in batches]
    return min(o.min() for o in outs), max(o.max() for o in outs)


def test_ranges_match_onnxruntime_and_attach():
    m, data = mlp_model(), random_batches(3)
    res = calibrate(m, data, TARGETS, progress=False)
    assert res.batches == 3
    for name in TARGETS:
        lo, hi = _expected_minmax(mlp_model(), data, name)
        assert (res.stats[name].min, res.stats[name].max) == pytest.approx((lo, hi))
    assert res.attach(m) == 2
    assert m.graph.value("ln").meta[CALIB] is res.stats["ln"]


def test_chunked_run_equals_single_run():
    m, data = mlp_model(), random_batches(2)
    one = calibrate(m, data, TARGETS, progress=False)
    two = calibrate(m, data, TARGETS, progress=False, max_outputs=1)
    for n in TARGETS:
        np.testing.assert_array_equal(one.stats[n].counts, two.stats[n].counts)


def test_sources_reader_npz_file_and_folder(tmp_path):
    m, data = mlp_model(), random_batches(2)
    ref = calibrate(m, data, TARGETS, progress=False)

    class Reader:  # onnxruntime's CalibrationDataReader protocol
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    for i, b in enumerate(data):
        np.savez(tmp_path / f"b{i}.npz", **b)
    for src in (Reader(), tmp_path, (b for b in data)):
        got = calibrate(m, src, TARGETS, progress=False)
        assert got.batches == 2 and got.stats["r"].max == ref.stats["r"].max
    assert calibrate(m, tmp_path / "b0.npz", TARGETS, progress=False).batches == 1


def test_merge_and_json_roundtrip(tmp_path):
    m, data = mlp_model(), random_batches(4)
    whole = calibrate(m, data, TARGETS, progress=False)
    parts = calibrate(m, data[:2], TARGETS, progress=False).merge(calibrate(m, data[2:], TARGETS, progress=False))
    np.testing.assert_array_equal(whole.stats["ln"].counts, parts.stats["ln"].counts)
    back = CalibrationResult.load(whole.save(tmp_path / "calib.json"))
    assert back.stats["r"].range("percentile", QuantConfig().activation) == \
        whole.stats["r"].range("percentile", QuantConfig().activation)


def test_channel_absmax_for_smoothquant():
    m, data = mlp_model(), random_batches(2)
    res = calibrate(m, data, ["ln"], kind="channel_absmax", progress=False)
    res.attach(m)
    amax = m.graph.value("ln").meta[CHANNEL_MAX]
    assert amax.shape == (16,) and amax[0] > 5 * np.median(amax)  # the planted outlier channel


def test_saved_calibration_is_reused(tmp_path):
    data = random_batches(2)
    path = calibrate(_annotated(), data, progress=False).save(tmp_path / "c.json")
    m, _ = quantize(mlp_model(), QuantConfig(), calibration=CalibrationResult.load(path), progress=False)
    assert m.graph.op_counts().get("QuantizeLinear", 0) > 0


def _annotated():
    from graphopt.passes.quant import AnnotateQuantPass
    from graphopt.pm import PassContext

    m = mlp_model()
    AnnotateQuantPass(QuantConfig()).run(m, PassContext())
    return m


@pytest.mark.parametrize("data, match", [
    ([], "empty"),
    ([{"y": np.zeros((1, 8, 16), np.float32)}], r"feeds \['y'\], which are not inputs"),
    ([{}], r"lacks model input\(s\) \['x'\]"),
    ([{"x": np.zeros((1, 8, 16), np.float64)}], "expected dtype float32, got float64"),
    ([{"x": np.zeros((8, 16), np.float32)}], "expected rank 3"),
    ([{"x": np.zeros((1, 8, 15), np.float32)}], "dim 2 must be 16"),
    ([np.zeros(3)], "not a dict"),
])
def test_bad_calibration_data_fails_before_any_work(data, match, monkeypatch):
    import sys

    cal = sys.modules["graphopt.quant.calibrate"]  # (the package re-exports a function of that name)

    def no_session(*a, **k):
        raise AssertionError("work started before the data was checked")

    monkeypatch.setattr(cal, "_session", no_session)
    m = mlp_model()
    with pytest.raises(GraphoptError, match=match):
        calibrate(m, data, TARGETS, progress=False)
    with pytest.raises(GraphoptError, match=match):
        quantize(mlp_model(), QuantConfig.transformer(), data, progress=False)


def test_bad_targets_and_sources(tmp_path):
    m = mlp_model()
    with pytest.raises(GraphoptError, match="not in the model"):
        calibrate(m, random_batches(1), ["nope"], progress=False)
    with pytest.raises(GraphoptError, match="constants"):
        calibrate(m, random_batches(1), ["w1"], progress=False)
    with pytest.raises(GraphoptError, match="no .npz"):
        calibrate(m, tmp_path, TARGETS, progress=False)
    with pytest.raises(GraphoptError, match="static quantization needs calibration data"):
        quantize(mlp_model(), QuantConfig())
    with pytest.raises(GraphoptError, match="not in the model"):
        quantize(mlp_model(), QuantConfig(nodes={"missing_node": "fp32"}), random_batches(1))
