"""Exhaustive check of the float erf/tanh kernels: every float x >= 0 up to where
the function is 1 (plus the clamp region), on each ISA path; prints the max
abs error against double precision. Both are odd by construction (the sign
is copied), so x >= 0 covers all floats.

    python tools/check_vmath.py            # ~1-2 min on one core
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from graphopt import _C
from graphopt.runtime import kernels as gk


def main() -> None:
    chunk = 1 << 24
    for name, f, top in [("erf", erf, 4.5), ("tanh", np.tanh, 10.0)]:
        end = int(np.float32(top).view(np.uint32))
        for isa in ["scalar", "avx2", "avx512"]:
            _C.set_max_isa(isa)
            worst, at = 0.0, 0.0
            for b in range(0, end + 1, chunk):
                x = np.arange(b, min(b + chunk, end + 1), dtype=np.uint32).view(np.float32)
                err = np.abs(getattr(gk, name)(x).astype(np.float64) - f(x.astype(np.float64)))
                k = int(err.argmax())
                if err[k] > worst:
                    worst, at = float(err[k]), float(x[k])
            tail = getattr(gk, name)(np.float32([top, 1e10, 3.4e38, np.inf]))
            print(f"{name} {isa:7s}: max abs error {worst:.3e} at x={at:.9g}; f(>= {top}) = {tail.tolist()}")


if __name__ == "__main__":
    main()
