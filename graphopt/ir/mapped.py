"""Constants backed by memory-mapped files (see graphopt.io.external_data): how to tell
them from heap arrays, and how to hand their pages back once a pass is done with them.

Pure numpy + mmap, so passes can use it without importing the ONNX layer.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import tempfile

import numpy as np

__all__ = ["is_mapped", "mapped_empty", "release_pages", "trim_heap"]

_PAGE = mmap.PAGESIZE

try:
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # numpy < 2
    from numpy import byte_bounds as _byte_bounds


def _find_mmap(arr: np.ndarray) -> mmap.mmap | None:
    b = arr
    while b is not None and not isinstance(b, mmap.mmap):
        b = b.obj if isinstance(b, memoryview) else getattr(b, "base", None)  # frombuffer keeps a memoryview
    return b


def is_mapped(arr: np.ndarray) -> bool:
    """True if ``arr`` is a view of a memory-mapped file (not a copy in the heap)."""
    return isinstance(arr, np.ndarray) and _find_mmap(arr) is not None


def release_pages(arr: np.ndarray) -> None:
    """Drop the resident pages behind a mapped array from this process (the page cache keeps
    them; a later read faults them back). Streaming passes call it once they are done with a
    tensor so resident memory holds one tensor at a time, not every tensor read so far."""
    mm = _find_mmap(arr) if isinstance(arr, np.ndarray) else None
    if mm is None or not hasattr(mm, "madvise") or arr.nbytes < _PAGE:
        return
    base = np.frombuffer(mm, np.uint8, count=0).ctypes.data if len(mm) else 0
    low, high = _byte_bounds(arr)  # the whole extent of a strided view (e.g. a column slice)
    start = low - base
    lo = start - start % _PAGE
    hi = min(len(mm), high - base)
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError):  # advisory only
        pass


def mapped_empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A writable array backed by an unlinked temporary file (``$GRAPHOPT_TMP`` or the system's
    temporary directory) instead of the heap: a pass that builds a large new constant from mapped
    ones (e.g. the packed gate|up weight of a LLaMA MLP) fills it in slices and releases the pages
    as it goes, so the new tensor costs disk, not resident memory; ``is_mapped`` is true for it."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = max(1, count * dt.itemsize)
    with tempfile.TemporaryFile(dir=os.environ.get("GRAPHOPT_TMP")) as f:
        f.truncate(nbytes)
        mm = mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_WRITE)  # keeps its own handle on the file
    return np.frombuffer(mm, dt, count=count).reshape(shape)


def trim_heap() -> None:
    """Hand freed heap back to the OS (glibc's ``malloc_trim``; elsewhere nothing). Arrays freed by a
    streaming pass are often below glibc's adaptive mmap threshold (it rises to the largest block
    freed, up to 32 MB), so without a trim they stay in the resident set between steps."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
