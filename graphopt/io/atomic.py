"""Atomic file writes: the one place graphopt writes a user's file.

A writer writes into a private temporary directory next to the destination; only
when it finished (and any check run inside the ``with`` passed) are the files
moved into place with ``os.replace``, which is atomic on one file system. An
exception, SIGINT (KeyboardInterrupt), a full disk or a file-size limit (EFBIG:
Python ignores SIGXFSZ) leaves the previous file untouched and no temporary behind.

>>> with atomic_output("out/model.onnx") as tmp:      # doctest: +SKIP
...     onnx.save_model(proto, str(tmp))              # + tmp.parent / "model.onnx.data"
...     onnx.checker.check_model(str(tmp))            # a failing check keeps the old file
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import GraphoptError, UsageError

__all__ = ["atomic_output", "write_bytes", "write_text", "refuse_same_file"]


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s name; on success move it (and every
    sibling the writer put beside it: external data, an OpenVINO ``.bin``) into
    ``path``'s directory. Companions move first, so the main file never points at
    data that is not there yet."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        tmp = tmpdir / dst.name
        yield tmp
        if not tmp.exists():
            raise GraphoptError(f"cannot write {dst}: the writer produced no file")
        files = sorted((f for f in tmpdir.rglob("*") if f.is_file()), key=lambda f: f == tmp)  # main file last
        for f in files:
            _fsync(f)
        for f in files:
            target = dst.parent / f.relative_to(tmpdir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
        _fsync(dst.parent)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``Path.write_bytes``, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``Path.write_text``, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def refuse_same_file(src: str | os.PathLike, dst: str | os.PathLike, what: str = "-o") -> None:
    """Raise if writing ``dst`` would overwrite ``src`` (same path once resolved, or a hard/sym link)."""
    s, d = Path(src), Path(dst)
    same = s.resolve() == d.resolve()
    if not same and s.exists() and d.exists():
        same = os.path.samefile(s, d)
    if same:
        raise UsageError(f"{what} {dst} is the input file {src}; write the result to another path")


def _fsync(p: Path) -> None:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not fsync directories
        pass
    finally:
        os.close(fd)
