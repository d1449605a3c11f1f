"""The IR: Value-centred DAG with automatic use-def chains.

A :class:`Value` knows its producer (a :class:`Node` and output index) and its
uses (``(node, input_index)`` pairs). Every mutation of node inputs goes through
:meth:`Node.set_input`, which keeps the use lists right. A :class:`Graph` holds
its nodes in a doubly linked list, so insertion and removal are O(1) and a
graph can be mutated while it is being iterated.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ._types import DType, Shape, TensorType, ValueType

__all__ = [
    "AttrKind",
    "Attr",
    "SparseTensor",
    "Value",
    "Node",
    "Graph",
    "Model",
    "MetaKey",
    "Meta",
]

T = TypeVar("T")


class MetaKey(Generic[T]):
    """A typed key for :class:`Meta`: ``QUANT: MetaKey[QuantSpec] = MetaKey("quant")``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"MetaKey({self.name!r})"


class Meta(dict):
    """Metadata attached to a value, node or graph, keyed by :class:`MetaKey`.

    Plain dict otherwise; ``meta.get(KEY)`` is typed by the key.
    """

    def get(self, key: MetaKey[T], default: T | None = None) -> T | None:  # type: ignore[override]
        return super().get(key, default)


#: a node's ONNX ``metadata_props`` (string key -> string value): read on import, written on export,
#: so a mark a pass leaves on a node (e.g. ``graphopt.sparse``) survives save/load. Replace the dict
#: to change it (clones share it).
NODE_PROPS: MetaKey[dict[str, str]] = MetaKey("node_props")


class AttrKind(enum.Enum):
    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    SPARSE_TENSOR = 11
    TYPE_PROTO = 13
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    SPARSE_TENSORS = 12
    TYPE_PROTOS = 14


@dataclass
class SparseTensor:
    """A COO sparse tensor: ``values`` at ``indices`` (shape [NNZ] or [NNZ, rank]) in ``dims``."""

    values: np.ndarray
    indices: np.ndarray
    dims: tuple[int, ...]
    name: str = ""

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.dims, dtype=self.values.dtype)
        if self.indices.ndim == 1:
            out.reshape(-1)[self.indices] = self.values
        else:
            out[tuple(self.indices.T)] = self.values
        return out


@dataclass
class Attr:
    """A node attribute. ``value`` is a Python scalar/str/bytes, a numpy array
    (TENSOR), a :class:`Graph` (GRAPH), a :class:`SparseTensor`, a ValueType, or a
    list of those for the plural kinds."""

    name: str
    kind: AttrKind
    value: Any
    doc_string: str = ""
    ref_attr_name: str = ""  # only in function bodies (functions are inlined on import)

    def subgraphs(self) -> list[Graph]:
        if self.kind is AttrKind.GRAPH:
            return [self.value]
        if self.kind is AttrKind.GRAPHS:
            return list(self.value)
        return []

    @staticmethod
    def infer(name: str, value: Any) -> Attr:
        """Build an Attr, inferring its kind from a Python value."""
        if isinstance(value, Attr):
            return value
        if isinstance(value, bool):
            return Attr(name, AttrKind.INT, int(value))
        if isinstance(value, (int, np.integer)):
            return Attr(name, AttrKind.INT, int(value))
        if isinstance(value, (float, np.floating)):
            return Attr(name, AttrKind.FLOAT, float(value))
        if isinstance(value, (str, bytes)):
            return Attr(name, AttrKind.STRING, value)
        if isinstance(value, np.ndarray):
            return Attr(name, AttrKind.TENSOR, value)
        if isinstance(value, Graph):
            return Attr(name, AttrKind.GRAPH, value)
        if isinstance(value, SparseTensor):
            return Attr(name, AttrKind.SPARSE_TENSOR, value)
        if isinstance(value, (list, tuple)):
            items = list(value)
            if not items:
                return Attr(name, AttrKind.INTS, [])
            if all(isinstance(v, (int, np.integer, bool)) for v in items):
                return Attr(name, AttrKind.INTS, [int(v) for v in items])
            if all(isinstance(v, (int, float, np.integer, np.floating)) for v in items):
                return Attr(name, AttrKind.FLOATS, [float(v) for v in items])
            if all(isinstance(v, (str, bytes)) for v in items):
                return Attr(name, AttrKind.STRINGS, items)
            if all(isinstance(v, np.ndarray) for v in items):
                return Attr(name, AttrKind.TENSORS, items)
            if all(isinstance(v, Graph) for v in items):
                return Attr(name, AttrKind.GRAPHS, items)
        raise TypeError(f"cannot infer the ONNX attribute kind of {name}={value!r}")


