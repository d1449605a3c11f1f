"""Inline the taken branch of an ``If`` whose condition is a constant."""

from __future__ import annotations

import numpy as np

from graphopt.ir import Attr, Graph, Node, Value
from graphopt.pattern import can_replace, const_value, remove_dead

__all__ = ["inline_constant_if"]


def inline_constant_if(g: Graph, n: Node) -> bool:
    """Replace ``If(cond)`` (cond known) by copies of the taken branch's nodes,
    placed before it. Returns False (and changes nothing) when it cannot."""
    cond = const_value(n.inputs[0]) if n.inputs else None
    if cond is None or cond.size != 1:
        return False
    branch = n.attr("then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch")
    if not isinstance(branch, Graph) or branch.inputs or len(branch.outputs) != len(n.outputs):
        return False
    if any(bn.subgraphs() for bn in branch):
        return False  # nested control flow would need its bodies re-parented; left to a later pass
    vmap: dict[int, Value] = {}
    created_inits: list[Value] = []
    for name, v in branch.initializers.items():
        nv = g.add_initializer(g.unique_name(name), v.const)
        nv.type = v.type
        vmap[id(v)] = nv
        created_inits.append(nv)
    new_nodes: list[Node] = []
    for bn in branch:
        outs = [Value(g.unique_name(o.name or "v"), o.type) for o in bn.outputs]
        for o, no in zip(bn.outputs, outs):
            vmap[id(o)] = no
        attrs = [Attr(a.name, a.kind, a.value, a.doc_string, a.ref_attr_name) for a in bn.attrs.values()]
        nn = Node(bn.op_type, [None if v is None else vmap.get(id(v), v) for v in bn.inputs], attrs,
                  domain=bn.domain, outputs=outs, name=bn.name)
        nn.meta.update(bn.meta)
        new_nodes.append(nn)
    results = [vmap.get(id(v), v) for v in branch.outputs]
    if any(r.graph is not None and r.graph is not g and r.graph.root is not g.root for r in results):
        return False
    for nn in new_nodes:
        g.insert_before(n, nn)
    pairs = list(zip(n.outputs, results))
    if any(can_replace(o, r) is not None for o, r in pairs if o.num_uses() or o.is_graph_output()) \
            or len({id(r) for r in results}) != len(results):
        for nn in reversed(new_nodes):
            g.remove(nn, safe=False)
        for v in created_inits:
            g.remove_initializer(v)
        return False
    for o, r in pairs:
        if r.type is None:
            r.type = o.type
        o.replace_all_uses_with(r, outputs=True)
    # The branch's nodes now belong to a dead If: drop their uses of outer values.
    remove_dead(g, [n])
    return True
