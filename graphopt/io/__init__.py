"""Model import and export: ONNX in and out (the only code that touches protobuf)."""

from . import schemas
from .onnx_export import save, to_onnx
from .onnx_import import from_onnx, load
from .shape_inference import infer_shapes, register_shape_rule
from .torch_import import from_torch

schemas.install()  # graph.verify() checks op arity against onnx's schemas

__all__ = ["load", "save", "from_onnx", "to_onnx", "infer_shapes", "register_shape_rule", "from_torch"]
