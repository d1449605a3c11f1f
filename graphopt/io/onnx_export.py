"""graphopt IR -> ONNX. With onnx_import, the only place protobuf is touched."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import GraphoptError, UnsupportedError
from ..ir import (
    NODE_PROPS,
    Attr,
    AttrKind,
    DType,
    Graph,
    MapType,
    Model,
    OptionalType,
    SequenceType,
    SparseTensor,
    SparseTensorType,
    TensorType,
    Value,
    ValueType,
)
from .external_data import TensorWriter, is_mapped
from .onnx_import import OMITTED
from .atomic import atomic_output

__all__ = ["save", "to_onnx", "type_to_proto", "array_to_tensor"]

logger = logging.getLogger(__name__)

_EXTERNAL_THRESHOLD = 1024  # bytes: tensors at least this big go to the external file
_INLINE_LIMIT = 512 * 2**20  # above this, an inline proto would cost a copy of every weight: go external


def to_onnx(model: Model | Graph, *, value_info: bool = True,
            omit_initializer_data: frozenset[str] | None = None,
            tensor_writer: TensorWriter | None = None) -> onnx.ModelProto:
    """Convert to a ModelProto. ``omit_initializer_data`` names initializers to
    emit as typed graph inputs instead of data (used by shape inference);
    ``tensor_writer`` writes large tensors out and the proto only refers to them."""
    if isinstance(model, Graph):
        model = Model(model)
    gp = _Exporter(value_info, omit_initializer_data or frozenset(), tensor_writer).graph(model.graph)
    mp = helper.make_model(
        gp,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(model.opset_imports.items())],
        producer_name=model.producer_name or "graphopt",
        producer_version=model.producer_version,
        doc_string=model.doc_string,
    )
    mp.ir_version = model.ir_version
    mp.domain = model.domain
    mp.model_version = model.model_version
    for k, v in model.metadata_props.items():
        mp.metadata_props.add(key=k, value=v)
    _add_missing_opsets(mp, model.graph)
    return mp


def save(model: Model | Graph, path: str | os.PathLike, *, external_data: bool | None = None,
         location: str | None = None, size_threshold: int = _EXTERNAL_THRESHOLD) -> Path:
    """Write an ONNX file atomically. ``external_data=None`` uses an external ``.data``
    file when the constants total more than ``_INLINE_LIMIT`` bytes or any of them is
    mapped from an external file; tensors of at least ``size_threshold`` bytes go there.

    With external data, each tensor is written straight from its array to the data file
    and the ModelProto only holds references: memory stays at one tensor's worth at most
    and neither a tensor nor the total is bound by protobuf's 2 GB limit.

    >>> save(model, "out.onnx")   # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = model.graph if isinstance(model, Model) else model
    if external_data is None:
        consts = [v.const for v in g.initializers.values() if v.const is not None]
        external_data = sum(c.nbytes for c in consts) > _INLINE_LIMIT or any(is_mapped(c) for c in consts)
    try:
        if external_data:
            _save_external(model, path, location or path.name + ".data", size_threshold)
        else:
            mp = to_onnx(model)
            with atomic_output(path) as tmp:  # a failed or interrupted write keeps the previous file
                onnx.save_model(mp, str(tmp))
    except (ValueError, OSError) as e:
        raise GraphoptError(f"cannot write {path}: {e}") from e
    return path


def _save_external(model: Model | Graph, path: Path, location: str, threshold: int) -> None:
    """Tensors streamed to ``location`` beside ``path``, then the small model proto; each file
    replaced atomically, data first (a mapped source stays valid: the rename keeps its inode)."""
    with atomic_output(path) as tmp:  # the data file is a companion: moved in before the model
        data = tmp.parent / location
        data.parent.mkdir(parents=True, exist_ok=True)
        with open(data, "wb") as f:
            mp = to_onnx(model, tensor_writer=TensorWriter(f, location, threshold))
        tmp.write_bytes(mp.SerializeToString())  # metadata only: every large tensor is a reference


