"""Fusion passes (O2): transformer and CNN pattern rewrites into ``graphopt`` ops,
plus the lowering passes that map those ops to onnxruntime or standard ONNX.

:data:`FUSION_PASSES` is the order O2 runs them in: LayerNorm and GELU first
(later patterns are written over the fused forms; RMSNorm and the SiLU-gated
MLP beside them), embeddings and attention (rotary embeddings just before it)
before SkipLayerNorm/BiasGelu (which take the remaining bias Adds), plain
MatMul+Add last, then the CNN folds.
"""

from . import (  # noqa: F401  (register the passes)
    fuse_attention,
    fuse_attention_mask,
    fuse_bias_gelu,
    fuse_conv_activation,
    fuse_conv_bn,
    fuse_embed_layernorm,
    fuse_gelu,
    fuse_gemm_activation,
    fuse_layernorm,
    fuse_matmul_add,
    fuse_rmsnorm,
    fuse_rotary,
    fuse_silu_mlp,
    fuse_skip_layernorm,
    lower,
)

FUSION_PASSES: list[str] = [
    "fuse-layernorm",
    "fuse-rmsnorm",
    "fuse-gelu",
    "fuse-silu-mlp",
    "fuse-embed-layernorm",
    "fuse-rotary",
    "fuse-attention",
    "fuse-attention-mask",
    "fuse-skip-layernorm",
    "fuse-bias-gelu",
    "fuse-matmul-add",
    "fuse-gemm-activation",
    "fuse-conv-bn",
    "fuse-conv-activation",
]

__all__ = ["FUSION_PASSES"]
