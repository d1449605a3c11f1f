"""remove-unused: dead-code elimination of nodes and initializers.

A plain pass, not a pattern: liveness is a property of the whole graph (a
backward sweep from the outputs), not of a local shape.
"""

from __future__ import annotations

from graphopt.ir import Graph, Model
from graphopt.pattern import remove_dead
from graphopt.pm import Pass, PassContext, PassResult, register_pass

__all__ = ["RemoveUnused"]


def _sweep(g: Graph) -> tuple[int, int]:
    n_inits = len(g.initializers)
    removed = remove_dead(g)
    sub_inits = 0
    for n in g:  # live nodes: clean their subgraphs too
        for sg in n.subgraphs():
            r, i = _sweep(sg)
            removed += r
            sub_inits += i
    keep = {id(v) for v in g.inputs} | {id(v) for v in g.outputs}
    dead_inits = [v for v in g.initializers.values() if not v.num_uses() and id(v) not in keep]
    for v in dead_inits:
        g.remove_initializer(v)
    return removed, n_inits - len(g.initializers) + sub_inits


@register_pass
class RemoveUnused(Pass):
    """Remove nodes whose outputs are never used (and are not graph outputs),
    transitively, and initializers nothing reads. Graph inputs stay (they are
    the model's interface).

    >>> RemoveUnused().run(model, PassContext()).stats    # doctest: +SKIP
    {'nodes': 3, 'initializers': 1}
    """

    name = "remove-unused"
    description = "dead-code elimination: unused nodes and initializers"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        nodes, inits = _sweep(model.graph)
        stats = {k: v for k, v in (("nodes", nodes), ("initializers", inits)) if v}
        return PassResult(bool(nodes or inits), stats)