def type_to_proto(t: ValueType | None) -> onnx.TypeProto:
    tp = onnx.TypeProto()
    if t is None:
        return tp
    if isinstance(t, (TensorType, SparseTensorType)):
        tt = tp.tensor_type if isinstance(t, TensorType) else tp.sparse_tensor_type
        tt.elem_type = t.dtype.value
        if t.shape is not None:
            shape = tt.shape
            shape.SetInParent()
            for d in t.shape:
                dim = shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                elif isinstance(d, str):
                    dim.dim_param = d
    elif isinstance(t, SequenceType):
        tp.sequence_type.SetInParent()
        if t.elem is not None:
            tp.sequence_type.elem_type.CopyFrom(type_to_proto(t.elem))
    elif isinstance(t, OptionalType):
        tp.optional_type.SetInParent()
        if t.elem is not None:
            tp.optional_type.elem_type.CopyFrom(type_to_proto(t.elem))
    elif isinstance(t, MapType):
        tp.map_type.key_type = t.key.value
        tp.map_type.value_type.CopyFrom(type_to_proto(t.value))
    return tp


def array_to_tensor(arr: np.ndarray, name: str = "", dtype: DType | None = None) -> onnx.TensorProto:
    arr = np.asarray(arr)
    try:
        t = numpy_helper.from_array(arr, name)
    except Exception as e:  # noqa: BLE001
        raise UnsupportedError(f"tensor '{name}' of numpy dtype {arr.dtype} cannot be written to ONNX: {e}") from e
    if dtype is not None and dtype is not DType.UNDEFINED and t.data_type != dtype.value:
        # e.g. a bool stored as uint8; keep the declared element type
        t = helper.make_tensor(name, dtype.value, arr.shape, arr.reshape(-1).tolist())
    return t


def _value_info(v: Value) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto()
    vi.name = v.name
    if v.type is not None:
        vi.type.CopyFrom(type_to_proto(v.type))
    if v.doc_string:
        vi.doc_string = v.doc_string
    return vi


def _sparse(sp: SparseTensor, name: str = "") -> onnx.SparseTensorProto:
    values = array_to_tensor(sp.values, name or sp.name)
    indices = array_to_tensor(np.asarray(sp.indices, dtype=np.int64))
    return helper.make_sparse_tensor(values, indices, list(sp.dims))


def _dense_to_sparse(arr: np.ndarray, name: str) -> onnx.SparseTensorProto:
    flat = arr.reshape(-1)
    idx = np.flatnonzero(flat).astype(np.int64)
    return _sparse(SparseTensor(flat[idx], idx, tuple(arr.shape), name), name)


