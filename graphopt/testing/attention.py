"""Inputs for tests of the ``graphopt::Attention`` op (its reference and the native kernel).

>>> inputs, attrs, order = attention_case("bsh", nkv=2, causal=1, mask="both")   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

__all__ = ["attention_case"]


def attention_case(layout: str, nkv: int, causal: int, mask: str, b: int = 2, n: int = 4, sq: int = 6,
                   sk: int = 6, d: int = 8, rng: np.random.Generator | None = None,
                   ) -> tuple[dict[str, np.ndarray], dict[str, int], list[str | None]]:
    """(inputs, attrs, input order) of one case: separate Q/K/V in ``layout`` "bnsd" ([B, H, S, d]) or
    "bsh" ([B, S, H*d]), ``nkv`` KV heads, ``causal``, and ``mask`` "none", "padding" (key padding),
    "bias" (a per-head additive bias) or "both"."""
    rng = rng if rng is not None else np.random.default_rng(0)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def lay(x: np.ndarray) -> np.ndarray:  # [B, H, S, d] -> [B, S, H*d] for the side-by-side layout
        return x if layout == "bnsd" else np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1))

    inputs = {"q": lay(f32(b, n, sq, d)), "k": lay(f32(b, nkv, sk, d)), "v": lay(f32(b, nkv, sk, d))}
    order: list[str | None] = ["q", "k", "v"]
    if mask in ("padding", "both"):
        kpm = np.ones((b, sk), np.int64)
        kpm[1, sk - 2:] = 0
        inputs["kpm"] = kpm
        order.append("kpm")
    if mask in ("bias", "both"):
        if mask == "bias":
            order.append(None)  # no key padding: its input slot stays empty
        inputs["bias"] = f32(1, n, sq, sk)
        order.append("bias")
    return inputs, {"num_heads": n, "kv_num_heads": nkv if nkv != n else 0, "causal": causal}, order
