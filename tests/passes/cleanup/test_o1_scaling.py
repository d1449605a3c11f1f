"""O1 work grows about linearly with graph size (10x nodes <= 15x function calls)."""

import numpy as np

from graphopt.pattern.testing import parse_model, run_ort
from graphopt.pm import PassManager
from graphopt.testing.asserts import count_calls

HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


def synthetic(blocks: int) -> str:
    """``blocks`` copies of a block with work for every O1 pass: an Identity, a
    Transpose pair, a constant expression, a static Shape->Gather->Unsqueeze->
    Concat->Reshape chain and a duplicated Relu."""
    lines = []
    h = "x"
    for i in range(blocks):
        lines += [
            f"a{i} = Identity({h})",
            f"t{i} = Transpose<perm=[1,0]>(a{i})",
            f"u{i} = Transpose<perm=[1,0]>(t{i})",
            f"c{i} = Constant<value = float[8] {{{', '.join(str(float(i % 7 + k)) for k in range(8))}}}>()",
            f"k{i} = Mul(c{i}, half)",
            f"sh{i} = Shape(u{i})",
            f"g{i} = Gather<axis=0>(sh{i}, zero)",
            f"q{i} = Unsqueeze(g{i}, ax)",
            f"tg{i} = Concat<axis=0>(q{i}, m1)",
            f"r{i} = Reshape(u{i}, tg{i})",
            f"d{i} = Relu(r{i})",
            f"e{i} = Relu(r{i})",
            f"s{i} = Add(d{i}, e{i})",
            f"h{i} = Add(s{i}, k{i})",
        ]
        h = f"h{i}"
    lines.append(f"y = Identity({h})")
    return HDR + ("g (float[4,8] x) => (float[4,8] y)\n"
                  "<float half = {0.5}, int64 zero = {0}, int64[1] ax = {0}, int64[1] m1 = {-1}>\n"
                  "{ " + "\n  ".join(lines) + " }")


def _o1_work(text: str) -> tuple[int, int]:
    """Function calls O1 makes on ``text`` (deterministic work; see count_calls) and its node count."""
    m = parse_model(text, infer_shapes=False)
    r, calls = count_calls(PassManager.from_text("O1"), m)
    return calls, r.nodes_before


def test_synthetic_o1_is_correct():
    text = synthetic(5)
    m = parse_model(text)
    before = parse_model(text)
    r = PassManager.from_text("O1")(m)
    assert r.nodes_after == 3 * 5  # per block: Relu, Add(d, d), Add(s, k) (k folded; all else removed)
    assert m.graph.op_counts() == {"Add": 10, "Relu": 5}
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)}
    np.testing.assert_array_equal(run_ort(m, feeds)[0], run_ort(before, feeds)[0])


def test_o1_scales_linearly(capsys):
    _o1_work(synthetic(3))  # first-call costs (imports, caches) are not O1's work on the graph
    (w_small, n_small), (w_large, n_large) = _o1_work(synthetic(30)), _o1_work(synthetic(300))
    ratio = w_large / w_small
    with capsys.disabled():
        print(f"\nO1 scaling: {n_small} nodes {w_small} calls, {n_large} nodes {w_large} calls "
              f"-> {ratio:.1f}x work for {n_large / n_small:.1f}x nodes")
    assert n_large >= 9 * n_small
    assert ratio <= 15, f"O1 work grew {ratio:.1f}x for {n_large / n_small:.1f}x nodes"
