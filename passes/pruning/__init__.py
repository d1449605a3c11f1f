"""Structured pruning as graph rewrites: attention heads and FFN neurons are removed
physically (every dependent tensor shrinks), so the result is an ordinary, smaller model.

* ``blocks``                 finds the prunable groups of a fused graph (one home for the matching)
* ``unfused_heads``          the heads of unfused attention (every export form, grouped KV heads)
* ``prune_structured``       ``prune-structured``: drop the least important heads/neurons (calibrated)
* ``remove_zero_structures`` ``remove-zero-structures``: drop heads/neurons already zeroed elsewhere (exact)
* ``sparsify``               ``sparsify-weights``: magnitude sparsity (unstructured, 2:4, 4x1) + ``sparsity_report``
"""

from . import prune_structured, remove_zero_structures, sparsify, unfused_heads  # noqa: F401
