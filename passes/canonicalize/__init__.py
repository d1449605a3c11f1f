"""Canonicalization passes (O2): rewrite the idioms of each export form (transformers eager or
sdpa attention, TorchScript or dynamo exporter) into one form, so each fusion is written once
against it.

:data:`CANONICALIZE_PASSES` is the order O2 runs them in, before fusion;
``canonicalize-decoder-mask`` runs right after ``fuse-sdpa`` (it reads the fused Attention's mask).
"""

from . import canonicalize_attention, decoder_mask  # noqa: F401  (register the passes)

CANONICALIZE_PASSES: list[str] = ["canonicalize-attention"]

__all__ = ["CANONICALIZE_PASSES"]
