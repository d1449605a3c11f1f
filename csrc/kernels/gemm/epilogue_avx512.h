// The fused GEMM epilogue on AVX-512 registers, shared by the AVX-512 micro-kernels
// (avx512.cpp, avx512_vnni.cpp, avx512_bf16.cpp). Same operation order as the
// scalar epi_s8/epi_f in driver.h, so every non-GELU output is bit-identical to
// the AVX2/scalar paths; GELU uses the vmath_avx512.h polynomials.
//
// Full micro-tiles apply it to the accumulators while they are still in zmm
// registers (finish_regs); ragged edge tiles go through the tile buffer with the
// very same per-vector code (finish_tile), so results never depend on how a
// GEMM was split into tiles or threads.
//
// Include only from translation units built with the AVX-512 flags; internal
// linkage, as in common/math.h.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "../common/vmath_avx512.h"
#include "driver.h"

namespace graphopt::kernels {
namespace {

// Lanes [0, cols) of a 16-column panel (cols may exceed 16).
inline __mmask16 col_mask(int cols) {
  return cols >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << cols) - 1u);
}

template <Act A>
inline __m512 act_v(__m512 y) {
  // max(+0, y) returns y for NaN and -0, exactly as the scalar y < 0 ? 0 : y: NaN propagates (ONNX Relu).
  if constexpr (A == Act::relu) return _mm512_max_ps(_mm512_setzero_ps(), y);
  else if constexpr (A == Act::gelu_erf) return gelu_erf_v(y);
  else if constexpr (A == Act::gelu_tanh) return gelu_tanh_v(y);
  else return y;
}

struct OutConst {
  __m512 osc, rcp;
  __m512i ozp;
  bool fast;  // rcp = 1 / out_scale is finite and out_scale normal: quotient_v may multiply
  explicit OutConst(const EpiResolved& e)
      : osc(_mm512_set1_ps(e.out_scale)), rcp(_mm512_set1_ps(1.f / e.out_scale)), ozp(_mm512_set1_epi32(e.out_zp)),
        fast(std::isnormal(e.out_scale) && std::isfinite(1.f / e.out_scale)) {}
};

// y / out_scale rounded to the nearest integer (even on ties) exactly as with the correctly rounded
// division the scalar path and numpy do, mostly without vdivps (a zmm divide every ~16 cycles was the
// int8 epilogue's bottleneck). b = y * fl(1 / s) is within (2u + u^2)|t| of the exact quotient t
// (u = 2^-24), the division a within u|t|, so |a - b| <= 3.02u|b|: the two round to different
// integers only if a half-integer lies between them, i.e. b is within |b| * 2^-22 of floor(b) + 0.5.
// Those lanes (and |b| >= 2^22, which the test flags too) take the division. NaN stays NaN either way.
inline __m512 quotient_v(__m512 y, const OutConst& oc) {
  if (!oc.fast) return _mm512_div_ps(y, oc.osc);
  const __m512 b = _mm512_mul_ps(y, oc.rcp);
  const __m512 h = _mm512_add_ps(_mm512_roundscale_ps(b, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), _mm512_set1_ps(0.5f));
  const __m512 d = _mm512_abs_ps(_mm512_sub_ps(b, h));
  const __m512 tol = _mm512_mul_ps(_mm512_abs_ps(b), _mm512_set1_ps(0x1p-22f));
  const __mmask16 near = _mm512_cmp_ps_mask(d, tol, _CMP_LE_OQ);
  return near ? _mm512_mask_div_ps(b, near, y, oc.osc) : b;
}

