"""graphopt's shipped passes (installed as ``graphopt.passes``). Importing this
package registers them; ``pipelines`` registers the O1/O2 presets.

Families: ``cleanup`` and ``folding`` (O1), ``canonicalize`` and ``fusion`` (O2), and, where present,
``quant`` and ``precision``.
"""

import importlib
import importlib.util

from . import cleanup, folding  # noqa: F401

# Families other engineers add: imported when the package exists (a real
# import error inside them still propagates).
for _family in ("canonicalize", "fusion", "quant", "precision", "pruning"):
    if importlib.util.find_spec(f"{__name__}.{_family}") is not None:
        importlib.import_module(f"{__name__}.{_family}")

from . import pipelines  # noqa: E402,F401  (after the families: presets may name their passes)
