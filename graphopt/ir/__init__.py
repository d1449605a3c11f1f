"""graphopt's IR: Values with use-def chains, Nodes, Graphs, Models.

This package imports neither onnx nor torch (a test checks it).
"""

from ._core import NODE_PROPS, Attr, AttrKind, Graph, Meta, MetaKey, Model, Node, SparseTensor, Value
from ._types import (
    DType,
    Dim,
    MapType,
    OptionalType,
    SequenceType,
    Shape,
    SparseTensorType,
    TensorType,
    ValueType,
    shape_str,
)
from .printer import format_graph, format_model, format_node
from .verify import assert_valid, topological_order, verify

__all__ = [
    "NODE_PROPS", "Attr", "AttrKind", "Graph", "Meta", "MetaKey", "Model", "Node", "SparseTensor", "Value",
    "DType", "Dim", "MapType", "OptionalType", "SequenceType", "Shape", "SparseTensorType",
    "TensorType", "ValueType", "shape_str", "format_graph", "format_model", "format_node",
    "assert_valid", "topological_order", "verify",
]