// Masked stores only on the ragged last panel: they also keep us from writing
// past the row end of C.
template <OutType O>
inline void store_v(void* C, index_t idx, __m512 y, __mmask16 k, bool full, const OutConst& oc) {
  if constexpr (O == OutType::f32) {
    float* c = static_cast<float*>(C) + idx;
    if (full) _mm512_storeu_ps(c, y);
    else _mm512_mask_storeu_ps(c, k, y);
  } else if constexpr (O == OutType::bf16) {
    std::uint16_t* c = static_cast<std::uint16_t*>(C) + idx;
    const __m256i h = to_bf16_v(y);
    if (full) _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), h);
    else _mm256_mask_storeu_epi16(c, k, h);
  } else {
    // Round-half-even of y / out_scale must match the scalar path and numpy exactly (quotient_v).
    const __m512 q = quotient_v(y, oc);
    const __m128i b = O == OutType::u8 ? to_u8_v(q, oc.ozp) : to_s8_v(q, oc.ozp);
    auto* c = static_cast<std::uint8_t*>(C) + idx;
    if (full) _mm_storeu_si128(reinterpret_cast<__m128i*>(c), b);
    else _mm_mask_storeu_epi8(c, k, b);
  }
}

// ---------------------------------------------------------------- int8 (s32 accumulators)

// Per-panel column terms, loaded once and applied to every row of the tile. wterm / wscale
// are kept raw for per-row activation grids (row_cols).
struct S8Cols {
  __m512i coff, wzp, wterm;
  __m512 scale, bias, wscale, omul;
  bool mul;  // e.out_mul set: act(y) * omul before the store
};

// Masked loads: the per-column arrays have exactly N entries.
inline __m512 bias_v(const EpiResolved& e, index_t n, __mmask16 k) {
  return e.bias ? _mm512_maskz_loadu_ps(k, e.bias + n) : _mm512_setzero_ps();
}

// The per-column output multiplier of a panel (lanes past N are 0 and never stored).
inline __m512 out_mul_v(const EpiResolved& e, index_t n, __mmask16 k) {
  return e.out_mul ? _mm512_maskz_loadu_ps(k, e.out_mul + n) : _mm512_set1_ps(1.f);
}

// coff = a_zp * (K*w_zp - colsum) wraps mod 2^32 exactly as the scalar int64 -> int32
// cast does; scale = a_scale * w_scale is one rounding, as in with_columns.
inline S8Cols s8_cols(const EpiResolved& e, index_t n, __mmask16 k) {
  S8Cols c;
  c.wterm = _mm512_maskz_loadu_epi32(k, e.wterm + n);
  c.wscale = _mm512_maskz_loadu_ps(k, e.wscale + n);
  c.coff = _mm512_mullo_epi32(c.wterm, _mm512_set1_epi32(e.a_zp));
  c.wzp = e.need_rowsum ? _mm512_maskz_loadu_epi32(k, e.wzp + n) : _mm512_setzero_si512();
  c.scale = _mm512_mul_ps(c.wscale, _mm512_set1_ps(e.a_scale));
  c.bias = bias_v(e, n, k);
  c.omul = out_mul_v(e, n, k);
  c.mul = e.out_mul != nullptr;
  return c;
}

// The column terms for row m of a per-row activation grid (e.row_scale / e.row_zp), the
// same products s8_cols forms from a_scale / a_zp.
inline S8Cols row_cols(const S8Cols& c, const EpiResolved& e, index_t m) {
  S8Cols r = c;
  r.coff = _mm512_mullo_epi32(c.wterm, _mm512_set1_epi32(e.row_zp[m]));
  r.scale = _mm512_mul_ps(c.wscale, _mm512_set1_ps(e.row_scale[m]));
  return r;
}

template <Act A, OutType O>
inline void s8_out(__m512i acc, const S8Cols& c, bool zp, std::int32_t rs, void* C, index_t idx, __mmask16 k,
                   bool full, const OutConst& oc) {
  __m512i v = _mm512_add_epi32(acc, c.coff);
  if (zp) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(c.wzp, _mm512_set1_epi32(rs)));
  if constexpr (O == OutType::s32) {
    std::int32_t* p = static_cast<std::int32_t*>(C) + idx;
    if (full) _mm512_storeu_si512(p, v);
    else _mm512_mask_storeu_epi32(p, k, v);
  } else {
    // Separate multiply and add (no FMA): the scalar epilogue rounds twice too.
    const __m512 y = act_v<A>(_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), c.scale), c.bias));
    store_v<O>(C, idx, c.mul ? _mm512_mul_ps(y, c.omul) : y, k, full, oc);
  }
}

