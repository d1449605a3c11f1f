"""Observers: bounded-memory statistics of a tensor over many batches.

:class:`HistogramObserver` keeps the exact min/max and a signed histogram of
fixed bin count over ``[-R, R]`` where ``R`` is a power of two that doubles
when data exceed it (adjacent bins are summed, which is exact). Two observers
are merged by bringing both to the larger ``R`` and adding counts, so
``merge`` is associative and commutative and calibration can be split over
batches, processes or machines. Every range method (MinMax, Percentile,
Entropy/KL, MSE) is computed from the same state, so one calibration run
serves every observer choice.

>>> import numpy as np
>>> a, b = HistogramObserver(), HistogramObserver()
>>> a.update(np.linspace(-1, 1, 1001)); b.update(np.linspace(0, 3, 11))
>>> m = a.merge(b)
>>> m.range("minmax", QuantSpec(QType.U8))
(-1.0, 3.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import GraphoptError
from .specs import QType, QuantSpec

__all__ = ["HistogramObserver", "ChannelAbsMaxObserver", "observer_from_dict"]

_TINY = 2.0**-40


def _pow2_above(x: float) -> float:
    """The smallest power of two strictly above ``x``: a value equal to ``R`` would need the bin past the
    last, and clipping it into the last bin puts it one bin off from where a doubled histogram has it."""
    return math.ldexp(1.0, math.frexp(max(x, _TINY))[1])


class HistogramObserver:
    """Exact min/max plus a ``bins``-bin signed histogram over ``[-R, R]``.

    Memory is O(bins) whatever the number of batches.
    """

    kind = "histogram"

    def __init__(self, bins: int = 4096) -> None:
        if bins % 4:
            raise GraphoptError("histogram bins must be a multiple of 4 (doubling merges bin pairs)")
        self.bins = bins
        self.radius = 0.0  # 0: nothing seen yet
        self.counts = np.zeros(bins, np.int64)
        self.min = math.inf
        self.max = -math.inf
        self.n = 0

    # --- accumulation ------------------------------------------------------
    def _grow_to(self, radius: float) -> None:
        if self.radius == 0.0:
            self.radius = radius
            return
        while self.radius < radius:
            half = self.counts.reshape(-1, 2).sum(axis=1)
            q = self.bins // 4
            self.counts = np.concatenate([np.zeros(q, np.int64), half, np.zeros(q, np.int64)])
            self.radius *= 2.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        x = x.astype(np.float32, copy=False).ravel()
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            x = x[np.isfinite(x)]  # -inf masks etc. carry no range information
            if x.size == 0:
                return
            lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._grow_to(_pow2_above(max(abs(lo), abs(hi))))
        # float64: R and bins/2R are powers of two, so binning is exact for float32 inputs of similar
        # magnitude and a doubled histogram equals one built at the larger radius
        idx = ((x.astype(np.float64) + self.radius) * (self.bins / (2 * self.radius))).astype(np.int64)
        np.clip(idx, 0, self.bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.bins)
        self.n += x.size

    def merge(self, other: HistogramObserver) -> HistogramObserver:
        """A new observer holding both (associative, commutative)."""
        if other.bins != self.bins:
            raise GraphoptError(f"cannot merge histograms of {self.bins} and {other.bins} bins")
        out = HistogramObserver(self.bins)
        for src in (self, other):
            if src.n == 0:
                continue
            tmp = src.copy()
            r = max(self.radius, other.radius)
            tmp._grow_to(r)
            out._grow_to(r)
            out.counts += tmp.counts
            out.min, out.max = min(out.min, src.min), max(out.max, src.max)
            out.n += src.n
        return out

    def copy(self) -> HistogramObserver:
        o = HistogramObserver(self.bins)
        o.radius, o.counts, o.min, o.max, o.n = self.radius, self.counts.copy(), self.min, self.max, self.n
        return o

    # --- ranges ----------------------------------------------------------------
    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-self.radius, self.radius, self.bins + 1)

    def _abs_hist(self) -> tuple[np.ndarray, float]:
        """Histogram of |x| over [0, R] (bins/2 bins) and its bin width."""
        h = self.bins // 2
        return self.counts[h:] + self.counts[:h][::-1], self.radius / h

    def range(self, method: str, spec: QuantSpec) -> tuple[float, float]:
        """The clipping range ``(lo, hi)`` for ``method`` and the target spec."""
        if self.n == 0:
            raise GraphoptError("observer saw no data")
        if method == "minmax":
            return float(self.min), float(self.max)
        if method == "percentile":
            return self._percentile(spec)
        if method == "entropy":
            t = self._entropy(spec.dtype)
        elif method == "mse":
            return self._mse(spec)
        else:
            raise GraphoptError(f"unknown range method '{method}'")
        return max(self.min, -t), min(self.max, t)

    def _percentile(self, spec: QuantSpec) -> tuple[float, float]:
        p = spec.percentile / 100.0
        if spec.symmetric:
            ah, w = self._abs_hist()
            c = np.cumsum(ah) / self.n
            t = (int(np.searchsorted(c, p)) + 1) * w
            return max(self.min, -t), min(self.max, t)
        c = np.cumsum(self.counts) / self.n
        e = self.edges
        lo = e[int(np.searchsorted(c, 1.0 - p))]
        hi = e[min(int(np.searchsorted(c, p)) + 1, self.bins)]
        return max(self.min, float(lo)), min(self.max, float(hi))

    def _entropy(self, qtype: QType, stride: int = 8) -> float:
        """TensorRT-style: the |x| threshold minimising KL(P || Q) of the clipped distribution."""
        ah, w = self._abs_hist()
        amax = max(abs(self.min), abs(self.max))
        last = min(len(ah), int(math.ceil(amax / w)))
        ah = ah[:last].astype(np.float64)
        levels = 128 if qtype in (QType.S8, QType.U8) else 8
        if last <= levels:
            return amax
        best, best_t = math.inf, amax
        for i in list(range(levels, last, stride)) + [last]:
            p = ah[:i].copy()
            p[-1] += ah[i:].sum()  # P: outliers clipped into the last bin
            nz = p > 0
            # Q: the unclipped bins merged into `levels` groups, each spread over its non-empty bins
            starts = np.array([len(a) for a in np.array_split(np.empty(i), levels)]).cumsum() - \
                np.array([len(a) for a in np.array_split(np.empty(i), levels)])
            gsum = np.add.reduceat(ah[:i], starts)
            gnz = np.add.reduceat(nz.astype(np.float64), starts)
            sizes = np.diff(np.append(starts, i))
            q = np.repeat(np.where(gnz > 0, gsum / np.maximum(gnz, 1), 0.0), sizes) * nz
            ps, qs = p.sum(), q.sum()
            if ps == 0 or qs == 0:
                continue
            pn, qn = p[nz] / ps, q[nz] / qs
            kl = float(np.sum(pn * np.log(pn / np.maximum(qn, 1e-12))))
            if kl < best:
                best, best_t = kl, i * w
        return min(best_t, amax)

    def _mse(self, spec: QuantSpec, steps: int = 80) -> tuple[float, float]:
        """Shrink the min/max range by a factor in [0.02, 1] (geometric grid) to minimise the
        expected squared error over the histogram."""
        from .specs import qparams_from_range

        e = self.edges
        centres = (e[:-1] + e[1:]) / 2
        nz = self.counts > 0
        c, n = centres[nz], self.counts[nz].astype(np.float64)
        c = np.clip(c, self.min, self.max)
        best, best_r = math.inf, (self.min, self.max)
        for f in np.geomspace(0.02, 1.0, steps):
            lo, hi = self.min * f, self.max * f
            qp = qparams_from_range(lo, hi, spec.with_(per_channel=False))
            s, z = float(qp.scale), float(qp.zero_point)
            q = np.clip(np.rint(c / s) + z, spec.dtype.qmin, spec.dtype.qmax)
            err = float(np.sum(n * ((q - z) * s - c) ** 2))
            if err < best:
                best, best_r = err, (float(lo), float(hi))
        return best_r

    # --- persistence -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        nz = np.nonzero(self.counts)[0]
        return {"kind": self.kind, "bins": self.bins, "radius": self.radius, "min": self.min, "max": self.max,
                "n": self.n, "index": nz.tolist(), "counts": self.counts[nz].tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistogramObserver:
        o = cls(int(d["bins"]))
        o.radius, o.min, o.max, o.n = float(d["radius"]), float(d["min"]), float(d["max"]), int(d["n"])
        o.counts[np.asarray(d["index"], np.int64)] = np.asarray(d["counts"], np.int64)
        return o

    def __repr__(self) -> str:
        return f"HistogramObserver(n={self.n}, min={self.min:.4g}, max={self.max:.4g})"


class ChannelAbsMaxObserver:
    """Per-channel (last axis) max |x|, for SmoothQuant. Merge is elementwise max."""

    kind = "channel_absmax"

    def __init__(self) -> None:
        self.absmax: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        if x.size == 0:
            return
        m = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0)
        if self.absmax is not None and self.absmax.shape != m.shape:
            raise GraphoptError(f"channel count changed between batches: {self.absmax.shape} vs {m.shape}")
        self.absmax = m if self.absmax is None else np.maximum(self.absmax, m)

    def merge(self, other: ChannelAbsMaxObserver) -> ChannelAbsMaxObserver:
        out = ChannelAbsMaxObserver()
        arrs = [a for a in (self.absmax, other.absmax) if a is not None]
        out.absmax = None if not arrs else (arrs[0] if len(arrs) == 1 else np.maximum(*arrs))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "absmax": None if self.absmax is None else self.absmax.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelAbsMaxObserver:
        o = cls()
        o.absmax = None if d.get("absmax") is None else np.asarray(d["absmax"], np.float32)
        return o


def observer_from_dict(d: dict[str, Any]) -> HistogramObserver | ChannelAbsMaxObserver:
    from .gptq import GramObserver

    kinds = {HistogramObserver.kind: HistogramObserver, ChannelAbsMaxObserver.kind: ChannelAbsMaxObserver,
             GramObserver.kind: GramObserver}
    try:
        return kinds[d["kind"]].from_dict(d)
    except KeyError as e:
        raise GraphoptError(f"not an observer record: {str(d)[:80]}") from e
