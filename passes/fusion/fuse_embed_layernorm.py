"""fuse-embed-layernorm: LayerNorm of summed embedding lookups -> graphopt::EmbedLayerNorm.

BERT/MiniLM:  LN(word[ids] + segment[token_type_ids] + position[pos_ids])
DistilBERT:   LN(word[ids] + position[pos_ids])

The Adds come in any order (commutative rule). Roles are assigned from the
tables, not the order: the word table is the one with the most rows; of the
rest, the position lookup is the one whose ids are computed in the graph (a
Slice of a position buffer) or, when all ids are inputs, the larger table.
Position ids that evaluate to 0..S-1 (a Slice of the registered position buffer
by the sequence length, checked by evaluating their cone on probe inputs) are
dropped, which is onnxruntime's default; other position ids stay an input.
Word-lookup outputs read only by Shape (DistilBERT takes the sequence length
from the embeddings) are allowed: those Shapes are rewritten to read the ids.
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import Node, Value
from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass
from ._cone import cone, evaluate, probe_feed

__all__ = ["FUSE_EMBED_LAYERNORM", "FuseEmbedLayerNormPass"]


def lookup(tag: str):
    return P.Gather(Const(f"{tag}_table").rank(2), Var(f"{tag}_ids"), axis=A(eq=0, default=0), bind=f"g_{tag}")


def embed_ln_pattern():
    three = P.Add(P.Add(lookup("e0"), lookup("e1"), bind="add0"), lookup("e2"), bind="add1")
    two = P.Add(lookup("e0"), lookup("e1"), bind="add1")
    return P.LayerNormalization(AnyOf(three, two), Const("gamma").rank(1), Optional(Const("beta").rank(1)),
                                axis=A(pred=lambda a: a in (-1, 2), default=-1),
                                epsilon=A("epsilon", default=1e-5), bind="ln")


def _roles(m) -> dict[str, tuple[Value, Value]]:
    """{"word": (table, ids), "position": ..., "segment": ...} from the matched lookups."""
    pairs = [(m[f"{t}_table"], m[f"{t}_ids"]) for t in ("e0", "e1", "e2") if m.get_or_none(f"g_{t}") is not None]
    pairs.sort(key=lambda p: -p[0].shape[0])
    roles = {"word": pairs[0]}
    rest = pairs[1:]
    computed = [p for p in rest if p[1].producer() is not None or (p[1].shape is not None and p[1].shape[0] == 1)]
    pos = computed[0] if len(computed) == 1 else rest[0]
    roles["position"] = pos
    for p in rest:
        if p is not pos:
            roles["segment"] = p
    return roles


def default_positions(graph, pos_ids: Value) -> bool:
    """True if ``pos_ids`` is 0..S-1 (shape [1, S] or [B, S]) for every probe batch/sequence size."""
    if pos_ids.producer() is None:
        return False
    found = cone(pos_ids)
    if found is None or found[1]:
        return False  # reads a graph input as data
    nodes, _, shape_only = found
    for b, s in ((2, 5), (3, 9)):
        feeds = {}
        for v in shape_only:
            f = probe_feed(v, b, s)
            if f is None:
                return False
            feeds[v] = f
        try:
            got = evaluate(graph, nodes, pos_ids, feeds)
        except Exception:  # noqa: BLE001 - not evaluable: keep the ids
            return False
        if got.ndim != 2 or got.shape[0] not in (1, b) or got.shape[1] != s or \
                not np.array_equal(got, np.broadcast_to(np.arange(s), got.shape)):
            return False
    return True


def _shape_escapes(m) -> list[Node] | None:
    """Shape nodes reading a lookup output from outside the match; None if anything else escapes."""
    lookups = {id(m[f"g_{t}"]) for t in ("e0", "e1", "e2") if m.get_or_none(f"g_{t}") is not None}
    out: list[Node] = []
    for v, user in m.escaping():
        if user is None or id(v) not in lookups or user.op_type != "Shape" or user.attrs:
            return None
        out.append(user)
    return out


class FuseEmbedLayerNorm(Rule):
    """LayerNormalization(sum of 2 or 3 embedding Gathers) -> EmbedLayerNorm."""

    name = "fuse-embed-layernorm"
    benefit = 4
    commutative = True
    allow_shared_intermediates = True  # only Shape readers of the lookups, see check()

    def pattern(self, p):
        return embed_ln_pattern()

    def check(self, m):
        ln = m.node("ln")
        if len(ln.outputs) > 1 and any(o.num_uses() for o in ln.outputs[1:]):
            return MatchResult.fail("LayerNormalization's mean/inv_std outputs are used", ln)
        if _shape_escapes(m) is None:
            v, user = next((v, u) for v, u in m.escaping() if u is None or u.op_type != "Shape" or u.attrs)
            return MatchResult.fail(f"intermediate %{v.name} is used outside the match", user or v)
        roles = _roles(m)
        widths = {t.shape[1] for t, _ in roles.values()}
        if len(widths) != 1 or m.const("gamma").shape[0] not in widths:
            return MatchResult.fail("embedding tables and gamma have different widths", ln)
        word_ids = roles["word"][1]
        if word_ids.rank != 2 or word_ids.dtype is None or not word_ids.dtype.is_integer:
            return MatchResult.fail("word ids are not a 2-D integer tensor [batch, seq]", word_ids)
        for role, (_, ids) in roles.items():
            if ids.rank != 2 or ids.dtype is None or not ids.dtype.is_integer:
                return MatchResult.fail(f"{role} ids are not a 2-D integer tensor", ids)
        seg = roles.get("segment")
        if seg is not None and seg[1].producer() is not None:
            return MatchResult.fail("segment ids are computed in the graph, not an input", seg[1])
        return MatchResult.ok()

    def rewrite(self, b, m):
        roles = _roles(m)
        word, pos = roles["word"], roles["position"]
        seg = roles.get("segment", (None, None))
        g = b.graph
        for shape in _shape_escapes(m) or []:
            # Shape(table[ids]) == Concat(Shape(ids), [width]); built where the old Shape stood
            ids = next(p[1] for p in roles.values() if p[0] is shape.inputs[0].producer().inputs[0])
            table = shape.inputs[0].producer().inputs[0]
            new = b.Concat(b.Shape(ids), np.array([table.shape[1]], np.int64), axis=0)
            for n in (new.producer().inputs[0].producer(), new.producer()):
                g.move_before(shape, n)
            shape.outputs[0].replace_all_uses_with(new)
            g.remove(shape)
        pos_ids = None if default_positions(g, pos[1]) else pos[1]
        ins = [word[1], seg[1], word[0], pos[0], seg[0], m["gamma"], m.get_or_none("beta"), pos_ids]
        while ins[-1] is None:
            ins.pop()
        return b.EmbedLayerNorm(*ins, epsilon=float(m.attr("epsilon")), _domain=GRAPHOPT)


FUSE_EMBED_LAYERNORM = RuleSet([FuseEmbedLayerNorm()], name="fuse-embed-layernorm")


@register_pass
class FuseEmbedLayerNormPass(FusionPass):
    name = "fuse-embed-layernorm"
    description = "LayerNorm(word + position [+ segment] embedding lookups) -> graphopt::EmbedLayerNorm"
    rules = FUSE_EMBED_LAYERNORM
    needs_shapes = True