class _Exporter:
    def __init__(self, value_info: bool, omit: frozenset[str], writer: TensorWriter | None = None) -> None:
        self.value_info = value_info
        self.omit = omit
        self.writer = writer

    def tensor(self, arr: np.ndarray, name: str = "", dtype: DType | None = None) -> onnx.TensorProto:
        """A TensorProto holding ``arr``, or referring to it in the external data file."""
        t = self.writer(arr, name, dtype) if self.writer is not None else None
        return t if t is not None else array_to_tensor(arr, name, dtype)

    def name(self, v: Value | None) -> str:
        if v is None:
            return ""
        if v.meta.get(OMITTED) and v.num_uses() == 0 and not v.is_graph_output():
            return ""
        return v.name

    def graph(self, g: Graph) -> onnx.GraphProto:
        gp = onnx.GraphProto()
        gp.name = g.name
        if g.doc_string:
            gp.doc_string = g.doc_string
        input_ids = {id(v) for v in g.inputs}
        for v in g.inputs:
            gp.input.append(_value_info(v))
        for name, v in g.initializers.items():
            if name in self.omit and id(v) not in input_ids:
                gp.input.append(_value_info(v))
                continue
            if name in g.sparse_initializers:
                gp.sparse_initializer.append(_dense_to_sparse(v.const, name))
            else:
                t = self.tensor(v.const, name, v.dtype)
                if v.doc_string:
                    t.doc_string = v.doc_string
                gp.initializer.append(t)
        for n in g:
            npb = gp.node.add()
            npb.op_type = n.op_type
            if n.domain:
                npb.domain = n.domain
            if n.name:
                npb.name = n.name
            if n.doc_string:
                npb.doc_string = n.doc_string
            if n.overload:
                npb.overload = n.overload
            for k, v in (n.meta.get(NODE_PROPS) or {}).items():
                npb.metadata_props.add(key=k, value=v)
            npb.input.extend(self.name(v) for v in n.inputs)
            outs = [self.name(o) for o in n.outputs]
            while outs and outs[-1] == "":  # trailing omitted outputs are simply absent
                outs.pop()
            npb.output.extend(outs)
            for a in n.attrs.values():
                npb.attribute.append(self.attr(a, n.label()))
            if self.value_info:
                for o in n.outputs:
                    if o.type is not None and self.name(o) and not o.is_graph_output():
                        gp.value_info.append(_value_info(o))
        for v in g.outputs:
            gp.output.append(_value_info(v))
        return gp

    def attr(self, a: Attr, where: str) -> onnx.AttributeProto:
        ap = onnx.AttributeProto()
        ap.name = a.name
        ap.type = a.kind.value
        if a.doc_string:
            ap.doc_string = a.doc_string
        if a.ref_attr_name:
            ap.ref_attr_name = a.ref_attr_name
            return ap
        k, v = a.kind, a.value
        try:
            if k is AttrKind.FLOAT:
                ap.f = float(v)
            elif k is AttrKind.INT:
                ap.i = int(v)
            elif k is AttrKind.STRING:
                ap.s = _encode(v)
            elif k is AttrKind.TENSOR:
                ap.t.CopyFrom(self.tensor(v))
            elif k is AttrKind.GRAPH:
                ap.g.CopyFrom(self.graph(v))
            elif k is AttrKind.SPARSE_TENSOR:
                ap.sparse_tensor.CopyFrom(_sparse(v))
            elif k is AttrKind.TYPE_PROTO:
                ap.tp.CopyFrom(type_to_proto(v))
            elif k is AttrKind.FLOATS:
                ap.floats.extend(float(x) for x in v)
            elif k is AttrKind.INTS:
                ap.ints.extend(int(x) for x in v)
            elif k is AttrKind.STRINGS:
                ap.strings.extend(_encode(x) for x in v)
            elif k is AttrKind.TENSORS:
                ap.tensors.extend(self.tensor(x) for x in v)
            elif k is AttrKind.GRAPHS:
                ap.graphs.extend(self.graph(x) for x in v)
            elif k is AttrKind.SPARSE_TENSORS:
                ap.sparse_tensors.extend(_sparse(x) for x in v)
            elif k is AttrKind.TYPE_PROTOS:
                ap.type_protos.extend(type_to_proto(x) for x in v)
        except (TypeError, ValueError) as e:
            raise UnsupportedError(f"node {where}: attribute '{a.name}' ({k.name}) cannot be written: {e}") from e
        return ap


def _encode(s: Any) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode("utf-8")


def _add_missing_opsets(mp: onnx.ModelProto, g: Graph) -> None:
    """Passes may introduce nodes of domains the source model did not import."""
    have = {o.domain for o in mp.opset_import}
    defaults = {"com.microsoft": 1, "graphopt": 1, "ai.onnx.ml": 3}
    for n in g.walk():
        d = n.domain
        if d not in have and d not in ("", "ai.onnx"):
            mp.opset_import.append(helper.make_opsetid(d, defaults.get(d, 1)))
            have.add(d)
