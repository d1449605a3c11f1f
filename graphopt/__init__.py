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
from .io import from_onnx, infer_shapes, load, save, to_onnx
from .ir import DType, Graph, Model, Node, TensorType, Value

__version__ = "0.1.0"

__all__ = [
    "load", "save", "from_onnx", "to_onnx", "infer_shapes", "cpu_info", "set_num_threads",
    "Graph", "Model", "Node", "Value", "DType", "TensorType",
    "GraphoptError", "ModelLoadError", "PassError", "ShapeInferenceError", "UnsupportedError",
    "VerificationError",
]
