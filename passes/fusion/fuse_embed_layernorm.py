"""fuse-embed-layernorm: LayerNorm of summed embedding lookups -> graphopt::EmbedLayerNorm.

BERT/MiniLM:  LN(word[ids] + segment[token_type_ids] + position[pos_ids])
DistilBERT:   LN(word[ids] + position[pos_ids])

The Adds come in any order (commutative rule). Roles are assigned from the
tables, not the order: the word table is the one with the most rows; of the
rest, the position lookup is the one whose ids are computed in the graph (a
Slice of a position buffer) or, when all ids are inputs, the larger table.
The position ids are kept as an input (not assumed to be 0..S-1).
"""

from __future__ import annotations

from graphopt.ir import Value
from graphopt.pattern import A, AnyOf, Const, MatchResult, Optional, P, Rule, RuleSet, Var
from graphopt.pm import register_pass

from ._common import GRAPHOPT, FusionPass

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


class FuseEmbedLayerNorm(Rule):
    """LayerNormalization(sum of 2 or 3 embedding Gathers) -> EmbedLayerNorm."""

    name = "fuse-embed-layernorm"
    benefit = 4
    commutative = True

    def pattern(self, p):
        return embed_ln_pattern()

    def check(self, m):
        ln = m.node("ln")
        if len(ln.outputs) > 1 and any(o.num_uses() for o in ln.outputs[1:]):
            return MatchResult.fail("LayerNormalization's mean/inv_std outputs are used", ln)
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
        return b.EmbedLayerNorm(word[1], seg[1], word[0], pos[0], seg[0], m["gamma"], m.get_or_none("beta"),
                                pos[1], epsilon=float(m.attr("epsilon")), _domain=GRAPHOPT)


FUSE_EMBED_LAYERNORM = RuleSet([FuseEmbedLayerNorm()], name="fuse-embed-layernorm")


@register_pass
class FuseEmbedLayerNormPass(FusionPass):
    name = "fuse-embed-layernorm"
    description = "LayerNorm(word + position [+ segment] embedding lookups) -> graphopt::EmbedLayerNorm"
    rules = FUSE_EMBED_LAYERNORM
    needs_shapes = True
