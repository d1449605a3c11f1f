"""graphopt: a compiler-style graph optimizer for deep-learning inference on CPUs.

>>> import graphopt
>>> model = graphopt.load("model.onnx")                   # doctest: +SKIP
>>> model = graphopt.optimize(model, level="O2")          # doctest: +SKIP
>>> model = graphopt.quantize(model, "calib/")            # doctest: +SKIP
>>> sess = graphopt.compile(model)                        # doctest: +SKIP
>>> graphopt.save(model, "model.int8.onnx")               # doctest: +SKIP
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
from .io import from_onnx, from_torch, infer_shapes, to_onnx  # from_torch imports torch lazily
from .api import compile, export, load, optimize, quantize, save  # the flow API
from .backends import export_openvino  # imports openvino lazily
from .ir import DType, Graph, Model, Node, TensorType, Value
from .pm.registry import add_pass_provider

add_pass_provider("graphopt.passes")  # the shipped passes, rules and presets (imported on first use)

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("graphopt")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without an install
    __version__ = "0.1.0"

__all__ = [
    "load", "save", "optimize", "quantize", "compile", "export", "from_onnx", "to_onnx", "infer_shapes", "from_torch", "export_openvino", "cpu_info", "set_num_threads",
    "Graph", "Model", "Node", "Value", "DType", "TensorType",
    "GraphoptError", "ModelLoadError", "PassError", "ShapeInferenceError", "UnsupportedError",
    "VerificationError",
]


def prune(model, data=None, *, heads: float = 0.0, ffn: float = 0.0, reconstruct: bool = True,
          sparsity: float = 0.0, pattern: str = "unstructured", scope: str = "layer", level: str = "O2",
          progress: bool = True):
    """Structured pruning of heads and FFN neurons, and weight sparsity; see :func:`graphopt.pruning.prune`.

    >>> model, report = graphopt.prune(model, batches, heads=0.25, ffn=0.25)   # doctest: +SKIP
    >>> model, report = graphopt.prune(model, sparsity=0.8, pattern="4x1")     # doctest: +SKIP
    """
    from .pruning import prune as _prune

    return _prune(model, data, heads=heads, ffn=ffn, reconstruct=reconstruct, sparsity=sparsity, pattern=pattern,
                  scope=scope, level=level, progress=progress)


__all__.append("prune")

from . import tune  # noqa: E402 - the verb: graphopt.tune(model, evaluate, data, tolerance=0.01, ...) (callable package)

__all__.append("tune")
