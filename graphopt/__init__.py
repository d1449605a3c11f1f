"""graphopt: a compiler-style graph optimizer for deep-learning inference on CPUs.

>>> import graphopt
>>> model = graphopt.load("model.onnx")          # doctest: +SKIP
>>> graphopt.save(model, "roundtrip.onnx")       # doctest: +SKIP
"""

from ._native import cpu_info, set_num_threads
from .errors import (
    GraphoptError,
    ModelLoadError,
    PassError,
    ShapeInferenceError,
    UnsupportedError,
    VerificationError,
)
from .io import from_onnx, from_torch, infer_shapes, load, save, to_onnx  # from_torch imports torch lazily
from .backends import export_openvino  # imports openvino lazily
from .ir import DType, Graph, Model, Node, TensorType, Value

__version__ = "0.1.0"

__all__ = [
    "load", "save", "from_onnx", "to_onnx", "infer_shapes", "from_torch", "export_openvino", "cpu_info", "set_num_threads",
    "Graph", "Model", "Node", "Value", "DType", "TensorType",
    "GraphoptError", "ModelLoadError", "PassError", "ShapeInferenceError", "UnsupportedError",
    "VerificationError",
]


def compile(model, precision: str = "fp32", num_threads: int | None = None, **kwargs):  # noqa: A001 - the public name
    """Compile ``model`` for graphopt's native runtime; see :func:`graphopt.runtime.compile.compile`.

    >>> sess = graphopt.compile(model, precision="int8")   # doctest: +SKIP
    >>> outputs = sess.run(feeds)                           # doctest: +SKIP
    """
    from .runtime.compile import compile as _compile

    return _compile(model, precision, num_threads, **kwargs)


__all__.append("compile")


def prune(model, data, *, heads: float = 0.0, ffn: float = 0.0, reconstruct: bool = True, progress: bool = True):
    """Structured pruning of heads and FFN neurons; see :func:`graphopt.pruning.prune`.

    >>> model, report = graphopt.prune(model, batches, heads=0.25, ffn=0.25)   # doctest: +SKIP
    """
    from .pruning import prune as _prune

    return _prune(model, data, heads=heads, ffn=ffn, reconstruct=reconstruct, progress=progress)


__all__.append("prune")

from . import tune  # noqa: E402 - the verb: graphopt.tune(model, evaluate, data, tolerance=0.01, ...) (callable package)

__all__.append("tune")
