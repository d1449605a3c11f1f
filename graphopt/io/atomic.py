"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``.

A reader (or a crash) never sees a half-written model: either the old file or the
new one. The temporary sits in the target's directory so the rename stays on one
file system.

>>> with atomic_write("out.onnx") as tmp:      # doctest: +SKIP
...     tmp.write_bytes(data)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
