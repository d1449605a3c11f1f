"""Passes registered by name (kebab-case), so pipelines can be written as text."""

from __future__ import annotations

from typing import TypeVar

from ..errors import GraphoptError
from .pass_ import Pass

__all__ = ["register_pass", "get_pass", "registered_passes"]

_REGISTRY: dict[str, type[Pass]] = {}
P = TypeVar("P", bound=type[Pass])


def register_pass(cls: P) -> P:
    """Class decorator: ``@register_pass class FoldConstants(Pass): name = "fold-constants"``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no 'name'")
    other = _REGISTRY.get(name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise GraphoptError(f"pass name '{name}' registered twice ({other.__name__} and {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def _load_builtin() -> None:
    import graphopt.passes  # noqa: F401  (registers the shipped passes)


def get_pass(name: str) -> type[Pass]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphoptError(f"unknown pass '{name}'; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered_passes() -> dict[str, type[Pass]]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


