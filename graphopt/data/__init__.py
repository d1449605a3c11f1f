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

__all__ = ["sentences", "sentence_batches", "SPLITS"]

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


def sentence_batches(input_names: list[str], split: str = "calib", count: int = 100, *, batch: int = 10,
                     max_length: int = 128) -> list[dict]:
    """The shipped sentences of ``split`` tokenized for a BERT-class model (the bundled MiniLM's
    tokenizer), as feed dicts of ``batch`` sentences padded to the longest: a calibration data
    source for ``graphopt.quantize`` (and the CLI's default for models with ``input_ids``).

    Needs the ``models`` extra (transformers and the bundled MiniLM).
    """
    import numpy as np

    if "input_ids" not in input_names:
        raise GraphoptError(f"the shipped sentences feed models with an 'input_ids' input (inputs: {input_names})")
    from ..errors import require

    require("transformers", "models", "tokenizing the shipped sentences")
    from ..models import minilm_tokenizer

    tok = minilm_tokenizer()
    sents = sentences(split, count)
    out = []
    for i in range(0, len(sents), batch):
        enc = tok(sents[i:i + batch], padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        out.append({n: enc[n].astype(np.int64) for n in input_names if n in enc})
    return out
