"""Access to the compiled extension, with a clear error when it was not built."""

from __future__ import annotations

from types import ModuleType

from .errors import GraphoptError


def native() -> ModuleType:
    """Return ``graphopt._C``; raise GraphoptError if the extension is missing."""
    try:
        from . import _C  # type: ignore[attr-defined]
    except ImportError as e:  # pragma: no cover - only without a build
        raise GraphoptError(
            "graphopt's C++ extension graphopt._C is not built; install the package with "
            "`pip install .` (or `pip install -e .`) so scikit-build-core compiles it"
        ) from e
    return _C


def cpu_info() -> dict[str, object]:
    """What this CPU and OS can execute, plus the ISA level kernels will use.

    >>> info = cpu_info()
    >>> isinstance(info["avx2"], bool)
    True
    """
    c = native()
    info: dict[str, object] = dict(c.cpu_features())
    info["isa_available"] = c.isa_available()
    info["isa_selected"] = c.isa_selected()
    info["num_threads"] = c.get_num_threads()
    return info


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads native kernels use."""
    native().set_num_threads(int(n))
