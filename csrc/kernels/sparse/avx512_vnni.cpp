// 4x1-block sparse int8 GEMM with AVX-512 VNNI. Built with the AVX-512 + VNNI flags.
//
// One output column at a time: per nonzero block, its 4 weights are broadcast and one
// vpdpbusd per 16-row tile of packed activations adds them in (up to 8 tiles = 128 rows
// at once, so each weight load feeds 8 instructions). Few tiles get two accumulator sets
// (even/odd blocks) to hide the vpdpbusd latency; integer sums, so the split is exact.
// The column results are transposed 16x16 into the dense kernels' tile buffer and
// finished by their AVX-512 epilogue (finish_s8_tile): bit-identical to gemm_s8.
#include <immintrin.h>

#include "../gemm/epilogue_avx512.h"
#include "driver.h"
#include "sparse_internal.h"

namespace graphopt::kernels::sparse_avx512_vnni {
namespace {

typedef int v16si __attribute__((vector_size(64)));
using EdgeFnS8 = void (*)(const std::int32_t* tile, int mr, int np, const TileDst& d);

template <int R>
__attribute__((always_inline)) inline void column_r(const std::uint8_t* Ap, index_t tb, const std::int32_t* off,
                                                    const std::int32_t* val, std::int32_t nb, std::int32_t* out) {
  constexpr int S = R <= 2 ? 2 : 1;  // accumulator sets
  v16si acc[S][R];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[s][r] = v16si{};
  std::int32_t b = 0;
  for (; b + S <= nb; b += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const v16si w = v16si{} + val[b + s];
      const std::uint8_t* a = Ap + off[b + s];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[s][r] = __builtin_ia32_vpdpbusd_v16si(acc[s][r], *reinterpret_cast<const v16si*>(a + r * tb), w);
    }
  }
  for (; b < nb; ++b) {
    const v16si w = v16si{} + val[b];
    const std::uint8_t* a = Ap + off[b];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      acc[0][r] = __builtin_ia32_vpdpbusd_v16si(acc[0][r], *reinterpret_cast<const v16si*>(a + r * tb), w);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    v16si t = acc[0][r];
    if constexpr (S == 2) t += acc[1][r];
    *reinterpret_cast<v16si*>(out + r * kSpTile) = t;
  }
}

using ColumnFn = void (*)(const std::uint8_t*, index_t, const std::int32_t*, const std::int32_t*, std::int32_t,
                          std::int32_t*);

template <int R>
void column_fn(const std::uint8_t* Ap, index_t tb, const std::int32_t* off, const std::int32_t* val, std::int32_t nb,
               std::int32_t* out) {
  column_r<R>(Ap, tb, off, val, nb, out);
}

// 16x16 int32 transpose in registers: unpack 32, unpack 64, then two 128-bit lane shuffles.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

template <Act A>
EdgeFnS8 edge_for_out(OutType o) {
  switch (o) {
    case OutType::s32: return &finish_s8_tile<Act::none, OutType::s32>;
    case OutType::f32: return &finish_s8_tile<A, OutType::f32>;
    case OutType::bf16: return &finish_s8_tile<A, OutType::bf16>;
    case OutType::u8: return &finish_s8_tile<A, OutType::u8>;
    case OutType::s8: return &finish_s8_tile<A, OutType::s8>;
  }
  return nullptr;
}

struct Kern {
  static void column(const std::uint8_t* Ap, index_t tb, int R, const std::int32_t* off, const std::int32_t* val,
                     std::int32_t nb, std::int32_t* out) {
    static const ColumnFn fns[kSpMaxR] = {&column_fn<1>, &column_fn<2>, &column_fn<3>, &column_fn<4>,
                                          &column_fn<5>, &column_fn<6>, &column_fn<7>, &column_fn<8>};
    fns[R - 1](Ap, tb, off, val, nb, out);
  }
  static void transpose(const std::int32_t (*colbuf)[kSpMaxR * kSpTile], int r, std::int32_t* tile) {
    __m512i v[16];
    for (int j = 0; j < 16; ++j) v[j] = _mm512_load_si512(colbuf[j] + r * kSpTile);
    transpose16(v);
    for (int i = 0; i < 16; ++i) _mm512_store_si512(tile + i * kTileLd, v[i]);
  }
  struct Fin {
    const EpiResolved* e;
    EdgeFnS8 edge;
    Fin(const EpiResolved& r, index_t) : e(&r) {
      switch (r.act) {
        case Act::none: edge = edge_for_out<Act::none>(r.out); break;
        case Act::relu: edge = edge_for_out<Act::relu>(r.out); break;
        case Act::gelu_erf: edge = edge_for_out<Act::gelu_erf>(r.out); break;
        case Act::gelu_tanh: edge = edge_for_out<Act::gelu_tanh>(r.out); break;
        default: edge = nullptr;
      }
    }
    void operator()(const std::int32_t* tile, int rows, int cols, index_t m0, index_t n0, const std::int32_t* rs,
                    void* C, index_t ldc) const {
      const TileDst d{e, C, ldc, m0, n0, cols, rs};
      edge(tile, rows, 1, d);
    }
  };
};

}  // namespace

void gemm_s8(const GemmArgs& g) { run_sparse<Kern>(g); }

}  // namespace graphopt::kernels::sparse_avx512_vnni
