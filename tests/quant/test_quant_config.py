"""QuantConfig: presets, YAML/JSON loading, resolution order, validation against a model."""

import json

import pytest

from graphopt.errors import GraphoptError
from graphopt.quant import QuantConfig, QType
from graphopt.quant.testing import mlp_model


def test_presets():
    t = QuantConfig.transformer()
    assert (t.weight.dtype, t.weight.symmetric, t.weight.per_channel) == (QType.S8, True, True)
    assert (t.activation.dtype, t.activation.symmetric) == (QType.U8, False)
    assert {"LayerNormalization", "Softmax"} <= set(t.keep_fp32) and t.smoothquant is not None
    c = QuantConfig.cnn()
    assert c.smoothquant is None and not c.embeddings


def test_yaml_and_json(tmp_path):
    y = tmp_path / "q.yaml"
    y.write_text("preset: transformer\nactivation: {observer: percentile, percentile: 99.9}\n"
                 "nodes: {fc2: fp32}\nnode_patterns: {'^side$': {weight: {per_channel: false}}}\n")
    cfg = QuantConfig.load(y)
    assert cfg.activation.observer == "percentile" and cfg.activation.percentile == 99.9
    assert cfg.nodes["fc2"].precision == "fp32"
    j = tmp_path / "q.json"
    j.write_text(json.dumps(cfg.to_dict()))
    again = QuantConfig.load(j)
    assert again.to_dict() == cfg.to_dict()


def test_resolution_order():
    m = mlp_model()
    cfg = QuantConfig(op_types={"MatMul": {"activation": {"observer": "mse"}}},
                      node_patterns={"fc": {"weight": {"per_channel": False}}},
                      nodes={"fc2": "fp32"})
    by = {n.name: n for n in m.graph}
    assert cfg.plan(by["fc1"]).activation.observer == "mse"
    assert cfg.plan(by["fc1"]).weight.per_channel is False
    assert cfg.plan(by["side"]).weight.per_channel is True
    assert cfg.plan(by["fc2"]).precision == "fp32"
    assert cfg.plan(by["ln"]).precision == "fp32"


@pytest.mark.parametrize("bad, match", [
    ({"mode": "fast"}, "unknown quantization mode"),
    ({"weights": {}}, "unknown QuantConfig key"),
    ({"activation": {"dtype": "s16"}}, "unknown quantized dtype"),
    ({"activation": {"bits": 8}}, "unknown quant spec field"),
    ({"nodes": {"fc1": "int2"}}, "unknown precision"),
    ({"node_patterns": {"(": "fp32"}}, "bad regex"),
    ({"smoothquant": 2.0}, "alpha"),
    ({"weight": {"dtype": "s4"}}, "only for mode 'weight-only'"),
])
def test_bad_config(bad, match):
    with pytest.raises(GraphoptError, match=match):
        QuantConfig.from_dict(bad)


def test_config_naming_missing_nodes_fails_before_work():
    m = mlp_model()
    with pytest.raises(GraphoptError, match="not in the model.*fc9"):
        QuantConfig(nodes={"fc9": "fp32"}).validate(m)
    with pytest.raises(GraphoptError, match="matches no node"):
        QuantConfig(node_patterns={"attention": "fp32"}).validate(m)


@pytest.mark.parametrize("name", ["transformer", "cnn"])
def test_shipped_yaml_configs_equal_presets(name):
    from importlib import resources

    path = resources.files("graphopt.quant").joinpath("configs", f"{name}.yaml")
    assert QuantConfig.load(str(path)).to_dict() == getattr(QuantConfig, name)().to_dict()