class Value:
    """An SSA value: a graph input, an initializer (``const`` set) or a node output."""

    __slots__ = ("_name", "type", "const", "_producer", "_index", "_uses", "meta", "doc_string",
                 "graph", "__weakref__")

    def __init__(self, name: str = "", type: ValueType | None = None, *,
                 const: np.ndarray | None = None, doc_string: str = "") -> None:
        if type is None and const is not None:
            type = TensorType(DType.from_numpy(const.dtype), tuple(const.shape))
        self._name = name
        self.type: ValueType | None = type
        self.const: np.ndarray | None = const
        self._producer: Node | None = None
        self._index: int = -1
        self._uses: dict[tuple[Node, int], None] = {}
        self.meta = Meta()
        self.doc_string = doc_string
        self.graph: Graph | None = None

    # --- identity -------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        g = self.graph
        if g is not None and new != self._name and new in g.root._names:
            raise ValueError(f"cannot rename %{self._name} to %{new}: name already in use")
        self._set_name(new)

    def _set_name(self, new: str) -> None:
        g = self.graph
        if g is not None and new != self._name:
            g.root._names.discard(self._name)
            g.root._names.add(new)
            if g.initializers.get(self._name) is self:
                del g.initializers[self._name]
                g.initializers[new] = self
        self._name = new

    # --- type helpers ---------------------------------------------------
    @property
    def dtype(self) -> DType | None:
        t = self.type
        return getattr(t, "dtype", None) if t is not None else None

    @property
    def shape(self) -> Shape:
        t = self.type
        return getattr(t, "shape", None) if t is not None else None

    @property
    def rank(self) -> int | None:
        s = self.shape
        return None if s is None else len(s)

    def set_tensor_type(self, dtype: DType | None = None, shape: Shape = None) -> None:
        """Set (or refine) a tensor type; ``None`` arguments keep what is known."""
        dtype = dtype if dtype is not None else (self.dtype or DType.UNDEFINED)
        shape = shape if shape is not None else self.shape
        self.type = TensorType(dtype, None if shape is None else tuple(shape))

    # --- def/use --------------------------------------------------------
    def producer(self) -> Node | None:
        return self._producer

    def index(self) -> int:
        """Output index in the producer (-1 for inputs and initializers)."""
        return self._index

    def uses(self) -> tuple[tuple[Node, int], ...]:
        return tuple(self._uses)

    def consumers(self) -> list[Node]:
        """Distinct consumer nodes, in use order."""
        return list(dict.fromkeys(n for n, _ in self._uses))

    def num_uses(self) -> int:
        return len(self._uses)

    @property
    def is_initializer(self) -> bool:
        g = self.graph
        return g is not None and g.initializers.get(self._name) is self

    @property
    def is_graph_input(self) -> bool:
        g = self.graph
        return g is not None and any(v is self for v in g.inputs)

    def is_graph_output(self) -> bool:
        g = self.graph
        return g is not None and any(v is self for v in g.outputs)

    def replace_all_uses_with(self, new: Value, *, outputs: bool = False) -> None:
        """Point every use of this value at ``new``; with ``outputs=True`` also
        replace it among its graph's outputs (``new`` then takes over the name)."""
        if new is self:
            return
        for node, i in list(self._uses):
            node.set_input(i, new)
        if outputs and self.graph is not None:
            g = self.graph
            if any(v is self for v in g.outputs):
                g.outputs = [new if v is self else v for v in g.outputs]
                old_name = self.name
                self._set_name(g.root.unique_name(old_name + "_replaced"))
                new._set_name(old_name)

    def __repr__(self) -> str:
        return f"Value(%{self._name}: {self.type})"


