"""The pass contract: a named object with ``run(model, ctx) -> PassResult``."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ..ir import Model
from .context import PassContext

__all__ = ["Pass", "PassResult"]


@dataclass(frozen=True)
class PassResult:
    """What a pass did: whether it changed the model, and counters (e.g. ``{"fused": 6}``)."""

    modified: bool
    stats: Mapping[str, int] = field(default_factory=dict)


class Pass(abc.ABC):
    """A rewrite or analysis over a :class:`~graphopt.ir.Model`, in place.

    Passes keep no state between runs; options are constructor arguments.
    An analysis returns ``PassResult(False)`` and must not mutate the model.

    >>> class CountNodes(Pass):
    ...     name = "count-nodes"
    ...     description = "count nodes (analysis)"
    ...     def run(self, model, ctx):
    ...         return PassResult(False, {"nodes": len(model.graph)})
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def requires(self, model: Model) -> None:
        """Raise PreconditionError if the pass cannot run on ``model`` (optional)."""

    @abc.abstractmethod
    def run(self, model: Model, ctx: PassContext) -> PassResult: ...

    def ensures(self, model: Model) -> None:
        """Raise PostconditionError if the pass did not establish its promise (optional)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
