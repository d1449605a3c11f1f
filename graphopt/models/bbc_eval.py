"""Scoring functions for ``graphopt tune bbc`` (``FILE.py:FUNC`` form): accuracy on the BBC
classifier's cached validation or test split, as one number or per article (1.0 / 0.0, which lets
the tuner pair candidates with fp32 article by article). ``run(feeds) -> [logits]``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from graphopt.models.bbc import accuracy, bbc_classifier, correct, load_split


@lru_cache(maxsize=2)
def _split(which: str) -> dict:
    task = bbc_classifier()
    return load_split(task.val if which == "val" else task.test)


def validation_accuracy(run: Any) -> float:
    return accuracy(run, _split("val"))


def test_accuracy(run: Any) -> float:
    return accuracy(run, _split("test"))


def validation_correct(run: Any) -> np.ndarray:
    return correct(run, _split("val"))


def test_correct(run: Any) -> np.ndarray:
    return correct(run, _split("test"))
