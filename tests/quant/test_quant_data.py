"""The shipped sentences: sizes, disjoint splits, one clean sentence per line, packaged."""

import pytest

from graphopt.data import SPLITS, sentences
from graphopt.errors import GraphoptError


def test_splits():
    calib, ev = sentences("calib"), sentences("eval")
    assert len(calib) >= 100 and len(ev) >= 300
    assert len(set(calib)) == len(calib) and len(set(ev)) == len(ev)
    assert set(calib).isdisjoint(ev)
    for s in calib + ev:
        assert s == s.strip() and s[0].isupper() and s[-1] in ".!?" and len(s.split()) >= 4
    assert sentences("eval", limit=5) == ev[:5]


def test_files_are_package_data():
    from importlib import resources

    for f in SPLITS.values():
        assert resources.files("graphopt.data").joinpath("sentences", f).is_file()


def test_unknown_split():
    with pytest.raises(GraphoptError, match="unknown sentence split"):
        sentences("train")
