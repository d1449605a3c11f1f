"""The test tree must never shadow an installed distribution (transformers 5 imports the PyPI ``kernels``)."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _top_level_names() -> set[str]:
    names: set[str] = set()
    for dist in md.distributions():
        top = dist.read_text("top_level.txt")
        if top:
            names.update(line.strip() for line in top.splitlines() if line.strip())
        for f in dist.files or ():
            parts = Path(str(f)).parts
            if len(parts) > 1 and parts[0].isidentifier() and not parts[0].endswith((".dist-info", ".data")):
                names.add(parts[0])
    return names


def test_no_test_folder_is_named_like_an_installed_package():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    clash = sorted(folders & _top_level_names())
    assert not clash, f"tests/ folders shadow installed packages: {clash}"


def test_pypi_kernels_package_is_importable_next_to_the_suite():
    import importlib.util

    spec = importlib.util.find_spec("kernels")
    if spec is not None:  # installed with transformers 5.x
        assert TESTS not in Path(spec.origin).resolve().parents
