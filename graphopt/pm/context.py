"""PassContext: the scoped settings a pipeline runs under."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphoptError

__all__ = ["PassContext", "register_config", "CONFIG_KEYS"]

#: Declared config keys: name -> (type, default, help). A typo fails loudly.
CONFIG_KEYS: dict[str, tuple[type, Any, str]] = {}


def register_config(key: str, typ: type, default: Any, help: str = "") -> None:
    CONFIG_KEYS[key] = (typ, default, help)


_local = threading.local()


@dataclass
class PassContext:
    """``with PassContext(disabled={"fuse-attention"}): pm(model)``. (Levels are presets -- O1, O2 --
    chosen by the pipeline, not a context field.)"""

    disabled: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    target: str = "onnxruntime"  # "onnxruntime" | "native" | "openvino"
    config: dict[str, Any] = field(default_factory=dict)
    instruments: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.disabled = frozenset(self.disabled)
        self.required = frozenset(self.required)
        for k, v in self.config.items():
            if k not in CONFIG_KEYS:
                raise GraphoptError(f"unknown pass config key '{k}' (declared: {sorted(CONFIG_KEYS)})")
            typ = CONFIG_KEYS[k][0]
            if not isinstance(v, typ):
                raise GraphoptError(f"pass config '{k}' must be {typ.__name__}, got {type(v).__name__}")

    def get(self, key: str) -> Any:
        if key not in CONFIG_KEYS:
            raise GraphoptError(f"unknown pass config key '{key}'")
        return self.config.get(key, CONFIG_KEYS[key][1])

    def __enter__(self) -> PassContext:
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _local.stack.pop()

    @staticmethod
    def current() -> PassContext:
        stack = getattr(_local, "stack", None)
        return stack[-1] if stack else PassContext()
