"""Data that graphopt ships: real English sentences for calibration and evaluation.

The two splits are disjoint, hand-written, everyday and factual prose, one
sentence per line (``sentences/calib.txt`` and ``sentences/eval.txt``).

>>> from graphopt.data import sentences
>>> len(sentences("calib")) >= 100 and len(sentences("eval")) >= 300
True
>>> set(sentences("calib")).isdisjoint(sentences("eval"))
True
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from ..errors import GraphoptError

__all__ = ["sentences", "SPLITS"]

#: The shipped splits and their files.
SPLITS: dict[str, str] = {"calib": "calib.txt", "eval": "eval.txt"}


@lru_cache(maxsize=None)
def _load(split: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("sentences", SPLITS[split]).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def sentences(split: str = "eval", limit: int | None = None) -> list[str]:
    """The shipped sentences of ``split`` ("calib" or "eval"), in file order.

    ``limit`` keeps the first ``limit`` sentences.

    >>> sentences("calib", limit=2)[0]
    'The kettle clicked off just as the toast popped up.'
    """
    if split not in SPLITS:
        raise GraphoptError(f"unknown sentence split '{split}'; choose one of {sorted(SPLITS)}")
    out = list(_load(split))
    return out if limit is None else out[:limit]
