"""QuantConfig: one typed description of what to quantize and how.

Resolution for a node, later entries winning: the defaults, then
``op_types[node.op_type]``, then every matching ``node_patterns`` regex (in
order), then ``nodes[node.name]``. An override can change the weight or
activation spec or set the node's precision ("int8", "fp32", "bf16", "fp16").

>>> cfg = QuantConfig.transformer()
>>> cfg.weight.per_channel, cfg.weight.dtype.value, cfg.activation.dtype.value
(True, 's8', 'u8')
>>> cfg = QuantConfig.from_dict({"activation": {"observer": "percentile"}, "nodes": {"fc1": "fp32"}})
>>> cfg.nodes["fc1"].precision
'fp32'
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import GraphoptError
from ..ir import Model, Node
from .specs import QType, QuantSpec

__all__ = ["QuantConfig", "Override", "NodePlan", "MODES", "PRECISIONS"]

MODES = ("static", "dynamic", "weight-only")
PRECISIONS = ("int8", "fp32", "bf16", "fp16")
#: what the native attention kernel runs its products in (int8: the file's Q/DQ; the kernel's bf16 products)
ATTENTION_PRECISIONS = ("int8", "bf16", "fp32")
#: ops whose inputs graphopt quantizes by default (standard ONNX and the fused linear op)
DEFAULT_OPS = ("MatMul", "Gemm", "Conv", "graphopt::FusedLinear", "graphopt::Linear", "graphopt::MultiHeadAttention")


@dataclass(frozen=True)
class Override:
    """A partial change to the defaults for some nodes."""

    weight: dict[str, Any] | None = None
    activation: dict[str, Any] | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise GraphoptError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")

    @classmethod
    def parse(cls, d: Any, where: str) -> Override:
        if isinstance(d, Override):
            return d
        if isinstance(d, str):  # shorthand: "fp32", "bf16", ...
            return cls(precision=d)
        if not isinstance(d, dict):
            raise GraphoptError(f"{where}: expected a precision name or a mapping, got {d!r}")
        bad = set(d) - {"weight", "activation", "precision"}
        if bad:
            raise GraphoptError(f"{where}: unknown key(s) {sorted(bad)} (weight, activation, precision)")
        return cls(d.get("weight"), d.get("activation"), d.get("precision"))


@dataclass(frozen=True)
class NodePlan:
    """What the config resolved for one node."""

    precision: str
    weight: QuantSpec
    activation: QuantSpec


@dataclass
class QuantConfig:
    """Static/dynamic/weight-only PTQ settings.

    ``keep_fp32`` op types are never quantized (their inputs stay float);
    ``quantize_act_matmul`` also quantizes activation x activation MatMuls
    (attention scores and context); ``attention`` ("int8", "bf16" or "fp32")
    sets the precision of those attention products instead, for a fused
    attention node (a model quantized after O2) as for its MatMuls, so both
    orders of O2 and quantize give one native plan; ``embeddings`` quantizes
    Gather tables weight-only (per row), which is most of a small transformer's file.
    """

    mode: str = "static"
    weight: QuantSpec = field(default_factory=lambda: QuantSpec(QType.S8, symmetric=True, per_channel=True))
    activation: QuantSpec = field(default_factory=lambda: QuantSpec(QType.U8, symmetric=False))
    quantize_ops: tuple[str, ...] = DEFAULT_OPS
    keep_fp32: tuple[str, ...] = ("LayerNormalization", "Softmax")
    quantize_act_matmul: bool = True
    attention: str | None = None  # precision of the attention products; None: int8 if quantize_act_matmul else fp32
    embeddings: bool = True
    op_types: dict[str, Override] = field(default_factory=dict)
    node_patterns: dict[str, Override] = field(default_factory=dict)
    nodes: dict[str, Override] = field(default_factory=dict)
    smoothquant: float | None = None
    weight_bits: int = 8          # weight-only: 8 or 4
    group_size: int = 32          # weight-only int4: block size along K
    per_channel_dynamic: bool = True
    gptq: bool = False            # weight-only: GPTQ error compensation (needs calibration data)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GraphoptError(f"unknown quantization mode '{self.mode}'; choose one of {', '.join(MODES)}")
        for what, spec in (("weight", self.weight), ("activation", self.activation)):
            if spec.dtype in (QType.S4, QType.U4) and self.mode != "weight-only":
                raise GraphoptError(f"{what} dtype {spec.dtype.value} is only for mode 'weight-only' "
                                    "(set weight_bits: 4); static and dynamic modes use s8/u8")
        if self.attention is not None and self.attention not in ATTENTION_PRECISIONS:
            raise GraphoptError(f"attention precision must be one of {', '.join(ATTENTION_PRECISIONS)}, "
                                f"got {self.attention!r}")
        if self.weight_bits not in (4, 8):
            raise GraphoptError(f"weight_bits must be 4 or 8, got {self.weight_bits}")
        if self.smoothquant is not None and not 0.0 <= self.smoothquant <= 1.0:
            raise GraphoptError(f"smoothquant alpha must be in [0, 1], got {self.smoothquant}")
        if self.group_size < 16 or self.group_size & (self.group_size - 1):
            raise GraphoptError(f"group_size must be a power of two >= 16, got {self.group_size}")
        for label in ("op_types", "node_patterns", "nodes"):  # copies: the caller's dicts stay as given
            setattr(self, label, {k: Override.parse(v, f"{label}[{k!r}]") for k, v in getattr(self, label).items()})
        for pat in self.node_patterns:
            try:
                re.compile(pat)
            except re.error as e:
                raise GraphoptError(f"node_patterns: bad regex {pat!r}: {e}") from e

    # --- presets -------------------------------------------------------------
    @classmethod
    def transformer(cls, **kw: Any) -> QuantConfig:
        """Per-channel symmetric s8 weights, asymmetric u8 activations, LayerNorm/Softmax in fp32,
        SmoothQuant alpha 0.8 (best mean cosine on the shipped *calibration* split for MiniLM in a
        0.5..0.9 sweep; BERT-class post-LN encoders tolerate moving most difficulty into
        per-channel weights)."""
        kw.setdefault("smoothquant", 0.8)
        return cls(**kw)

    @classmethod
    def cnn(cls, **kw: Any) -> QuantConfig:
        """Per-channel symmetric s8 conv weights, asymmetric u8 activations, no SmoothQuant."""
        kw.setdefault("embeddings", False)
        kw.setdefault("quantize_act_matmul", False)
        return cls(**kw)

    # --- loading -------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantConfig:
        d = dict(d)
        preset = d.pop("preset", None)
        known = {f.name for f in fields(cls)}
        bad = set(d) - known
        if bad:
            raise GraphoptError(f"unknown QuantConfig key(s) {sorted(bad)}; known: {sorted(known)}")
        base = cls.transformer() if preset == "transformer" else cls.cnn() if preset == "cnn" else cls()
        if preset not in (None, "transformer", "cnn"):
            raise GraphoptError(f"unknown preset '{preset}' (transformer, cnn)")
        if "weight" in d:
            d["weight"] = QuantSpec.from_dict(d["weight"], base.weight)
        if "activation" in d:
            d["activation"] = QuantSpec.from_dict(d["activation"], base.activation)
        for k in ("quantize_ops", "keep_fp32"):
            if k in d:
                d[k] = tuple(d[k])
        return replace(base, **d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuantConfig:
        """Read a YAML (.yaml/.yml, needs PyYAML) or JSON file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise GraphoptError(f"cannot read quantization config {p}: {e}") from e
        if p.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as e:
                raise GraphoptError("YAML configs need PyYAML (pip install pyyaml); or use JSON") from e
            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except ValueError as e:
                raise GraphoptError(f"{p} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise GraphoptError(f"{p}: the config must be a mapping")
        return cls.from_dict(data)

    # --- resolution ------------------------------------------------------------
    def validate(self, model: Model) -> None:
        """Raise GraphoptError when ``nodes`` names a node the model lacks or a pattern matches none."""
        names = {n.name for n in model.graph if n.name}
        missing = [k for k in self.nodes if k not in names]
        if missing:
            raise GraphoptError(f"quantization config names node(s) not in the model: {missing[:5]}")
        for pat in self.node_patterns:
            rx = re.compile(pat)
            if not any(rx.fullmatch(n) or rx.search(n) for n in names):
                raise GraphoptError(f"quantization config pattern {pat!r} matches no node of the model")

    def _overrides(self, node: Node) -> list[Override]:
        overrides = []
        if node.op_type in self.op_types:
            overrides.append(self.op_types[node.op_type])
        for pat, ov in self.node_patterns.items():
            if node.name and re.search(pat, node.name):
                overrides.append(ov)
        if node.name in self.nodes:
            overrides.append(self.nodes[node.name])
        return overrides

    def attention_precision(self, node: Node | None = None) -> str:
        """The precision of attention products (QK^T, PV). For an activation x activation MatMul
        ``node``: the last precision its overrides set, else the config's; for a fused attention
        node (MultiHeadAttention / Attention, after O2) the config's: ``attention``, else int8 when
        ``quantize_act_matmul``, fp32 when not. (fp16 overrides: fp32 products.)"""
        prec = self.attention or ("int8" if self.quantize_act_matmul else "fp32")
        if node is not None and node.domain == "":
            if node.op_type in self.keep_fp32:
                prec = "fp32"
            for ov in self._overrides(node):
                if ov.precision:
                    prec = ov.precision
        return prec if prec in ATTENTION_PRECISIONS else "fp32"

    def plan(self, node: Node) -> NodePlan:
        """The precision and specs for ``node``."""
        overrides = self._overrides(node)
        op = node.op
        quantized = op in self.quantize_ops or node.op_type in self.quantize_ops or \
            (node.op_type == "Gather" and self.embeddings)
        prec = "int8" if quantized else "fp32"
        if node.op_type in self.keep_fp32:
            prec = "fp32"
        w, a = self.weight, self.activation
        for ov in overrides:
            if ov.precision:
                prec = ov.precision
            if ov.weight:
                w = QuantSpec.from_dict(ov.weight, w)
            if ov.activation:
                a = QuantSpec.from_dict(ov.activation, a)
        return NodePlan(prec, w, a)

    def to_dict(self) -> dict[str, Any]:
        def ov(o: Override) -> Any:
            return o.precision if (o.weight is None and o.activation is None) else \
                {k: v for k, v in (("weight", o.weight), ("activation", o.activation), ("precision", o.precision))
                 if v is not None}
        return {"mode": self.mode, "weight": self.weight.to_dict(), "activation": self.activation.to_dict(),
                "quantize_ops": list(self.quantize_ops), "keep_fp32": list(self.keep_fp32),
                "quantize_act_matmul": self.quantize_act_matmul, "attention": self.attention,
                "embeddings": self.embeddings,
                "op_types": {k: ov(v) for k, v in self.op_types.items()},
                "node_patterns": {k: ov(v) for k, v in self.node_patterns.items()},
                "nodes": {k: ov(v) for k, v in self.nodes.items()}, "smoothquant": self.smoothquant,
                "weight_bits": self.weight_bits, "group_size": self.group_size,
                "per_channel_dynamic": self.per_channel_dynamic, "gptq": self.gptq}
