"""IR invariants: what ``graph.verify()`` checks.

``verify(graph)`` returns a list of problems (empty when valid);
``assert_valid`` raises :class:`VerificationError` with all of them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..errors import VerificationError
from ._core import Graph, Node, Value
from ._types import DType, TensorType

__all__ = ["verify", "assert_valid", "topological_order", "OpArity", "set_schema_provider"]


class OpArity(NamedTuple):
    """What an op schema says about a node's shape: input/output counts and required attributes."""

    min_inputs: int
    max_inputs: int
    min_outputs: int
    max_outputs: int
    required_attrs: frozenset[str]


#: (domain, op_type, opset version or None) -> OpArity, or None when the op is unknown.
SchemaProvider = Callable[[str, str, "int | None"], "OpArity | None"]
_schema_provider: SchemaProvider | None = None


def set_schema_provider(fn: SchemaProvider | None) -> None:
    """Install the op-schema lookup verify() uses for arity checks. The IR knows
    no schemas itself; graphopt.io installs onnx's (so ``graphopt.ir`` stays free of onnx)."""
    global _schema_provider
    _schema_provider = fn

# Ops whose listed inputs must share one element type (ONNX type constraint T).
_SAME_DTYPE_INPUTS: dict[str, tuple[int, ...]] = {
    **{op: (0, 1) for op in ("Add", "Sub", "Mul", "Div", "Pow_", "MatMul", "Equal", "Less", "Greater",
                              "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "Mod")},
    "Gemm": (0, 1, 2),
    "Where": (1, 2),
    "LayerNormalization": (1, 2),
}
_VARIADIC_SAME_DTYPE = frozenset({"Concat", "Sum", "Max", "Min", "Mean"})


def _dtype(v: Value | None) -> DType | None:
    if v is None or not isinstance(v.type, TensorType):
        return None
    d = v.type.dtype
    return None if d is DType.UNDEFINED else d


def _check_arity(node: Node, opsets: Mapping[str, int] | None, problems: list[str]) -> None:
    if _schema_provider is None or opsets is None:
        return  # arity depends on the opset version, known only at model level
    version = opsets.get(node.domain)
    arity = _schema_provider(node.domain, node.op_type, version)
    if arity is None:
        return
    n_in = len(node.inputs)
    while n_in and node.inputs[n_in - 1] is None:
        n_in -= 1
    if not arity.min_inputs <= n_in <= arity.max_inputs:
        want = (f"{arity.min_inputs}" if arity.min_inputs == arity.max_inputs
                else f"{arity.min_inputs}..{arity.max_inputs if arity.max_inputs < 2**30 else 'n'}")
        problems.append(f"node {node.label()}: has {n_in} inputs, its schema takes {want}")
    n_out = len(node.outputs)
    if not arity.min_outputs <= n_out <= arity.max_outputs:
        problems.append(f"node {node.label()}: has {n_out} outputs, its schema gives "
                        f"{arity.min_outputs}..{arity.max_outputs}")
    missing = sorted(a for a in arity.required_attrs if a not in node.attrs)
    if missing:
        problems.append(f"node {node.label()}: missing required attribute(s) {', '.join(missing)}")


def _check_node_types(node: Node, problems: list[str]) -> None:
    if node.domain not in ("", "ai.onnx"):
        return
    idx = _SAME_DTYPE_INPUTS.get(node.op_type)
    if idx is None and node.op_type in _VARIADIC_SAME_DTYPE:
        idx = tuple(range(len(node.inputs)))
    if not idx:
        return
    seen: dict[DType, int] = {}
    for i in idx:
        if i < len(node.inputs):
            d = _dtype(node.inputs[i])
            if d is not None:
                seen.setdefault(d, i)
    if len(seen) > 1:
        desc = ", ".join(f"input {i} (%{node.inputs[i].name}) is {d.short}" for d, i in seen.items())
        problems.append(f"node {node.label()}: type mismatch: {desc}")


def _check_const(v: Value, where: str, problems: list[str]) -> None:
    if v.const is None or not isinstance(v.type, TensorType):
        return
    if v.type.shape is not None and tuple(v.type.shape) != tuple(v.const.shape):
        problems.append(f"{where} %{v.name}: declared shape {list(v.type.shape)} but data has {list(v.const.shape)}")
    try:
        want = v.type.dtype.numpy
    except TypeError:
        return
    if v.type.dtype is not DType.STRING and v.const.dtype != want:
        problems.append(f"{where} %{v.name}: declared {v.type.dtype.short} but data is numpy {v.const.dtype}")


def _verify_graph(g: Graph, outer: set[int], problems: list[str], path: str,
                  opsets: Mapping[str, int] | None = None) -> None:
    scope = set(outer)
    names: dict[str, Value] = {}

    def define(v: Value, what: str) -> None:
        scope.add(id(v))
        other = names.get(v.name)
        if other is not None and other is not v:
            problems.append(f"{path}: value name %{v.name} defined twice ({what})")
        names[v.name] = v

    for v in g.inputs:
        define(v, "graph input")
    for name, v in g.initializers.items():
        if v.name != name:
            problems.append(f"{path}: initializer registered as '{name}' but named %{v.name}")
        if v.const is None:
            problems.append(f"{path}: initializer %{v.name} has no data")
        if v.producer() is not None:
            problems.append(f"{path}: initializer %{v.name} has a producer {v.producer().label()}")
        _check_const(v, "initializer", problems)
        if id(v) not in scope:
            define(v, "initializer")

    defined_later: dict[int, Node] = {}
    for n in g:
        for o in n.outputs:
            defined_later[id(o)] = n

    for n in g:
        if n.graph is not g:
            problems.append(f"{path}: node {n.label()} is listed in the graph but owned by another")
        for i, v in enumerate(n.inputs):
            if v is None:
                continue
            if (n, i) not in v._uses:
                problems.append(f"node {n.label()}: input {i} %{v.name} does not list this use")
            if id(v) not in scope:
                if id(v) in defined_later:
                    problems.append(f"node {n.label()}: input {i} %{v.name} is produced later by "
                                    f"{defined_later[id(v)].label()} (not in topological order or a cycle)")
                else:
                    problems.append(f"node {n.label()}: input {i} %{v.name} is not defined "
                                    "(no producer, not a graph input or initializer)")
        for sg in n.subgraphs():
            if sg.parent is not n:
                problems.append(f"node {n.label()}: subgraph {sg.name!r} does not point back at its node")
            _verify_graph(sg, scope, problems, f"{path}/{n.label()}/{sg.name}", opsets)
        for j, o in enumerate(n.outputs):
            if o.producer() is not n or o.index() != j:
                problems.append(f"node {n.label()}: output {j} %{o.name} does not point back at it")
            for user, k in o._uses:
                if user._removed or user.graph is None:
                    problems.append(f"value %{o.name}: use by removed node {user.label()}")
                elif k >= len(user.inputs) or user.inputs[k] is not o:
                    problems.append(f"value %{o.name}: stale use ({user.label()}, input {k})")
            define(o, f"output of {n.label()}")
        _check_node_types(n, problems)
        _check_arity(n, opsets, problems)
    for v in g.outputs:
        if id(v) not in scope:
            problems.append(f"{path}: graph output %{v.name} is not defined")


def verify(graph: Graph, opsets: Mapping[str, int] | None = None) -> list[str]:
    """Check the IR invariants; return one message per problem. With ``opsets``
    (the model's opset imports; ``Model.verify`` passes them) op arity and
    required attributes are checked against that opset's schemas too."""
    problems: list[str] = []
    _verify_graph(graph, set(), problems, graph.name or "main", opsets)
    if any("produced later" in p for p in problems):
        try:
            topological_order(graph)
        except VerificationError as e:
            problems.insert(0, str(e))
    return problems


def assert_valid(graph: Graph, opsets: Mapping[str, int] | None = None) -> None:
    problems = verify(graph, opsets)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems, first: {problems[0]}"
        raise VerificationError(f"graph {graph.name!r} is invalid: {head}", problems)


def topological_order(graph: Graph) -> list[Node]:
    """Nodes in a topological order that keeps the current order where it can
    (Kahn with the current position as priority). Raises on a cycle."""
    nodes = list(graph)
    pos = {n: i for i, n in enumerate(nodes)}
    producer_of: dict[int, Node] = {id(o): n for n in nodes for o in n.outputs}
    deps: dict[Node, set[Node]] = {}
    users: dict[Node, list[Node]] = {n: [] for n in nodes}
    for n in nodes:
        ds = set()
        for v in list(n.inputs) + n.implicit_inputs():
            if v is not None:
                p = producer_of.get(id(v))
                if p is not None and p is not n:
                    ds.add(p)
        deps[n] = ds
        for p in ds:
            users[p].append(n)
    indeg = {n: len(d) for n, d in deps.items()}
    ready = [(pos[n], n.__hash__(), n) for n in nodes if indeg[n] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        _, _, n = heapq.heappop(ready)
        order.append(n)
        for u in users[n]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, (pos[u], u.__hash__(), u))
    if len(order) != len(nodes):
        stuck = [n for n in nodes if indeg[n] > 0]
        cycle = _find_cycle(stuck, deps)
        raise VerificationError(
            f"graph {graph.name!r} has a cycle: " + " -> ".join(n.label() for n in cycle),
            [f"cycle through {n.label()}" for n in cycle])
    return order


def _find_cycle(stuck: list[Node], deps: dict[Node, set[Node]]) -> list[Node]:
    stuck_set = set(stuck)
    start = stuck[0]
    seen: dict[Node, int] = {}
    path: list[Node] = []
    n = start
    while n not in seen:
        seen[n] = len(path)
        path.append(n)
        n = next(d for d in deps[n] if d in stuck_set)
    cyc = path[seen[n]:]
    cyc.reverse()
    return cyc + [cyc[0]]
