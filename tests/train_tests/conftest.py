"""Tiny random BERT classifiers (the BBC classifier's shape, a few thousand parameters) for fast tests."""

import numpy as np
import pytest


def tiny_classifier(seed: int = 0, layers: int = 4, classes: int = 3):
    import torch
    from transformers import BertConfig, BertModel

    from graphopt.models.bbc import _Classifier

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=32, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "eager"
    enc = BertModel(cfg, add_pooling_layer=False)
    return _Classifier(torch, enc, classes).eval()


def tiny_data(n: int = 48, seq: int = 12, seed: int = 0, classes: int = 3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 64, (n, seq)).astype(np.int64)
    mask = np.ones((n, seq), np.int64)
    for i, L in enumerate(rng.integers(4, seq + 1, n)):
        mask[i, L:] = 0
        ids[i, L:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            "labels": rng.integers(0, classes, n).astype(np.int64)}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two fighting a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny():
    return tiny_classifier()


@pytest.fixture
def data():
    return tiny_data()
