"""Canonicalization passes (O2, before fusion): rewrite the idioms of each export
form (transformers eager or sdpa attention, TorchScript or dynamo exporter) into
one form, so each fusion is written once against it.

:data:`CANONICALIZE_PASSES` is the order O2 runs them in.
"""

from . import canonicalize_attention  # noqa: F401  (register the passes)

CANONICALIZE_PASSES: list[str] = ["canonicalize-attention"]

__all__ = ["CANONICALIZE_PASSES"]
