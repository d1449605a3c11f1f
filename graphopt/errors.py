"""The exception hierarchy. Every error graphopt raises on bad input is a GraphoptError."""

from __future__ import annotations

__all__ = [
    "GraphoptError",
    "ModelLoadError",
    "ExternalDataError",
    "UnsupportedError",
    "VerificationError",
    "ShapeInferenceError",
    "PassError",
    "PreconditionError",
    "PostconditionError",
    "KernelError",
    "UsageError",
    "MissingDependencyError",
]


class GraphoptError(Exception):
    """Base class of every graphopt error."""


class ModelLoadError(GraphoptError):
    """A model file is missing, truncated, not a protobuf, or otherwise unreadable."""


class ExternalDataError(ModelLoadError):
    """A tensor's external data is missing, not loaded, or points outside the model's folder."""


class UnsupportedError(GraphoptError):
    """An op, domain, dtype or feature that graphopt (or a target) does not support."""


class VerificationError(GraphoptError):
    """The graph breaks an IR invariant. ``problems`` lists each one."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [message])


class ShapeInferenceError(GraphoptError):
    """Shape or dtype inference found an inconsistency."""


class PassError(GraphoptError):
    """A pass raised or left the graph invalid."""


class PreconditionError(PassError):
    """A pass was asked to run on a graph it does not accept."""


class PostconditionError(PassError):
    """A pass finished but did not establish what it promises."""


class KernelError(GraphoptError):
    """A native kernel was called with arguments it cannot take."""


class UsageError(GraphoptError):
    """A verb or command was called with arguments that do not fit together (the CLI exits 2)."""


class MissingDependencyError(GraphoptError):
    """An optional dependency is not installed; the message is one line naming the extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingDependencyError` with a one-line install hint.

    >>> np = require("numpy", "dev", "the tests")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{purpose} needs {module.split('.')[0]}: "
                                     f"pip install 'graphopt[{extra}]'") from e
