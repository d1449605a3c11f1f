"""Fit the piecewise polynomials behind erf_f/tanh_f (common/math.h) and erf_v/tanh_v (vmath_avx512.h).

For f = erf and f = tanh (odd functions), |x| in [0, 16 w) is split into 16
intervals of width w; interval i holds a degree-D polynomial in d = |x| - i w:

    f(|x|) ~= c0[i] + d (c1[i] + d (c2[i] + ...)),   result = copysign(., x)

16 intervals let an AVX-512 kernel fetch each coefficient for all lanes with
one vpermps. d is exact (Sterbenz), and c0[i] ~ f(i w) carries most of the
value, so the float Horner adds well under 1 ulp; interval 0 is fitted as
x * poly(x) (c0 = 0) to keep relative accuracy near zero. Beyond 16 w, |x| is
clamped to the last interval's end, where f rounds to 1 in float.

Fit: least squares on Chebyshev nodes (near-minimax for these smooth pieces),
weighted so the error is absolute, then coefficients rounded to float32. The
error printed is of a float32 evaluation that rounds after every operation
(the scalar path; the FMA path rounds less), against double-precision f.

    python tools/fit_vmath.py          # prints the C++ tables and the errors
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

F32 = np.float32


def fit_piece(f, a: float, w: float, deg: int, first: bool) -> np.ndarray:
    """Coefficients c0..c_deg (float32) of f(a + d) on d in [0, w]."""
    n = 8 * (deg + 1)
    d = 0.5 * w * (1 - np.cos((np.arange(n) + 0.5) * np.pi / n))
    y = f(a + d)
    if first:  # c0 = 0: fit y/d with powers d^0..d^(deg-1) scaled back by d (absolute error)
        V = np.stack([d ** (k + 1) for k in range(deg)], 1)
        c = np.concatenate([[0.0], np.linalg.lstsq(V, y, rcond=None)[0]])
    else:
        V = np.stack([d**k for k in range(deg + 1)], 1)
        c = np.linalg.lstsq(V, y, rcond=None)[0]
    c32 = c.astype(F32)
    # refit the tail after rounding c0 (it carries the value): absorbs c0's rounding error
    if not first:
        V1 = V[:, 1:]
        c32[1:] = np.linalg.lstsq(V1, y - float(c32[0]), rcond=None)[0].astype(F32)
    return c32


def eval_f32(x: np.ndarray, tab: np.ndarray, w: float) -> np.ndarray:
    """Scalar-path evaluation: separate float32 multiply and add (no FMA)."""
    x = x.astype(F32)
    ax = np.abs(x)
    hi = F32(16 * w) - F32(16 * w) * F32(2.0**-23)  # largest float below 16 w (as the kernels)
    axc = np.minimum(ax, hi)
    i = (axc * F32(1 / w)).astype(np.int32)
    i = np.minimum(i, 15)
    d = (axc - i.astype(F32) * F32(w)).astype(F32)
    p = tab[-1][i]
    for k in range(tab.shape[0] - 2, -1, -1):
        p = (p * d).astype(F32) + tab[k][i]
    return np.copysign(p.astype(F32), x)


def _lit(v: float) -> str:
    """A C++ float literal that round-trips v."""
    t = f"{v:.9g}"
    return (t if any(ch in t for ch in ".e") else t + ".") + "f"


def build(name: str, f, w: float, deg: int) -> np.ndarray:
    pieces = [fit_piece(f, i * w, w, deg, i == 0) for i in range(16)]
    tab = np.array(pieces, dtype=F32).T  # [deg+1, 16]
    x = np.concatenate([np.linspace(0, 16 * w * 1.05, 4_000_001), np.geomspace(1e-38, 1e-2, 20001)]).astype(F32)
    err = np.abs(eval_f32(x, tab, w).astype(np.float64) - f(x.astype(np.float64)))
    print(f"// {name}: 16 x degree {deg} on width {w}: max abs error (float32, no FMA) {err.max():.3e} at x={x[err.argmax()]:.7g}")
    print(f"constexpr float k{name.capitalize()}Tab[{deg + 1}][16] = {{")
    for row in tab:
        print("    {" + ", ".join(_lit(v) for v in row) + "},")
    print("};")
    return tab


if __name__ == "__main__":
    build("erf", erf, 0.25, 5)
    build("tanh", np.tanh, 0.5625, 6)