class Node:
    """An operator application. ``inputs`` is a read-only tuple (``None`` marks an
    omitted optional input); change it with :meth:`set_input`."""

    __slots__ = ("op_type", "domain", "overload", "_inputs", "outputs", "attrs", "name",
                 "doc_string", "meta", "graph", "_prev", "_next", "_removed", "__weakref__")

    def __init__(self, op_type: str, inputs: Sequence[Value | None] = (),
                 attrs: dict[str, Any] | Iterable[Attr] | None = None, *, domain: str = "",
                 num_outputs: int = 1, outputs: Sequence[Value | str] | None = None,
                 name: str = "", doc_string: str = "") -> None:
        self.op_type = op_type
        self.domain = "" if domain == "ai.onnx" else domain
        self.overload = ""
        self._inputs: tuple[Value | None, ...] = ()
        if outputs is None:
            outputs = [Value() for _ in range(num_outputs)]
        self.outputs: list[Value] = []
        for i, o in enumerate(outputs):
            v = Value(o) if isinstance(o, str) else o
            if v._producer is not None:
                raise ValueError(f"value %{v.name} already has a producer")
            v._producer, v._index = self, i
            self.outputs.append(v)
        if attrs is None:
            self.attrs: dict[str, Attr] = {}
        elif isinstance(attrs, dict):
            self.attrs = {k: Attr.infer(k, v) for k, v in attrs.items()}
        else:
            self.attrs = {a.name: a for a in attrs}
        self.name = name
        self.doc_string = doc_string
        self.meta = Meta()
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        self._removed = False
        self.set_inputs(inputs)

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return self._inputs

    @property
    def op(self) -> str:
        """``domain::op_type`` (just ``op_type`` for the default ONNX domain)."""
        return f"{self.domain}::{self.op_type}" if self.domain else self.op_type

    def set_input(self, i: int, v: Value | None) -> None:
        old = self._inputs[i]
        if old is v:
            return
        if old is not None:
            old._uses.pop((self, i), None)
        ins = list(self._inputs)
        ins[i] = v
        self._inputs = tuple(ins)
        if v is not None:
            v._uses[(self, i)] = None

    def set_inputs(self, inputs: Sequence[Value | None]) -> None:
        for i, old in enumerate(self._inputs):
            if old is not None:
                old._uses.pop((self, i), None)
        self._inputs = tuple(inputs)
        for i, v in enumerate(self._inputs):
            if v is not None:
                if not isinstance(v, Value):
                    raise TypeError(f"node {self.op} input {i} must be a Value or None, got {type(v).__name__}")
                v._uses[(self, i)] = None

    def append_input(self, v: Value | None) -> None:
        self.set_inputs(list(self._inputs) + [v])

    def attr(self, name: str, default: Any = None) -> Any:
        a = self.attrs.get(name)
        return default if a is None else a.value

    def set_attr(self, name: str, value: Any) -> None:
        self.attrs[name] = Attr.infer(name, value)

    @property
    def output(self) -> Value:
        """The single output (raises if the node has several)."""
        if len(self.outputs) != 1:
            raise ValueError(f"node {self.label()} has {len(self.outputs)} outputs")
        return self.outputs[0]

    def subgraphs(self) -> list[Graph]:
        return [g for a in self.attrs.values() for g in a.subgraphs()]

    def implicit_inputs(self) -> list[Value]:
        """Outer-scope values read inside this node's subgraphs."""
        found: dict[Value, None] = {}
        for sg in self.subgraphs():
            for v in sg.captured_values():
                found[v] = None
        return list(found)

    def label(self) -> str:
        """A human label for errors: ``Attention 'layer.0/attn' (com.microsoft)``."""
        dom = f" ({self.domain})" if self.domain else ""
        nm = f" '{self.name}'" if self.name else (f" -> %{self.outputs[0].name}" if self.outputs else "")
        return f"{self.op_type}{nm}{dom}"

    def __repr__(self) -> str:
        return f"Node({self.label()})"


