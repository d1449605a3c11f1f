"""Graph analyses through networkx (order, dominators, drawings)."""

from __future__ import annotations

import networkx as nx

from ._core import Graph

__all__ = ["to_networkx"]


def to_networkx(graph: Graph) -> nx.MultiDiGraph:
    """Nodes of ``graph`` as networkx nodes (the Node objects, with ``op`` and
    ``name`` attributes); one edge per value use, keyed by the value name.
    Graph inputs/initializers are not nodes."""
    g = nx.MultiDiGraph(name=graph.name)
    for n in graph:
        g.add_node(n, op=n.op, name=n.name)
    for n in graph:
        for i, v in enumerate(list(n.inputs) + n.implicit_inputs()):
            if v is None:
                continue
            p = v.producer()
            if p is not None and p.graph is graph:
                g.add_edge(p, n, key=v.name, value=v.name, index=i)
    return g
