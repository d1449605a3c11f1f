"""Fit the piecewise polynomials behind erf_f/tanh_f (common/math.h) and erf_v/tanh_v (vmath_avx512.h).

For f = erf and f = tanh (odd functions), |x| is split into 16 intervals of
width w centred on i w (i = round(|x| / w)); interval i holds a degree-D
polynomial in d = |x| - i w, |d| <= w / 2:

    f(|x|) ~= c0[i] + d (c1[i] + d (c2[i] + ...)),   result = copysign(., x)

16 intervals let an AVX-512 kernel fetch each coefficient for all lanes with
one vpermps, indexed straight from the low bits of |x| / w + 1.5 * 2^23.
c0[i] ~ f(i w) carries most of the value, so the float Horner adds well under
1 ulp; interval 0 ([0, w/2)) is fitted as x * poly(x) (c0 = 0) to keep relative
accuracy near zero. Interval 15 is the constant 1: w is chosen so that it
starts (at 14.5 w) where f rounds to 1 in float, and |x| is clamped inside it,
so large |x| gives exactly +-1 (GELU's 1 + erf(x) then reaches exactly 0).

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
    """Coefficients c0..c_deg (float32) of f(a + d) on d in [-w/2, w/2] ([0, w/2] for the first)."""
    n = 8 * (deg + 1)
    lo = 0.0 if first else -0.5 * w
    d = lo + (0.5 * w - lo) * 0.5 * (1 - np.cos((np.arange(n) + 0.5) * np.pi / n))
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
    """Scalar-path evaluation (math.h): separate float32 multiply and add (no FMA)."""
    x = x.astype(F32)
    ax = np.abs(x)
    hi = F32(F32(15.5 * w) * F32(1 - 2.0**-20))  # clamp: round(|x| / w) <= 15
    axc = np.minimum(ax, hi)
    magic = F32(12582912.0)
    fi = ((axc * F32(1 / w)).astype(F32) + magic).astype(F32) - magic
    i = fi.astype(np.int32)
    d = (axc - (fi * F32(w)).astype(F32)).astype(F32)
    p = tab[-1][i]
    for k in range(tab.shape[0] - 2, -1, -1):
        p = (p * d).astype(F32) + tab[k][i]
    return np.copysign(p.astype(F32), x)


def _lit(v: float) -> str:
    """A C++ float literal that round-trips v."""
    t = f"{v:.9g}"
    return (t if any(ch in t for ch in ".e") else t + ".") + "f"


def build(name: str, f, w: float, deg: int) -> np.ndarray:
    w = float(F32(w))  # the kernels' w; centres i * w as they compute them (rounded to float)
    pieces = [fit_piece(f, float(F32(i) * F32(w)), w, deg, i == 0) for i in range(15)]
    pieces.append(np.array([1.0] + [0.0] * deg, dtype=F32))
    tab = np.array(pieces, dtype=F32).T  # [deg+1, 16]
    x = np.concatenate([np.linspace(0, 16 * w, 4_000_001), np.geomspace(1e-38, 1e-2, 20001)]).astype(F32)
    err = np.abs(eval_f32(x, tab, w).astype(np.float64) - f(x.astype(np.float64)))
    print(f"// {name}: w = {w:.9g}f, degree {deg}: max abs error (float32, no FMA) {err.max():.3e} at x={x[err.argmax()]:.7g}")
    print(f"constexpr float k{name.capitalize()}Tab[{deg + 1}][16] = {{")
    for row in tab:
        print("    {" + ", ".join(_lit(v) for v in row) + "},")
    print("};")
    return tab


def fit_exp(deg: int) -> np.ndarray:
    """exp(r) ~= 1 + r (c1 + r (c2 + ...)) on |r| <= ln2 / 2 (c0 = 1 keeps exp(0) = 1 exactly), relative error."""
    h = 0.5 * np.log(2.0)
    n = 64
    r = -h + h * (1 - np.cos((np.arange(n) + 0.5) * np.pi / n))
    y = np.exp(r)
    V = np.stack([r**k / y for k in range(1, deg + 1)], 1)  # relative weighting
    c = np.concatenate([[1.0], np.linalg.lstsq(V, (y - 1) / y, rcond=None)[0]]).astype(F32)
    c[1:] = np.linalg.lstsq(V, (y - 1) / y, rcond=None)[0].astype(F32)
    rr = np.linspace(-h, h, 200001)
    p = np.zeros_like(rr, dtype=F32)
    for k in c[::-1]:
        p = (p * rr.astype(F32)).astype(F32) + k
    err = np.abs(p / np.exp(rr) - 1).max()
    print(f"// exp on |r| <= ln2/2, degree {deg}: max rel error (float32 Horner) {err:.3e}")
    print(f"constexpr float kExpPoly[{deg + 1}] = {{" + ", ".join(_lit(v) for v in c) + "};")
    return c


if __name__ == "__main__":
    # 14.5 w >= the point where f rounds to 1: erfc(3.92) = 2.9e-8, 1 - tanh(9.01) = 2.9e-8 (< 2^-25)
    build("erf", erf, 3.92 / 14.5, 5)
    build("tanh", np.tanh, 9.01 / 14.5, 7)
    fit_exp(5)