class Graph:
    """A (sub)graph: inputs, initializers, nodes in a linked list, outputs.

    >>> g = Graph("g")
    >>> x = g.add_input("x", TensorType(DType.FLOAT, ("n", 4)))
    >>> y = g.append(Node("Relu", [x])).output
    >>> g.outputs = [y]
    >>> len(g)
    1
    """

    def __init__(self, name: str = "", *, parent: Node | None = None, doc_string: str = "") -> None:
        self.name = name
        self.doc_string = doc_string
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.initializers: dict[str, Value] = {}
        self.sparse_initializers: set[str] = set()  # names stored sparse in the source model
        self.meta = Meta()
        self.parent = parent  # the node whose attribute holds this graph (None for the main graph)
        self._head: Node | None = None
        self._tail: Node | None = None
        self._count = 0
        self._names: set[str] = set()
        self._counter = itertools.count()

    # --- scope ----------------------------------------------------------
    @property
    def root(self) -> Graph:
        g = self
        while g.parent is not None and g.parent.graph is not None:
            g = g.parent.graph
        return g

    def unique_name(self, base: str = "v") -> str:
        root = self.root
        if base and base not in root._names:
            root._names.add(base)
            return base
        while True:
            cand = f"{base}__{next(root._counter)}"
            if cand not in root._names:
                root._names.add(cand)
                return cand

    def _register(self, v: Value) -> None:
        v.graph = self
        # Only unnamed values get a fresh name; a taken name is reported by verify()
        # (renaming silently would change a model's interface).
        if not v._name:
            v._name = self.unique_name("v")
        else:
            self.root._names.add(v._name)

    # --- inputs / initializers -----------------------------------------
    def add_input(self, name: str | Value, type: ValueType | None = None) -> Value:
        v = name if isinstance(name, Value) else Value(name, type)
        self._register(v)
        self.inputs.append(v)
        return v

    def add_initializer(self, name: str | Value, array: np.ndarray | None = None) -> Value:
        """Add a constant tensor. The name is made unique if it is taken."""
        v = name if isinstance(name, Value) else Value(name, const=np.asarray(array))
        if v.const is None:
            raise ValueError(f"initializer %{v.name} has no data")
        if v.type is None:
            v.type = TensorType(DType.from_numpy(v.const.dtype), tuple(v.const.shape))
        if not (v.graph is self and v.name in self.initializers):
            if v.graph is not self:
                self._register(v)
            self.initializers[v.name] = v
        return v

    def remove_initializer(self, v: Value) -> None:
        if v.num_uses():
            raise ValueError(f"initializer %{v.name} still has {v.num_uses()} uses")
        if self.initializers.get(v.name) is v:
            del self.initializers[v.name]
        self.sparse_initializers.discard(v.name)

    # --- node list ------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        """Iterate in order. Safe under mutation: removing the current node or
        inserting after it is fine."""
        n = self._head
        while n is not None:
            if not n._removed:
                yield n
            nxt = n._next
            while nxt is not None and nxt._removed:
                nxt = nxt._next
            n = nxt

    def __len__(self) -> int:
        return self._count

    @property
    def nodes(self) -> list[Node]:
        return list(self)

    def _adopt(self, node: Node) -> None:
        if node.graph is not None and not node._removed:
            raise ValueError(f"node {node.label()} already belongs to a graph")
        node.graph = self
        node._removed = False
        for o in node.outputs:
            self._register(o)
        for sg in node.subgraphs():
            sg.parent = node
            sg._merge_names_into(self.root)
        self._count += 1

    def _merge_names_into(self, root: Graph) -> None:
        for v in self.all_values():
            root._names.add(v._name)
        for n in self:
            for sg in n.subgraphs():
                sg._merge_names_into(root)

    def append(self, node: Node) -> Node:
        self._adopt(node)
        node._prev, node._next = self._tail, None
        if self._tail is None:
            self._head = node
        else:
            self._tail._next = node
        self._tail = node
        return node

    def extend(self, nodes: Iterable[Node]) -> None:
        for n in nodes:
            self.append(n)

    def insert_before(self, ref: Node, node: Node) -> Node:
        if ref.graph is not self or ref._removed:
            raise ValueError(f"{ref.label()} is not in graph {self.name!r}")
        self._adopt(node)
        self._link_before(ref, node)
        return node

    def insert_after(self, ref: Node, node: Node) -> Node:
        if ref.graph is not self or ref._removed:
            raise ValueError(f"{ref.label()} is not in graph {self.name!r}")
        self._adopt(node)
        node._prev, node._next = ref, ref._next
        if ref._next is None:
            self._tail = node
        else:
            ref._next._prev = node
        ref._next = node
        return node

    def remove(self, node: Node, *, safe: bool = True) -> None:
        """Unlink ``node`` and drop its input uses. With ``safe`` (default) refuse
        when an output is still used or is a graph output."""
        if node.graph is not self or node._removed:
            raise ValueError(f"{node.label()} is not in graph {self.name!r}")
        if safe:
            for o in node.outputs:
                if o.num_uses():
                    users = ", ".join(n.label() for n in o.consumers()[:3])
                    raise ValueError(f"cannot remove {node.label()}: output %{o.name} is used by {users}")
                if o.is_graph_output():
                    raise ValueError(f"cannot remove {node.label()}: output %{o.name} is a graph output")
        node.set_inputs([])
        for sg in node.subgraphs():  # nodes inside the bodies hold uses of outer values too
            sg._drop_outer_uses()
        self._unlink(node)
        node._removed = True
        node.graph = None
        self._count -= 1

    def _drop_outer_uses(self) -> None:
        local = {id(v) for v in self.all_values()}
        for n in self:
            for i, v in enumerate(n.inputs):
                if v is not None and id(v) not in local:
                    v._uses.pop((n, i), None)
            for sg in n.subgraphs():
                sg._drop_outer_uses()

    def move_before(self, ref: Node, node: Node) -> None:
        """Relocate a node of this graph before ``ref``; its uses are untouched."""
        if node.graph is not self or ref.graph is not self:
            raise ValueError("move_before needs two nodes of this graph")
        self._unlink(node)
        self._link_before(ref, node)

    def _unlink(self, node: Node) -> None:
        # keep node._next so an iterator standing on this node can continue
        if node._prev is None:
            self._head = node._next
        else:
            node._prev._next = node._next
        if node._next is None:
            self._tail = node._prev
        else:
            node._next._prev = node._prev

    def _link_before(self, ref: Node, node: Node) -> None:
        node._prev, node._next = ref._prev, ref
        if ref._prev is None:
            self._head = node
        else:
            ref._prev._next = node
        ref._prev = node

    # --- queries --------------------------------------------------------
    def all_values(self) -> Iterator[Value]:
        """Inputs, initializers and node outputs of this graph (not subgraphs)."""
        yield from self.inputs
        for v in self.initializers.values():
            if not any(v is i for i in self.inputs):
                yield v
        for n in self:
            yield from n.outputs

    def captured_values(self) -> list[Value]:
        """Values read in this graph (or deeper) but defined in an enclosing scope."""
        local: set[int] = {id(v) for v in self.all_values()}
        found: dict[Value, None] = {}
        for n in self:
            for v in n.inputs:
                if v is not None and id(v) not in local:
                    found[v] = None
            for v in n.implicit_inputs():
                if id(v) not in local:
                    found[v] = None
        for v in self.outputs:
            if id(v) not in local:
                found[v] = None
        return list(found)

    def walk(self) -> Iterator[Node]:
        """All nodes, recursing into subgraphs (pre-order)."""
        for n in self:
            yield n
            for sg in n.subgraphs():
                yield from sg.walk()

    def value(self, name: str) -> Value:
        for v in self.all_values():
            if v.name == name:
                return v
        raise KeyError(name)

    def node(self, name: str) -> Node:
        for n in self:
            if n.name == name:
                return n
        raise KeyError(name)

    def op_counts(self) -> dict[str, int]:
        """Histogram of ``node.op`` over this graph (not subgraphs)."""
        counts: dict[str, int] = {}
        for n in self:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # --- order ----------------------------------------------------------
    def sort(self) -> None:
        """Reorder nodes topologically, keeping the current order where it is
        already valid. Raises VerificationError naming a cycle."""
        from .verify import topological_order

        order = topological_order(self)
        self._head = self._tail = None
        for n in order:
            n._prev, n._next = self._tail, None
            if self._tail is None:
                self._head = n
            else:
                self._tail._next = n
            self._tail = n

    def verify(self) -> None:
        """Raise :class:`~graphopt.errors.VerificationError` listing every broken invariant."""
        from .verify import assert_valid

        assert_valid(self)

    def to_networkx(self):  # -> networkx.MultiDiGraph
        """A ``networkx.MultiDiGraph`` of nodes (keyed by Node) with value edges."""
        from .analysis import to_networkx

        return to_networkx(self)

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes)"


@dataclass
class Model:
    """A graph plus the model-level facts ONNX carries."""

    graph: Graph
    opset_imports: dict[str, int] = field(default_factory=lambda: {"": 17})
    ir_version: int = 8
    producer_name: str = "graphopt"
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)

    def __str__(self) -> str:
        from .printer import format_model

        return format_model(self)

    def verify(self) -> None:
        """Check the graph's invariants, with op arity checked against this model's opsets."""
        from .verify import assert_valid

        assert_valid(self.graph, self.opset_imports)
