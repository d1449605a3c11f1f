"""The systems timed by ``graphopt bench-kernels``: ours and the peers.

Each system turns a GEMM problem into a zero-argument callable (or ``None``
when its library is missing), so the timing loop treats all of them alike.
Optional peers (torch, onnxruntime, threadpoolctl) are imported lazily and
skipped gracefully when absent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..runtime import kernels as gk

logger = logging.getLogger(__name__)

Call = Callable[[], object]


@dataclass
class Problem:
    """One GEMM shape with its inputs in every dtype the systems need."""

    M: int
    K: int
    N: int
    a_f32: np.ndarray = field(repr=False)
    b_f32: np.ndarray = field(repr=False)
    a_u8: np.ndarray = field(repr=False)
    b_s8: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)

    @classmethod
    def make(cls, M: int, K: int, N: int, seed: int = 0) -> Problem:
        rng = np.random.default_rng(seed)
        return cls(M, K, N,
                   a_f32=rng.standard_normal((M, K)).astype(np.float32),
                   b_f32=(rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32),
                   a_u8=rng.integers(0, 256, (M, K), dtype=np.uint8),
                   b_s8=rng.integers(-127, 128, (K, N), dtype=np.int8),
                   bias=rng.standard_normal(N).astype(np.float32))


@dataclass(frozen=True)
class System:
    """A timed system. ``kind`` is the precision class it is compared within."""

    name: str
    kind: str  # "int8" | "bf16" | "fp32"
    ours: bool
    build: Callable[[Problem, int], Call | None]
    note: str = ""


# ------------------------------------------------------------------ ours

def _ours_int8(p: Problem, threads: int) -> Call:
    w = gk.pack_int8(p.b_s8, np.full(p.N, 0.01, np.float32), 0)
    a, bias = p.a_u8, p.bias
    return lambda: gk.gemm_int8(a, w, a_scale=0.05, a_zero_point=128, bias=bias, out_dtype="f32")


def _ours_bf16(p: Problem, threads: int) -> Call:
    w = gk.pack_bf16(p.b_f32)
    a = gk.to_bf16(p.a_f32)
    return lambda: gk.gemm_bf16(a, w)


def _ours_fp32(p: Problem, threads: int) -> Call:
    w = gk.pack_f32(p.b_f32)
    a = p.a_f32
    return lambda: gk.gemm_f32(a, w)


# ------------------------------------------------------------------ numpy

@contextlib.contextmanager
def numpy_threads(n: int) -> Iterator[bool]:
    """Limit numpy's BLAS to ``n`` threads (needs threadpoolctl; yields False without it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield True


def _numpy_fp32(p: Problem, threads: int) -> Call:
    a, b = p.a_f32, p.b_f32
    return lambda: a @ b


# ------------------------------------------------------------------ onnxruntime

def _ort_session(model_bytes: bytes, threads: int) -> object | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _onnx_matmul(p: Problem, kind: str) -> bytes | None:
    try:
        import onnx  # noqa: F401 - availability check
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    if kind == "mmi":
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [p.M, p.K])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [p.M, p.N])
        inits = [numpy_helper.from_array(p.b_s8, "B"), numpy_helper.from_array(np.array(128, np.uint8), "azp")]
        node = helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])
    else:
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [p.M, p.K])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [p.M, p.N])
        inits = [numpy_helper.from_array(p.b_f32, "B")]
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    g = helper.make_graph([node], "gemm", [a], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def _ort_call(model: bytes | None, threads: int, feeds: dict[str, np.ndarray]) -> Call | None:
    sess = _ort_session(model, threads) if model else None
    if sess is None:
        return None
    return lambda: sess.run(None, feeds)  # type: ignore[attr-defined]


def _ort_matmulinteger(p: Problem, threads: int) -> Call | None:
    return _ort_call(_onnx_matmul(p, "mmi"), threads, {"A": p.a_u8})


def _ort_fp32(p: Problem, threads: int) -> Call | None:
    return _ort_call(_onnx_matmul(p, "fp32"), threads, {"A": p.a_f32})


def _ort_dynquant(p: Problem, threads: int) -> Call | None:
    model = _onnx_matmul(p, "fp32")
    if model is None:
        return None
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
        with open(src, "wb") as f:
            f.write(model)
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        with open(dst, "rb") as f:
            qmodel = f.read()
    return _ort_call(qmodel, threads, {"A": p.a_f32})


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# ------------------------------------------------------------------ openvino

def _openvino(p: Problem, threads: int, precision: str) -> Call | None:
    model = _onnx_matmul(p, "fp32")
    if model is None:
        return None
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fp32.onnx")
        with open(path, "wb") as f:
            f.write(model)
        m = core.read_model(path)
    compiled = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                             "INFERENCE_PRECISION_HINT": precision,
                                             "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    a = p.a_f32
    return lambda: req.infer({0: a})


def _openvino_fp32(p: Problem, threads: int) -> Call | None:
    return _openvino(p, threads, "f32")


def _openvino_bf16(p: Problem, threads: int) -> Call | None:
    from .._native import cpu_info
    if not cpu_info().get("avx512_bf16"):
        return None
    return _openvino(p, threads, "bf16")


# ------------------------------------------------------------------ torch

def _torch(threads: int) -> object | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _torch_matmul(p: Problem, threads: int, bf16: bool) -> Call | None:
    torch = _torch(threads)
    if torch is None:
        return None
    a, b = torch.from_numpy(p.a_f32), torch.from_numpy(p.b_f32)  # type: ignore[attr-defined]
    if bf16:
        a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)  # type: ignore[attr-defined]

    def call() -> object:
        with torch.inference_mode():  # type: ignore[attr-defined]
            return torch.matmul(a, b)  # type: ignore[attr-defined]
    return call


