import numpy as np

from fusion_testlib import assert_not_fused, f32, fuse
from graphopt.passes.fusion.fuse_embed_layernorm import FuseEmbedLayerNorm
from graphopt.testing.asserts import assert_op_counts

H, V, P = 16, 30, 12
INITS = {"word": f32(V, H), "pos": f32(P, H), "seg": f32(2, H), "g": f32(H), "b": f32(H),
         "buf": np.arange(P, dtype=np.int64)[None, :]}
# BERT/MiniLM export: position ids = buffer[:, 0:seq] with seq from the ids' shape
POS_SLICE = """
 sh = Shape(ids)
 one = Constant<value = int64 {1}>()
 sq = Gather<axis=0>(sh, one)
 z = Constant<value = int64[1] {0}>()
 ax = Constant<value = int64[1] {0}>()
 e = Unsqueeze(sq, ax)
 a1 = Constant<value = int64[1] {1}>()
 pid = Slice(buf, z, e, a1, a1)
"""


def _text(pos=POS_SLICE, segment=True, seg_input="int64[2, 7] tt"):
    seg = " gs = Gather(seg, tt)\n s1 = Add(gw, gs)\n" if segment else " s1 = Identity(gw)\n"
    ins = "int64[2, 7] ids" + (f", {seg_input}" if segment and seg_input else "")
    return ('<ir_version: 8, opset_import: ["" : 17]>\n'
            f"g ({ins}) => (float[2, 7, {H}] y) {{\n gw = Gather(word, ids)\n{pos}{seg}"
            " gp = Gather(pos, pid)\n s2 = Add(s1, gp)\n y = LayerNormalization<epsilon=1e-12>(s2, g, b)\n}")


def _feeds(segment=True):
    rng = np.random.default_rng(0)
    f = {"ids": rng.integers(0, V, (2, 7)).astype(np.int64)}
    if segment:
        f["tt"] = rng.integers(0, 2, (2, 7)).astype(np.int64)
    return f


def test_bert_style():
    after, stats = fuse(_text(), "fuse-embed-layernorm", _feeds(), INITS)
    assert stats == {"fuse-embed-layernorm": 1}
    assert_op_counts(after, graphopt__EmbedLayerNorm=1, Gather=0, Slice=0, Shape=0, LayerNormalization=0)
    eln = [n for n in after.graph if n.op_type == "EmbedLayerNorm"][0]
    assert len(eln.inputs) == 7  # default positions: no position_ids input
    assert eln.inputs[1].name == "tt" and eln.inputs[4].name == "seg"


def test_distilbert_style_shape_of_lookup():
    # DistilBERT takes the sequence length from the word embeddings, not the ids
    pos = POS_SLICE.replace("sh = Shape(ids)", "sh = Shape(gw)")
    text = _text(pos=pos, segment=False).replace(" s1 = Identity(gw)\n", "").replace("Add(s1, gp)", "Add(gw, gp)")
    after, _ = fuse(text, "fuse-embed-layernorm", _feeds(False), INITS)
    assert_op_counts(after, graphopt__EmbedLayerNorm=1, Gather=0)


def test_reversed_positions_stay_an_input():
    inits = {**INITS, "buf": np.arange(P, dtype=np.int64)[None, ::-1].copy()}
    after, _ = fuse(_text(), "fuse-embed-layernorm", _feeds(), inits)
    eln = [n for n in after.graph if n.op_type == "EmbedLayerNorm"][0]
    assert len(eln.inputs) == 8 and eln.inputs[7].producer().op_type == "Slice"


def test_computed_segment_ids():
    text = _text(seg_input="").replace(" gs = Gather(seg, tt)", " tt = Identity(ids)\n gs = Gather(seg, tt)")
    assert_not_fused(text, "fuse-embed-layernorm", FuseEmbedLayerNorm(), "segment ids are computed", INITS)