// Panel-major: the column terms of one panel stay in registers across the rows.
template <Act A, OutType O, int MR, int NP, class V>
inline void finish_s8_regs(const V (&acc)[MR][NP], const TileDst& d) {
  const EpiResolved& e = *d.e;
  const OutConst oc(e);
  const bool zp = d.rowsum != nullptr;
  const bool rows = e.row_scale != nullptr;
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    const int cols = d.cols - 16 * j;
    const __mmask16 k = col_mask(cols);
    const S8Cols c = s8_cols(e, d.n0 + 16 * j, k);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      s8_out<A, O>((__m512i)acc[i][j], rows ? row_cols(c, e, d.m0 + i) : c, zp, zp ? d.rowsum[i] : 0, d.C,
                   (d.m0 + i) * d.ldc + d.n0 + 16 * j, k, cols >= 16, oc);
  }
}

// Rows [r0, r1) of a tile buffer: the AMX kernel finishes a block a few rows at a time, between the
// next block's tile products.
template <Act A, OutType O>
void finish_s8_rows(const std::int32_t* tile, int r0, int r1, int np, const TileDst& d) {
  const EpiResolved& e = *d.e;
  const OutConst oc(e);
  const bool zp = d.rowsum != nullptr;
  const bool rows = e.row_scale != nullptr;
  for (int j = 0; j < np; ++j) {
    const int cols = d.cols - 16 * j;
    const __mmask16 k = col_mask(cols);
    const S8Cols c = s8_cols(e, d.n0 + 16 * j, k);
    for (int i = r0; i < r1; ++i)
      s8_out<A, O>(_mm512_load_si512(tile + i * kTileLd + 16 * j), rows ? row_cols(c, e, d.m0 + i) : c, zp,
                   zp ? d.rowsum[i] : 0, d.C,
                   (d.m0 + i) * d.ldc + d.n0 + 16 * j, k, cols >= 16, oc);
  }
}

template <Act A, OutType O>
void finish_s8_tile(const std::int32_t* tile, int mr, int np, const TileDst& d) {
  finish_s8_rows<A, O>(tile, 0, mr, np, d);
}

// ---------------------------------------------------------------- float accumulators

template <Act A, OutType O>
inline void f_out(__m512 acc, __m512 bias, const __m512* mul, void* C, index_t idx, __mmask16 k, bool full,
                  const OutConst& oc) {
  const __m512 y = act_v<A>(_mm512_add_ps(acc, bias));
  store_v<O>(C, idx, mul ? _mm512_mul_ps(y, *mul) : y, k, full, oc);
}

template <Act A, OutType O, int MR, int NP>
inline void finish_f_regs(const __m512 (&acc)[MR][NP], const TileDst& d) {
  const OutConst oc(*d.e);
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    const int cols = d.cols - 16 * j;
    const __mmask16 k = col_mask(cols);
    const __m512 bias = bias_v(*d.e, d.n0 + 16 * j, k);
    const __m512 mul = out_mul_v(*d.e, d.n0 + 16 * j, k);
    const __m512* mp = d.e->out_mul ? &mul : nullptr;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      f_out<A, O>(acc[i][j], bias, mp, d.C, (d.m0 + i) * d.ldc + d.n0 + 16 * j, k, cols >= 16, oc);
  }
}

