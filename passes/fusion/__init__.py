"""Fusion passes (O2): transformer and CNN pattern rewrites into ``graphopt`` ops,
plus the lowering passes that map those ops to onnxruntime or standard ONNX.

The order O2 runs them in is ``O2_PASSES`` in :mod:`graphopt.passes.pipelines`.
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
    fuse_linear_epilogue,
    fuse_matmul_add,
    fuse_rmsnorm,
    fuse_rotary,
    fuse_sdpa,
    fuse_silu_mlp,
    fuse_skip_layernorm,
    lower,
)
