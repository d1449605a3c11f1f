"""Model inputs: random feeds for checks, and the one feed checker (names, dtypes, ranks).

>>> feeds = random_feeds(model, dim=8)       # doctest: +SKIP
>>> check_feeds(model, feeds)                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import GraphoptError
from .ir import DType, Model, TensorType

__all__ = ["random_feeds", "check_feeds", "check_array"]


def random_feeds(model: Model, *, seed: int = 0, dim: int = 2) -> dict[str, np.ndarray]:
    """Random inputs for every non-initializer graph input (symbolic dims -> ``dim``).

    Floats are standard normal, integers 0 or 1 (valid token ids and masks), bools random.
    Raises ValueError when an input has no tensor shape.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for v in model.graph.inputs:
        if v.is_initializer:
            continue
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None:
            raise ValueError(f"input %{v.name} has no tensor shape; pass feeds explicitly")
        shape = tuple(d if isinstance(d, int) else dim for d in t.shape)
        if t.dtype.is_float:
            feeds[v.name] = rng.standard_normal(shape).astype(t.dtype.numpy)
        elif t.dtype is DType.BOOL:
            feeds[v.name] = rng.random(shape) > 0.5
        else:
            feeds[v.name] = rng.integers(0, 2, shape).astype(t.dtype.numpy)
    return feeds


def check_feeds(model: Model, feeds: Any, index: int = 0, *, what: str = "calibration batch") -> None:
    """Raise GraphoptError if ``feeds`` (``what`` number ``index``) does not fit the model's inputs."""
    if not isinstance(feeds, Mapping):
        raise GraphoptError(f"{what} {index} is a {type(feeds).__name__}, not a dict of input arrays")
    g = model.graph
    inits = set(g.initializers)
    required = {v.name: v for v in g.inputs if v.name not in inits}
    optional = {v.name for v in g.inputs if v.name in inits}
    unknown = [k for k in feeds if k not in required and k not in optional]
    if unknown:
        raise GraphoptError(f"{what} {index} feeds {unknown}, which are not inputs of the model "
                            f"(inputs: {sorted(required)})")
    missing = [k for k in required if k not in feeds]
    if missing:
        raise GraphoptError(f"{what} {index} lacks model input(s) {missing}")
    dims: dict[str, tuple[int, str]] = {}
    for name, v in required.items():
        want = v.dtype.numpy if v.dtype is not None and v.dtype is not DType.UNDEFINED else None
        check_array(np.asarray(feeds[name]), name, want, v.shape, dims, where=f"{what} {index}: ")


def _fmt(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_array(a: np.ndarray, name: str, dtype: Any, shape: Sequence[Any] | None,
                dims: dict[str, tuple[int, str]], *, error: type[Exception] = GraphoptError, where: str = "") -> None:
    """Raise ``error`` if array ``a`` for input ``name`` has another dtype than ``dtype``, another rank
    or fixed dim than ``shape``, or a symbolic dim that another input (recorded in ``dims``) set differently."""
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise error(f"{where}input '{name}': expected dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if shape is None:
        return
    if a.ndim != len(shape):
        raise error(f"{where}input '{name}': expected rank {len(shape)} {_fmt(shape)}, got shape {list(a.shape)}")
    for i, (want, got) in enumerate(zip(shape, a.shape)):
        if isinstance(want, int) and want != got:
            raise error(f"{where}input '{name}': dim {i} must be {want} {_fmt(shape)}, got shape {list(a.shape)}")
        if isinstance(want, str) and want:
            seen = dims.get(want)
            if seen is not None and seen[0] != got:
                raise error(f"{where}input '{name}': dim {i} ('{want}') is {got} but input "
                            f"'{seen[1]}' has '{want}' = {seen[0]}")
            dims.setdefault(want, (got, name))
