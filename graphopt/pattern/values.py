"""Value helpers shared by the matcher, the driver and plain passes:
reading constants, and replacing a value without breaking the graph interface."""

from __future__ import annotations

import numpy as np

from ..ir import AttrKind, Graph, Node, Value

__all__ = ["const_value", "is_constant", "replace_value", "can_replace", "remove_dead"]

_CONSTANT_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def const_value(v: Value | None) -> np.ndarray | None:
    """The data of ``v`` if it is known at compile time: an initializer that is
    not also a graph input (those can be overridden at run time), or the output
    of a ``Constant`` node with a dense value. ``None`` otherwise.

    >>> const_value(model.graph.initializers["w"]).shape   # doctest: +SKIP
    (384, 384)
    """
    if v is None:
        return None
    if v.const is not None and v.producer() is None:
        if v.is_graph_input:
            return None
        return v.const
    n = v.producer()
    if n is None or n.op_type != "Constant" or n.domain != "" or len(n.attrs) != 1:
        return None
    (a,) = n.attrs.values()
    if a.name not in _CONSTANT_ATTRS or a.ref_attr_name:
        return None
    if a.kind is AttrKind.TENSOR:
        return a.value
    if a.name == "value_float":
        return np.array(a.value, dtype=np.float32)
    if a.name == "value_int":
        return np.array(a.value, dtype=np.int64)
    if a.name == "value_floats":
        return np.array(a.value, dtype=np.float32)
    if a.name == "value_ints":
        return np.array(a.value, dtype=np.int64)
    return None


def is_constant(v: Value | None) -> bool:
    return const_value(v) is not None


def can_replace(old: Value, new: Value) -> str | None:
    """Why ``old`` cannot be replaced by ``new`` (None when it can).

    A graph output keeps its name, so ``new`` must be able to take it over:
    it must live in the same graph and not be a graph input or already a
    graph output (renaming those would change the model's interface).
    """
    if old is new:
        return "replacement is the value itself"
    if not old.is_graph_output():
        return None
    if new.graph is not old.graph:
        return f"%{old.name} is a graph output and %{new.name} belongs to an outer scope"
    if new.is_graph_input:
        return f"%{old.name} is a graph output and %{new.name} is a graph input (its name cannot change)"
    if new.is_graph_output():
        return f"%{old.name} and %{new.name} are both graph outputs"
    return None


def replace_value(old: Value, new: Value) -> None:
    """Point every use of ``old`` (and its graph-output slot, keeping the
    output's name) at ``new``. Call :func:`can_replace` first."""
    reason = can_replace(old, new)
    if reason is not None:
        raise ValueError(f"cannot replace %{old.name} by %{new.name}: {reason}")
    old.replace_all_uses_with(new, outputs=True)


def _drop_subgraph_uses(node: Node) -> None:
    # Nodes inside a removed node's subgraphs still hold uses of outer values;
    # clear them so those values' use counts stay right.
    for sg in node.subgraphs():
        for n in list(sg.walk()):
            n.set_inputs([])


def remove_dead(graph: Graph, nodes: list[Node] | None = None) -> int:
    """Remove nodes (of ``nodes``, or the whole graph) whose outputs are unused
    and not graph outputs, cascading to producers that become dead; also drop
    initializers that lose their last use. Returns the number of nodes removed."""
    work = list(nodes) if nodes is not None else list(graph)
    removed = 0
    seen_inits: list[Value] = []
    while work:
        n = work.pop()
        if n.graph is not graph or any(o.num_uses() or o.is_graph_output() for o in n.outputs):
            continue
        ins = [v for v in n.inputs if v is not None] + n.implicit_inputs()
        _drop_subgraph_uses(n)
        graph.remove(n, safe=False)
        removed += 1
        for v in ins:
            if v.num_uses():
                continue
            p = v.producer()
            if p is not None:
                if p.graph is graph:
                    work.append(p)
            elif v.const is not None:
                seen_inits.append(v)
    for v in seen_inits:
        g = v.graph
        if g is not None and g.initializers.get(v.name) is v and not v.num_uses() \
                and not v.is_graph_input and not v.is_graph_output():
            g.remove_initializer(v)
    return removed
