"""Textual pipelines (MLIR-style) and named presets.

Grammar::

    pipeline := item ("," item)*
    item     := NAME | NAME "(" [arg ("," arg)*] ")"
    arg      := KEY "=" VALUE | item          # items only inside fixpoint(...)

``fixpoint(a,b,max=4)`` repeats ``a,b`` until nothing changes; other passes
take ``key=value`` options as constructor arguments (ints, floats, true/false,
otherwise strings). A preset name (``O1``, ``O2``) expands to its
pipeline; presets are registered by ``graphopt.passes.pipelines``.

>>> [p.name for p in parse_pipeline("fold-constants,fixpoint(cse,remove-unused,max=4)")]   # doctest: +SKIP
['fold-constants', 'fixpoint']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import GraphoptError
from .pass_ import Pass
from .registry import _load_builtin, get_pass

__all__ = ["parse_pipeline", "format_pipeline", "register_preset", "presets", "preset_text", "pipeline_for_level"]

#: name -> function returning the preset's pipeline text (evaluated lazily, so
#: passes registered later, e.g. fusions, are included).
_PRESETS: dict[str, Callable[[], str]] = {}


def register_preset(name: str, fn: Callable[[], str]) -> None:
    """Register a named pipeline: ``register_preset("O1", lambda: "fold-constants,cse")``."""
    _PRESETS[name] = fn


def presets() -> dict[str, str]:
    """Every registered preset and its current pipeline text."""
    _load_builtin()
    return {k: fn() for k, fn in sorted(_PRESETS.items())}


def preset_text(name: str) -> str:
    _load_builtin()
    if name not in _PRESETS:
        raise GraphoptError(f"unknown preset '{name}'; presets: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]()


_TOKEN = re.compile(r"\s*(?:([A-Za-z0-9_.\-]+)|(\()|(\))|(,)|(=))")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise GraphoptError(f"cannot parse pipeline {text!r} at position {pos}: {text[pos:pos + 20]!r}")
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _value(s: str) -> Any:
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


class _Parser:
    def __init__(self, text: str, depth: int = 0) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = depth

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        t = self.peek()
        if t is None or (want is not None and t != want):
            raise GraphoptError(f"cannot parse pipeline {self.text!r}: expected {want or 'a name'}, "
                                f"got {t or 'the end'}")
        self.i += 1
        return t

    def items(self, stop: str | None) -> tuple[list[Pass], dict[str, Any]]:
        passes: list[Pass] = []
        opts: dict[str, Any] = {}
        while True:
            if self.peek() == stop:
                break
            name = self.take()
            if name in "(),=":
                raise GraphoptError(f"cannot parse pipeline {self.text!r}: unexpected {name!r}")
            if self.peek() == "=":
                self.take("=")
                opts[name] = _value(self.take())
            else:
                passes.extend(self.item(name))
            if self.peek() == ",":
                self.take(",")
                continue
            break
        return passes, opts

    def item(self, name: str) -> list[Pass]:
        if self.peek() == "(":
            self.take("(")
            inner, opts = self.items(")")
            self.take(")")
        else:
            inner, opts = [], {}
        if name == "fixpoint":
            from .manager import Fixpoint

            bad = set(opts) - {"max"}
            if bad:
                raise GraphoptError(f"fixpoint takes only max=N, got {sorted(bad)}")
            if not inner:
                raise GraphoptError("fixpoint(...) needs at least one pass")
            return [Fixpoint(inner, int(opts.get("max", 4)))]
        if inner:
            raise GraphoptError(f"pass '{name}' takes key=value options, not passes")
        _load_builtin()
        if name in _PRESETS and not opts:
            if self.depth > 8:
                raise GraphoptError(f"preset '{name}' expands recursively")
            return _Parser(_PRESETS[name](), self.depth + 1).all()
        cls = get_pass(name)  # unknown names raise, listing the registered passes
        try:
            return [cls(**opts)]
        except TypeError as e:
            raise GraphoptError(f"pass '{name}' does not accept options {opts}: {e}") from e

    def all(self) -> list[Pass]:
        if not self.toks:
            return []
        passes, opts = self.items(None)
        if opts:
            raise GraphoptError(f"cannot parse pipeline {self.text!r}: options {sorted(opts)} outside a pass")
        if self.peek() is not None:
            raise GraphoptError(f"cannot parse pipeline {self.text!r}: unexpected {self.peek()!r}")
        return passes


def parse_pipeline(text: str) -> list[Pass]:
    """Pass objects for a pipeline text or preset name; unknown names raise a
    GraphoptError listing the registered passes and presets."""
    return _Parser(text).all()


def pipeline_for_level(level: str) -> list[Pass]:
    """The passes of a preset: ``PassManager(pipeline_for_level("O2"))``."""
    return parse_pipeline(preset_text(level))


def format_pipeline(passes: Sequence[Pass]) -> str:
    """The text form of a list of passes (inverse of :func:`parse_pipeline` for option-less passes)."""
    from .manager import Fixpoint

    parts = []
    for p in passes:
        if isinstance(p, Fixpoint):
            parts.append(f"fixpoint({format_pipeline(p.passes)},max={p.max_iters})")
        else:
            parts.append(p.name)
    return ",".join(parts)
