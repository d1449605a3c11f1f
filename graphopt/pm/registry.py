"""Passes registered by name (kebab-case), so pipelines can be written as text."""

from __future__ import annotations

from typing import TypeVar

from ..errors import GraphoptError
from .pass_ import Pass

__all__ = ["register_pass", "get_pass", "registered_passes", "add_pass_provider", "load_providers"]

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


#: Modules imported (once, before the first lookup) for the passes, rules and presets they
#: register. The package root adds the shipped ``graphopt.passes``; a plugin adds its own.
#: The pass infrastructure itself knows no concrete pass.
_PROVIDERS: list[str] = []
_LOADED: set[str] = set()


def add_pass_provider(module: str) -> None:
    """Import ``module`` before the registry is next consulted (it registers passes on import)."""
    if module not in _PROVIDERS:
        _PROVIDERS.append(module)


def load_providers() -> None:
    """Import every pass provider not imported yet."""
    import importlib

    for module in list(_PROVIDERS):
        if module not in _LOADED:
            _LOADED.add(module)
            importlib.import_module(module)


def _load_builtin() -> None:
    load_providers()


def get_pass(name: str) -> type[Pass]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphoptError(f"unknown pass '{name}'; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered_passes() -> dict[str, type[Pass]]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


