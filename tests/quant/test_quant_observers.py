"""Observers: bounded memory, associative merge, range methods, JSON round trip."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphopt.errors import GraphoptError
from graphopt.quant.observers import ChannelAbsMaxObserver, HistogramObserver, observer_from_dict
from graphopt.quant.specs import QType, QuantSpec, qparams_from_range, quantize_array

U8 = QuantSpec(QType.U8)
S8 = QuantSpec(QType.S8, symmetric=True)


def _obs(*arrays):
    o = HistogramObserver(bins=256)
    for a in arrays:
        o.update(np.asarray(a, np.float32))
    return o


# multiples of 1/64: exactly representable, so streaming and merging bin identically
@given(st.lists(st.lists(st.integers(-64_000, 64_000).map(lambda i: i / 64), min_size=1, max_size=40),
                min_size=3, max_size=3))
def test_merge_is_associative_and_matches_streaming(chunks):
    a, b, c = (_obs(x) for x in chunks)
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    streamed = _obs(*chunks)
    for o in (left, right):
        assert o.radius == streamed.radius and o.n == streamed.n
        np.testing.assert_array_equal(o.counts, streamed.counts)
        assert (o.min, o.max) == (streamed.min, streamed.max)


def test_a_value_at_a_power_of_two_bins_where_a_doubled_histogram_puts_it():
    # the case Hypothesis found: max |x| == 1.0 exactly, then data twice as wide arrive
    a, b = _obs([1.0]), _obs([-2.0, 0.5])
    np.testing.assert_array_equal(a.merge(b).counts, _obs([1.0], [-2.0, 0.5]).counts)
    assert a.radius > 1.0


def test_memory_is_bounded():
    o = HistogramObserver()
    for i in range(20):
        o.update(np.random.default_rng(i).standard_normal(10_000) * (i + 1))
    assert o.counts.shape == (4096,) and o.n == 200_000


def test_range_methods_are_ordered_on_heavy_tails():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000).astype(np.float32)
    x[:20] *= 40  # rare outliers
    o = HistogramObserver()
    o.update(x)
    lo, hi = o.range("minmax", U8)
    assert (lo, hi) == (float(x.min()), float(x.max()))
    for method in ("percentile", "entropy", "mse"):
        plo, phi = o.range(method, U8.with_(percentile=99.9))
        assert lo <= plo < 0 < phi <= hi, method
        if method != "mse":  # MSE may keep 20 big outliers: clipping them costs more than rounding
            assert phi < 0.6 * hi, f"{method} should clip the outliers"
    t = o.range("percentile", S8)
    assert t[0] == pytest.approx(-t[1], rel=0.05)


def test_mse_beats_minmax_on_quantization_error():
    rng = np.random.default_rng(3)
    x = rng.laplace(size=100_000).astype(np.float32)
    o = _obs(x)

    def err(method):
        qp = qparams_from_range(*o.range(method, U8), U8)
        q = quantize_array(x, qp)
        return float(np.mean(((q.astype(np.float32) - qp.zero_point.astype(np.float32)) * qp.scale - x) ** 2))

    assert err("mse") < err("minmax")


def test_nonfinite_values_are_ignored():
    o = _obs([1.0, -np.inf, 2.0, np.nan])
    assert (o.min, o.max) == (1.0, 2.0)


def test_json_roundtrip_and_channel_absmax_merge():
    o = _obs(np.linspace(-3, 5, 1000))
    back = observer_from_dict(json.loads(json.dumps(o.to_dict())))
    np.testing.assert_array_equal(back.counts, o.counts)
    assert back.range("percentile", U8) == o.range("percentile", U8)
    a, b = ChannelAbsMaxObserver(), ChannelAbsMaxObserver()
    a.update(np.array([[1.0, -5.0]]))
    b.update(np.array([[-2.0, 1.0]]))
    np.testing.assert_array_equal(a.merge(b).absmax, [2.0, 5.0])
    np.testing.assert_array_equal(observer_from_dict(a.to_dict()).absmax, [1.0, 5.0])


def test_bad_observer_inputs():
    with pytest.raises(GraphoptError, match="saw no data"):
        HistogramObserver().range("minmax", U8)
    with pytest.raises(GraphoptError, match="unknown observer"):
        QuantSpec(observer="kl")
    with pytest.raises(GraphoptError, match="not an observer"):
        observer_from_dict({"kind": "nope"})