template <Act A, OutType O>
void finish_f_rows(const float* tile, int r0, int r1, int np, const TileDst& d) {
  const OutConst oc(*d.e);
  for (int j = 0; j < np; ++j) {
    const int cols = d.cols - 16 * j;
    const __mmask16 k = col_mask(cols);
    const __m512 bias = bias_v(*d.e, d.n0 + 16 * j, k);
    const __m512 mul = out_mul_v(*d.e, d.n0 + 16 * j, k);
    const __m512* mp = d.e->out_mul ? &mul : nullptr;
    for (int i = r0; i < r1; ++i)
      f_out<A, O>(_mm512_load_ps(tile + i * kTileLd + 16 * j), bias, mp, d.C, (d.m0 + i) * d.ldc + d.n0 + 16 * j, k,
                  cols >= 16, oc);
  }
}

template <Act A, OutType O>
void finish_f_tile(const float* tile, int mr, int np, const TileDst& d) {
  finish_f_rows<A, O>(tile, 0, mr, np, d);
}

// ---------------------------------------------------------------- per-call selection

// The entry points of a fused AVX-512 GEMM for one (activation, output) pair:
// `full` runs a whole MR x NP micro-tile with the epilogue in registers, `rows[r-1]`
// an r x NP_SMALL tile (r = 1, 2: GEMV-like calls and the last rows), and `edge`
// finishes any other ragged tile that a generic micro-kernel left in the tile buffer.
template <class AType, class AccT>
struct FusedFns {
  using Full = void (*)(const AType* A, index_t lda, const std::uint8_t* P, index_t pb, index_t K, const TileDst& d);
  using Edge = void (*)(const AccT* tile, int mr, int np, const TileDst& d);
  Full full = nullptr;
  Full rows[2] = {nullptr, nullptr};
  Edge edge = nullptr;
};

// Kernel provides template <Act, OutType, int MR, int NP> static void full(...) and the
// MR, NP, NP_SMALL constants. s32 output (int8 only) ignores the activation.
template <class Kernel, Act A, OutType O>
FusedFns<typename Kernel::AType, typename Kernel::AccT> fused_pair() {
  FusedFns<typename Kernel::AType, typename Kernel::AccT> f;
  f.full = &Kernel::template full<A, O, Kernel::MR, Kernel::NP>;
  f.rows[0] = &Kernel::template full<A, O, 1, Kernel::NP_SMALL>;
  f.rows[1] = &Kernel::template full<A, O, 2, Kernel::NP_SMALL>;
  if constexpr (std::is_same_v<typename Kernel::AccT, std::int32_t>) f.edge = &finish_s8_tile<A, O>;
  else f.edge = &finish_f_tile<A, O>;
  return f;
}

template <class Kernel, Act A>
FusedFns<typename Kernel::AType, typename Kernel::AccT> fused_for_out(OutType o) {
  switch (o) {
    case OutType::s32:
      if constexpr (std::is_same_v<typename Kernel::AccT, std::int32_t>) return fused_pair<Kernel, Act::none, OutType::s32>();
      else return {};
    case OutType::f32: return fused_pair<Kernel, A, OutType::f32>();
    case OutType::bf16: return fused_pair<Kernel, A, OutType::bf16>();
    case OutType::u8: return fused_pair<Kernel, A, OutType::u8>();
    case OutType::s8: return fused_pair<Kernel, A, OutType::s8>();
  }
  return {};
}

template <class Kernel>
FusedFns<typename Kernel::AType, typename Kernel::AccT> fused_fns(const EpiResolved& e) {
  switch (e.act) {
    case Act::none: return fused_for_out<Kernel, Act::none>(e.out);
    case Act::relu: return fused_for_out<Kernel, Act::relu>(e.out);
    case Act::gelu_erf: return fused_for_out<Kernel, Act::gelu_erf>(e.out);
    case Act::gelu_tanh: return fused_for_out<Kernel, Act::gelu_tanh>(e.out);
  }
  return {};
}

}  // namespace
}  // namespace graphopt::kernels
