"""Accuracy-driven, latency-aware tuning: ``graphopt.tune(model, evaluate, data, tolerance=0.01)``.

See :func:`graphopt.tune.api.tune`; the space, tables and strategies live in
``space``, ``tables`` and ``search``; trials run in-process or on Ray (``executor``).
"""

from .api import STRATEGIES, TuneResult, tune
from .space import Recipe, build, find_groups, make_runner
from .tables import CostTable, ErrorTable, measure_costs, measure_errors

__all__ = ["tune", "TuneResult", "STRATEGIES", "Recipe", "build", "find_groups", "make_runner", "CostTable",
           "ErrorTable", "measure_costs", "measure_errors"]


class _CallableModule(type(__import__("sys"))):
    """``graphopt.tune`` is both this package and the verb: ``graphopt.tune(model, evaluate, data)``."""

    def __call__(self, *args, **kwargs) -> TuneResult:
        return tune(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
