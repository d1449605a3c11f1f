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
