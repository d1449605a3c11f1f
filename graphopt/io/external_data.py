"""External tensor data without copies: memory-mapped on load, streamed on save.

Load: each tensor stored in an external data file becomes a read-only numpy view
of one shared ``mmap`` of that file, so loading costs no copy and no resident
memory until a page is read. The arrays stay mapped for as long as a value holds
them; a pass that changes a constant builds a new array (copy on write: writing to
a mapped array raises, it never reaches the file).

Save: :class:`TensorWriter` appends each large tensor's bytes straight to the data
file and returns a ``TensorProto`` that only *refers* to them, so the ``ModelProto``
never holds the weights (no 2 GB protobuf limit, per tensor or in total).

>>> ext = ExternalData("model_dir")                          # doctest: +SKIP
>>> w = ext.array(tensor_proto)   # np.ndarray backed by the file's pages   # doctest: +SKIP
"""

from __future__ import annotations

import mmap
import os
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import GraphoptError, ModelLoadError
from ..ir import DType
from ..ir.mapped import is_mapped, release_pages

__all__ = ["ExternalData", "TensorWriter", "is_external", "is_mapped", "release_pages"]  # the last two: ir.mapped

_T = onnx.TensorProto
# ONNX element types whose raw little-endian bytes are exactly numpy's layout (bf16: see _np_dtype).
_PLAIN = {_T.FLOAT, _T.UINT8, _T.INT8, _T.UINT16, _T.INT16, _T.INT32, _T.INT64, _T.BOOL, _T.FLOAT16,
          _T.DOUBLE, _T.UINT32, _T.UINT64}
_WRITE_CHUNK = 256 * 2**20  # bytes per write() call: large single writes are split by the kernel anyway


def is_external(t: onnx.TensorProto) -> bool:
    return t.HasField("data_location") and t.data_location == _T.EXTERNAL


@lru_cache(maxsize=None)
def _np_dtype(data_type: int) -> np.dtype | None:
    """The numpy dtype ``numpy_helper.to_array`` gives for ``data_type`` when it is a plain
    reinterpretation of the stored bytes, else None (those tensors are read and converted)."""
    if data_type in _PLAIN:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    if data_type == _T.BFLOAT16:  # onnx >= 1.18 returns ml_dtypes.bfloat16, older ones widen to float32
        probe = _T(data_type=data_type, dims=[1], raw_data=b"\x80\x3f")
        dt = numpy_helper.to_array(probe).dtype
        return dt if dt.itemsize == 2 else None
    return None


class ExternalData:
    """Resolves external-data tensors beside a model file to mapped arrays; one mmap per file."""

    def __init__(self, base_dir: str | os.PathLike) -> None:
        self.base = Path(base_dir).resolve()
        self._maps: dict[Path, mmap.mmap | bytes] = {}

    def _file(self, location: str) -> mmap.mmap | bytes:
        path = (self.base / location).resolve()
        if self.base not in path.parents and path != self.base:
            raise ModelLoadError(f"external data location '{location}' points outside {self.base}")
        mm = self._maps.get(path)
        if mm is None:
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            except OSError as e:
                raise ModelLoadError(f"cannot read external data file {path}: {e}") from e
            self._maps[path] = mm
        return mm

    def array(self, t: onnx.TensorProto) -> np.ndarray:
        info = {e.key: e.value for e in t.external_data}
        if "location" not in info:
            raise ModelLoadError(f"tensor '{t.name}': external data without a location")
        mm = self._file(info["location"])
        offset = int(info.get("offset", 0) or 0)
        dims = tuple(int(d) for d in t.dims)
        count = int(np.prod(dims, dtype=np.int64))
        dt = _np_dtype(t.data_type)
        length = int(info["length"]) if info.get("length") else None
        if dt is not None:
            need = count * dt.itemsize
            if length is not None and length != need or offset + need > len(mm):
                raise ModelLoadError(f"tensor '{t.name}': external data '{info['location']}' holds "
                                     f"{length if length is not None else len(mm) - offset} bytes at offset "
                                     f"{offset}, the tensor needs {need} (truncated file?)")
            arr = np.frombuffer(mm, dt, count=count, offset=offset).reshape(dims)
            return arr  # read-only: mmap was opened ACCESS_READ
        # Packed/odd types (int4, fp8, old-onnx bf16): read the bytes and let onnx convert them.
        if length is None:
            raise ModelLoadError(f"tensor '{t.name}': external data of type {t.data_type} needs a length")
        if offset + length > len(mm):
            raise ModelLoadError(f"tensor '{t.name}': external data '{info['location']}' is truncated")
        t2 = _T(name=t.name, data_type=t.data_type, dims=dims, raw_data=bytes(mm[offset:offset + length]))
        return numpy_helper.to_array(t2)


class TensorWriter:
    """Appends tensors of at least ``threshold`` bytes to an open data file and returns
    ``TensorProto`` references to them (``location`` relative to the model file)."""

    def __init__(self, f: BinaryIO, location: str, threshold: int) -> None:
        self.f = f
        self.location = location
        self.threshold = threshold
        self.offset = 0
        self.count = 0

    def __call__(self, arr: np.ndarray, name: str, dtype: DType | None) -> onnx.TensorProto | None:
        """The external reference for ``arr``, or None to keep it inline (small or not raw-writable)."""
        arr = np.asarray(arr)
        if arr.nbytes < self.threshold or arr.dtype.kind in "OUS":
            return None
        try:
            data_type = dtype.value if dtype is not None and dtype is not DType.UNDEFINED \
                else helper.np_dtype_to_tensor_dtype(arr.dtype)
        except (KeyError, ValueError):
            return None
        if _np_dtype(data_type) == arr.dtype and arr.dtype.byteorder in "=<|":
            self._align(4096 if arr.nbytes >= 1 << 16 else 64)
            start = self.offset
            self._write(arr)
            release_pages(arr)
        else:  # e.g. a bool stored as uint8 or a packed type: onnx makes the raw bytes of this one tensor
            from .onnx_export import array_to_tensor

            t = array_to_tensor(arr, name, dtype)
            if not t.raw_data:
                return None
            self._align(64)
            start = self.offset
            self._write_bytes(memoryview(t.raw_data))
            data_type = t.data_type
        t = _T(name=name, data_type=data_type, dims=arr.shape)
        t.data_location = _T.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(start)), ("length", str(self.offset - start))):
            t.external_data.add(key=k, value=v)
        self.count += 1
        return t

    def _align(self, a: int) -> None:
        pad = -self.offset % a
        if pad:
            self.f.write(b"\0" * pad)
            self.offset += pad

    def _write(self, arr: np.ndarray) -> None:
        flat = arr.reshape(-1) if arr.flags.c_contiguous else None
        if flat is None:  # a strided view (e.g. a transposed weight): one row block at a time
            rows = max(1, _WRITE_CHUNK // max(1, arr[0].nbytes)) if arr.ndim else 1
            for i in range(0, arr.shape[0], rows):
                self._write_bytes(memoryview(np.ascontiguousarray(arr[i:i + rows])).cast("B"))
            return
        view = memoryview(flat.view(np.uint8))
        self._write_bytes(view)

    def _write_bytes(self, view: memoryview) -> None:
        for i in range(0, len(view), _WRITE_CHUNK):
            n = self.f.write(view[i:i + _WRITE_CHUNK])
            if n is not None and n != len(view[i:i + _WRITE_CHUNK]):
                raise GraphoptError("short write to the external data file (disk full?)")
        self.offset += len(view)