def _torch_fp32(p: Problem, threads: int) -> Call | None:
    return _torch_matmul(p, threads, bf16=False)


def _torch_bf16(p: Problem, threads: int) -> Call | None:
    return _torch_matmul(p, threads, bf16=True)


def _torch_dynquant(p: Problem, threads: int) -> Call | None:
    torch = _torch(threads)
    if torch is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic
            lin = torch.nn.Linear(p.K, p.N)  # type: ignore[attr-defined]
            with torch.no_grad():  # type: ignore[attr-defined]
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(p.b_f32.T)))  # type: ignore[attr-defined]
                lin.bias.copy_(torch.from_numpy(p.bias))  # type: ignore[attr-defined]
            q = quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - an optional peer; report and skip
        logger.warning("torch dynamic quantization unavailable: %s", e)
        return None
    a = torch.from_numpy(p.a_f32)  # type: ignore[attr-defined]

    def call() -> object:
        with torch.inference_mode():  # type: ignore[attr-defined]
            return q(a)
    return call


SYSTEMS: tuple[System, ...] = (
    System("ours_int8", "int8", True, _ours_int8, "u8 x s8, per-channel scale + bias + fp32 out fused"),
    System("ort_matmulinteger", "int8", False, _ort_matmulinteger, "onnxruntime MatMulInteger, u8 in, s32 out"),
    System("ort_dynquant", "int8", False, _ort_dynquant, "onnxruntime quantize_dynamic MatMul, fp32 in/out"),
    System("torch_dynquant", "int8", False, _torch_dynquant, "torch dynamic quantized Linear, fp32 in/out"),
    System("ours_bf16", "bf16", True, _ours_bf16, "bf16 in, fp32 out"),
    System("torch_bf16", "bf16", False, _torch_bf16, "torch.matmul bf16"),
    System("openvino_bf16", "bf16", False, _openvino_bf16, "OpenVINO MatMul, bf16 inference precision, fp32 in/out"),
    System("ours_fp32", "fp32", True, _ours_fp32, "fp32"),
    System("numpy_fp32", "fp32", False, _numpy_fp32, "numpy @ (BLAS)"),
    System("torch_fp32", "fp32", False, _torch_fp32, "torch.matmul fp32"),
    System("ort_fp32", "fp32", False, _ort_fp32, "onnxruntime MatMul fp32"),
    System("openvino_fp32", "fp32", False, _openvino_fp32, "OpenVINO MatMul, f32 inference precision"),
)


def set_threads(n: int) -> None:
    """Set every library's thread count that can be set at run time."""
    gk_native = gk._C  # noqa: SLF001 - the module object behind the wrappers
    gk_native.set_num_threads(n)
    torch = sys.modules.get("torch")  # never import torch just to set its threads
    if torch is not None:
        torch.set_num_threads(n)
