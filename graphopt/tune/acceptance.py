"""When a candidate's score counts as "within the tolerance".

A plain comparison of two mean scores overfits the validation set: on 334 BBC
articles one article is 0.3 %, and a search that scores dozens of candidates
finds one whose losses and gains on validation cancel while it loses on unseen
data (the 50 %-pruned model: validation equal to fp32, test 1.2 points lower).
When the user's function returns one score per sample (an array whose mean is the
score), the tuner compares each candidate with the reference *pairwise* on the
same samples and accepts it only if the one-sided lower confidence bound of the
mean paired difference stays within the allowed loss. A candidate that changes
no sample has zero spread and passes on its mean alone; one that flips many
samples both ways needs a margin. A plain float score falls back to comparing
means.

>>> acc = Acceptance.of([1.0, 1.0, 0.0, 1.0], tolerance=0.01, relative=True)
>>> acc.meets(0.75, [1.0, 1.0, 0.0, 1.0]), acc.meets(0.75, [1.0, 0.0, 1.0, 1.0])
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import GraphoptError

__all__ = ["Acceptance", "as_score"]


def as_score(value: Any) -> tuple[float, list[float] | None]:
    """``(score, per-sample scores or None)`` from what the user's function returned: a number, or
    a 1-D sequence of per-sample scores (its mean is the score)."""
    arr = np.asarray(value, np.float64)
    if arr.ndim == 0:
        return float(arr), None
    flat = arr.ravel()
    if flat.size == 0:
        raise GraphoptError("the evaluation function returned an empty array of per-sample scores")
    if not np.all(np.isfinite(flat)):
        raise GraphoptError("the evaluation function returned a non-finite per-sample score")
    return float(flat.mean()), flat.tolist()


@dataclass(frozen=True)
class Acceptance:
    """The bar a candidate must clear, from the reference score (and its per-sample scores)."""

    reference: float
    samples: tuple[float, ...] | None
    tolerance: float
    relative: bool
    confidence: float | None

    @classmethod
    def of(cls, reference: float | Sequence[float], tolerance: float, relative: bool = True,
           confidence: float | None = 0.9) -> Acceptance:
        if confidence is not None and not 0.5 <= confidence < 1:
            raise GraphoptError(f"confidence must be in [0.5, 1) or None, got {confidence}")
        ref, samples = as_score(reference)
        return cls(ref, None if samples is None else tuple(samples), tolerance, relative, confidence)

    @property
    def allowed(self) -> float:
        """The loss allowed against the reference, in score units."""
        return self.tolerance * abs(self.reference) if self.relative else self.tolerance

    @property
    def bar(self) -> float:
        return self.reference - self.allowed

    def lower_bound(self, samples: Sequence[float] | None) -> float | None:
        """One-sided lower confidence bound of mean(candidate - reference) over paired samples, or None
        when there is nothing to pair (plain scores, different lengths, or no confidence asked)."""
        if self.confidence is None or samples is None or self.samples is None or len(samples) != len(self.samples):
            return None
        d = np.asarray(samples, np.float64) - np.asarray(self.samples, np.float64)
        if d.size < 2:
            return float(d.mean())
        z = NormalDist().inv_cdf(self.confidence)
        return float(d.mean() - z * d.std(ddof=1) / math.sqrt(d.size))

    def loss(self, score: float, samples: Sequence[float] | None = None) -> float:
        """The loss compared with :attr:`allowed`: minus the paired lower bound, else the reference
        minus the score (the search learns its error-to-loss map from it)."""
        lb = self.lower_bound(samples)
        return -lb if lb is not None else self.reference - score

    def meets(self, score: float, samples: Sequence[float] | None = None) -> bool:
        return self.loss(score, samples) <= self.allowed + 1e-12

    def describe(self) -> str:
        if self.samples is not None and self.confidence is not None:
            return (f"paired lower {100 * self.confidence:.0f} % bound of the per-sample difference "
                    f">= -{self.allowed:.4f} (n={len(self.samples)})")
        return f"score >= {self.bar:.4f}"
