"""The docstring examples of the pattern and pass-manager APIs run."""

import doctest
import importlib
import sys

import pytest


@pytest.mark.parametrize("name", ["graphopt.pattern.rule", "graphopt.pattern.dsl", "graphopt.pattern.testing",
                                  "graphopt.pm.manager", "graphopt.ir.clone", "graphopt.api", "graphopt.ir.domains",
                                  "graphopt.errors", "graphopt.data", "graphopt.quant.testing", "graphopt.pm.pass_"])
def test_docstring_examples(name):
    importlib.import_module(name)
    res = doctest.testmod(sys.modules[name], optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
