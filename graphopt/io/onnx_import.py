"""ONNX -> graphopt IR. One of the two places protobuf is touched."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import ExternalDataError, ModelLoadError, UnsupportedError
from ..ir import (
    NODE_PROPS,
    Attr,
    AttrKind,
    DType,
    Graph,
    MapType,
    Model,
    Node,
    OptionalType,
    SequenceType,
    SparseTensor,
    SparseTensorType,
    TensorType,
    Value,
    ValueType,
)
from .external_data import ExternalData, is_external

__all__ = ["load", "from_onnx", "type_from_proto", "array_from_tensor"]

logger = logging.getLogger(__name__)

OMITTED = "onnx_omitted_output"  # meta flag: the ONNX node left this optional output unnamed


def load(model: str | os.PathLike | bytes | onnx.ModelProto, *, load_external_data: bool = True,
         inline_functions: bool = True) -> Model:
    """Load an ONNX model (path, bytes or ModelProto) into the IR.

    Local functions are inlined; external data is read from beside the file.

    >>> m = load("model.onnx")            # doctest: +SKIP
    >>> print(m.graph.op_counts())         # doctest: +SKIP
    """
    if isinstance(model, onnx.ModelProto):
        proto = model
        where = "<ModelProto>"
    elif isinstance(model, (bytes, bytearray)):
        where = "<bytes>"
        proto = _parse(bytes(model), where)
    else:
        path = Path(model)
        where = str(path)
        if not path.exists():
            raise ModelLoadError(f"model file not found: {path}")
        if path.is_dir():
            raise ModelLoadError(f"{path} is a directory, not an ONNX model file")
        proto = _parse(path.read_bytes(), where)
        if load_external_data and _uses_external_data(proto):
            _check_external_data(proto, path)
            # Mapped, not read: the weights stay in the file's pages (see external_data.py).
            return from_onnx(proto, inline_functions=inline_functions, source=where,
                             external=ExternalData(path.parent))
    return from_onnx(proto, inline_functions=inline_functions, source=where)


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Every external tensor must lie beside ``path``: a location that is absolute, leaves the
    model's folder (``../``, a symlink) or is missing is refused naming the tensor."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    base = path.parent.resolve()
    for t in _get_all_tensors(proto):
        if not uses_external_data(t):
            continue
        loc = ExternalDataInfo(t).location
        target = (base / loc).resolve()
        if not loc or Path(loc).is_absolute() or not target.is_relative_to(base):
            raise ExternalDataError(f"{path}: tensor '{t.name}': external data location '{loc}' "
                                    "points outside the model's folder; refused")
        if not target.is_file():
            raise ExternalDataError(f"{path}: tensor '{t.name}': external data file '{loc}' not found "
                                    f"next to the model")


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"{where}: file is empty")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{where}: not a valid ONNX protobuf (truncated or not an ONNX file): {e}") from e
    if not proto.HasField("graph") or proto.ir_version == 0 and not proto.opset_import:
        raise ModelLoadError(f"{where}: parsed, but holds no ONNX graph (not an ONNX model file?)")
    return proto


def _uses_external_data(proto: onnx.ModelProto) -> bool:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return any(uses_external_data(t) for t in _get_all_tensors(proto))


def from_onnx(proto: onnx.ModelProto, *, inline_functions: bool = True, source: str = "<model>",
              external: ExternalData | None = None) -> Model:
    """Convert a ModelProto to a :class:`Model`. Tensors stored as external data are
    memory-mapped through ``external`` (without it, their data must be loaded)."""
    if inline_functions and len(proto.functions):
        try:
            import onnx.inliner

            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as e:  # onnx raises bare RuntimeErrors from C++
            raise ModelLoadError(f"{source}: cannot inline local functions: {e}") from e
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    known_domains = set(opsets) | {f.domain for f in proto.functions}
    graph = _Importer(source, known_domains, external).graph(proto.graph, outer=None)
    return Model(
        graph=graph,
        opset_imports=opsets,
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=proto.model_version,
        doc_string=proto.doc_string,
        metadata_props={p.key: p.value for p in proto.metadata_props},
    )


def type_from_proto(tp: onnx.TypeProto) -> ValueType | None:
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        t = tp.tensor_type
        return TensorType(DType(t.elem_type), _shape(t) if t.HasField("shape") else None)
    if which == "sparse_tensor_type":
        t = tp.sparse_tensor_type
        return SparseTensorType(DType(t.elem_type), _shape(t) if t.HasField("shape") else None)
    if which == "sequence_type":
        return SequenceType(type_from_proto(tp.sequence_type.elem_type)
                            if tp.sequence_type.HasField("elem_type") else None)
    if which == "optional_type":
        return OptionalType(type_from_proto(tp.optional_type.elem_type)
                            if tp.optional_type.HasField("elem_type") else None)
    if which == "map_type":
        return MapType(DType(tp.map_type.key_type), type_from_proto(tp.map_type.value_type))
    return None


def _shape(t: Any) -> tuple:
    dims: list[int | str | None] = []
    for d in t.shape.dim:
        w = d.WhichOneof("value")
        if w == "dim_value" and d.dim_value < 0:
            raise ValueError(f"declares dimension {d.dim_value} (dimensions are >= 0)")
        dims.append(d.dim_value if w == "dim_value" else d.dim_param if w == "dim_param" else None)
    return tuple(dims)


def array_from_tensor(t: onnx.TensorProto, where: str = "") -> np.ndarray:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        # Never let onnx resolve the location against the working directory: without a model
        # path (bytes, a ModelProto, load_external_data=False) there is no folder to read from.
        loc = next((e.value for e in t.external_data if e.key == "location"), "?")
        raise ExternalDataError(f"{where}tensor '{t.name}' keeps its data in external file '{loc}', which was not "
                                "loaded (a model given as bytes or ModelProto, or load_external_data=False); "
                                "load the model from its file path")
    if any(d < 0 for d in t.dims):
        raise ModelLoadError(f"{where}tensor '{t.name}' has a negative dimension {list(t.dims)}")
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - onnx raises several kinds here
        raise ModelLoadError(f"{where}tensor '{t.name}' cannot be read: {e}") from e


class _Importer:
    def __init__(self, source: str, known_domains: set[str], external: ExternalData | None = None) -> None:
        self.source = source
        self.known_domains = known_domains
        self.external = external

    def array(self, t: onnx.TensorProto, where: str) -> np.ndarray:
        if self.external is not None and is_external(t):
            return self.external.array(t)
        return array_from_tensor(t, where)

    def graph(self, gp: onnx.GraphProto, outer: dict[str, Value] | None, parent: Node | None = None) -> Graph:
        g = Graph(gp.name, doc_string=gp.doc_string)
        scope: dict[str, Value] = dict(outer or {})
        vinfo = {vi.name: vi for vi in gp.value_info}

        for vi in gp.input:
            v = g.add_input(Value(vi.name, self.vtype(vi), doc_string=vi.doc_string))
            scope[vi.name] = v
        for t in gp.initializer:
            arr = self.array(t, f"{self.source}: ")
            v = scope.get(t.name) if t.name in {i.name for i in gp.input} else None
            if v is not None:  # an input with a default value (IR < 4 style)
                v.const = arr
                g.initializers[v.name] = v
            else:
                v = g.add_initializer(Value(t.name, _tensor_type(t, arr), const=arr, doc_string=t.doc_string))
                scope[t.name] = v
        for st in gp.sparse_initializer:
            sp = self._sparse(st)
            dense = sp.to_dense()
            name = st.values.name
            v = g.add_initializer(Value(name, TensorType(DType.from_numpy(dense.dtype), tuple(dense.shape)),
                                        const=dense))
            g.sparse_initializers.add(v.name)
            scope[name] = v

        for np_ in gp.node:
            node = self.node(np_, scope, g)
            g.append(node)
            for o, name in zip(node.outputs, np_.output):
                if name:
                    scope[name] = o
                    vi = vinfo.get(name)
                    if vi is not None:
                        o.type = self.vtype(vi)
                        o.doc_string = vi.doc_string

        outs = []
        for vi in gp.output:
            v = scope.get(vi.name)
            if v is None:
                raise ModelLoadError(f"{self.source}: graph {gp.name!r} output '{vi.name}' is not produced "
                                     "by any node, input or initializer")
            t = self.vtype(vi)
            if t is not None and (v.type is None or _more_specific(t, v.type)):
                v.type = t
            outs.append(v)
        g.outputs = outs
        return g

    def vtype(self, vi: onnx.ValueInfoProto) -> ValueType | None:
        try:
            return type_from_proto(vi.type)
        except ValueError as e:
            raise ModelLoadError(f"{self.source}: value '{vi.name}' {e}") from e

    def node(self, np_: onnx.NodeProto, scope: dict[str, Value], g: Graph) -> Node:
        label = f"{np_.op_type} '{np_.name}'" if np_.name else f"{np_.op_type} (output '{np_.output[0] if np_.output else ''}')"
        domain = "" if np_.domain == "ai.onnx" else np_.domain
        if domain == "" and "" not in self.known_domains:
            raise ModelLoadError(f"{self.source}: node {label} is a default-domain ONNX op, but the model has no "
                                 "default-domain opset_import (which opset version is it?)")
        if domain not in self.known_domains and domain != "":
            raise UnsupportedError(f"{self.source}: node {label} uses op domain '{domain}', which the model "
                                   f"does not import (opset_import has: {sorted(self.known_domains)})")
        inputs: list[Value | None] = []
        for i, name in enumerate(np_.input):
            if not name:
                inputs.append(None)
                continue
            v = scope.get(name)
            if v is None:
                raise ModelLoadError(f"{self.source}: node {label} input {i} '{name}' is not defined "
                                     "(no node produces it and it is not a graph input or initializer)")
            inputs.append(v)
        outputs: list[Value] = []
        for name in np_.output:
            if name:
                if name in scope and scope[name].graph is g and not scope[name].meta.get(OMITTED):
                    raise ModelLoadError(f"{self.source}: value '{name}' is produced twice (again by node {label})")
                outputs.append(Value(name))
            else:
                v = Value("")
                v.meta[OMITTED] = True
                outputs.append(v)
        node = Node(np_.op_type, inputs, domain=domain, outputs=outputs, name=np_.name,
                    doc_string=np_.doc_string)
        node.overload = getattr(np_, "overload", "")
        if len(getattr(np_, "metadata_props", ())):
            node.meta[NODE_PROPS] = {p.key: p.value for p in np_.metadata_props}
        for ap in np_.attribute:
            node.attrs[ap.name] = self.attr(ap, scope, node)
        return node

    def attr(self, ap: onnx.AttributeProto, scope: dict[str, Value], node: Node) -> Attr:
        A = onnx.AttributeProto
        kind = AttrKind(ap.type) if ap.type else None
        if kind is None:
            raise ModelLoadError(f"{self.source}: attribute '{ap.name}' of {node.label()} has no type")
        if ap.ref_attr_name:
            return Attr(ap.name, kind, None, ap.doc_string, ap.ref_attr_name)
        t = ap.type
        if t == A.FLOAT:
            val: Any = ap.f
        elif t == A.INT:
            val = ap.i
        elif t == A.STRING:
            val = _decode(ap.s)
        elif t == A.TENSOR:
            val = self.array(ap.t, f"{self.source}: {node.label()}: ")
        elif t == A.GRAPH:
            val = self.graph(ap.g, scope)
        elif t == A.SPARSE_TENSOR:
            val = self._sparse(ap.sparse_tensor)
        elif t == A.TYPE_PROTO:
            val = type_from_proto(ap.tp)
        elif t == A.FLOATS:
            val = list(ap.floats)
        elif t == A.INTS:
            val = list(ap.ints)
        elif t == A.STRINGS:
            val = [_decode(s) for s in ap.strings]
        elif t == A.TENSORS:
            val = [self.array(x, f"{self.source}: {node.label()}: ") for x in ap.tensors]
        elif t == A.GRAPHS:
            val = [self.graph(x, scope) for x in ap.graphs]
        elif t == A.SPARSE_TENSORS:
            val = [self._sparse(x) for x in ap.sparse_tensors]
        elif t == A.TYPE_PROTOS:
            val = [type_from_proto(x) for x in ap.type_protos]
        else:  # pragma: no cover
            raise UnsupportedError(f"{self.source}: attribute '{ap.name}' of {node.label()} has unknown type {t}")
        return Attr(ap.name, kind, val, ap.doc_string)

    def _sparse(self, st: onnx.SparseTensorProto) -> SparseTensor:
        values = self.array(st.values, f"{self.source}: ")
        indices = self.array(st.indices, f"{self.source}: ").astype(np.int64)
        return SparseTensor(values, indices, tuple(int(d) for d in st.dims), st.values.name)


def _tensor_type(t: onnx.TensorProto, arr: np.ndarray) -> TensorType:
    return TensorType(DType(t.data_type), tuple(int(d) for d in t.dims))


def _decode(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _more_specific(a: ValueType, b: ValueType) -> bool:
    """True if type ``a`` says more than ``b`` (known rank/dims where b has none)."""
    sa, sb = getattr(a, "shape", None), getattr(b, "shape", None)
    if sb is None:
        return sa is not None
    if sa is None or len(sa) != len(sb):
        return False
    return sum(d is not None for d in sa) > sum(d is not None for d in sb)
