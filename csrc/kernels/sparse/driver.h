// The 4x1-block sparse int8 GEMM, shared by its ISA translation units (internal linkage:
// each TU compiles its own copy with its own flags, as gemm/driver.h).
//
// Weights: per output column n, the blocks of 4 consecutive k that hold a nonzero
// (PackedWeights::sparse()). Activations are repacked per call into tiles of 16 rows:
// tile t, k-group g is 64 bytes, row i's 4 bytes at 4*i. A column then needs, per
// nonzero block, one broadcast of its 4 weights and one vpdpbusd per 16-row tile: the
// 16 lanes are 16 rows of that column. Every all-zero block is skipped.
//
// The int32 sums are exactly those of the dense kernel (integer arithmetic), so after a
// 16x16 transpose into the dense kernels' tile buffer the very same epilogue
// (finish_s8_tile on AVX-512, epi_s8 on the scalar path) makes the outputs bit-identical
// to gemm_s8 on the dense packing.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "../gemm/driver.h"

namespace graphopt::kernels {
namespace {

constexpr int kSpTile = 16;  // rows per A tile (one zmm of int32 lanes)
constexpr int kSpMaxR = 8;   // A tiles per column pass (128 rows)

// Kern provides:
//   static void column(const std::uint8_t* Ap, index_t tile_bytes, int R, const std::int32_t* off,
//                      const std::int32_t* val, std::int32_t nb, std::int32_t* out);  // out[r*16 + i]
//   static void transpose(const std::int32_t (*colbuf)[kSpMaxR * kSpTile], int r, std::int32_t* tile);
//   struct Fin (built once per call from EpiResolved) with
//   void operator()(const std::int32_t* tile, int rows, int cols, index_t m0, index_t n0, const std::int32_t* rs,
//                   void* C, index_t ldc) const;

inline void sparse_pack_a(const std::uint8_t* A, index_t M, index_t lda, index_t K, index_t KG, std::uint8_t* Ap) {
  const index_t MT = (M + kSpTile - 1) / kSpTile;
  const index_t tb = KG * 64;
  for (index_t t = 0; t < MT; ++t) {
    std::uint8_t* tile = Ap + t * tb;
    for (int i = 0; i < kSpTile; ++i) {
      const index_t m = t * kSpTile + i;
      std::uint8_t* dst = tile + 4 * i;
      if (m >= M) {
        for (index_t g = 0; g < KG; ++g) std::memset(dst + g * 64, 0, 4);
        continue;
      }
      const std::uint8_t* a = A + m * lda;
      const index_t full = K / 4;
      for (index_t g = 0; g < full; ++g) std::memcpy(dst + g * 64, a + 4 * g, 4);
      if (full < KG) {
        std::uint8_t last[4] = {0, 0, 0, 0};
        for (index_t k = 4 * full; k < K; ++k) last[k - 4 * full] = a[k];
        std::memcpy(dst + full * 64, last, 4);
      }
    }
  }
}

template <class Kern>
struct SparseCtx {
  const std::uint8_t* Ap;
  index_t M, N, KG, MT, P, GP, n_mb, RT;
  const SparseBlocks* S;
  const std::int32_t* rs;
  void* C;
  index_t ldc;
  const typename Kern::Fin* fin;
};

template <class Kern>
void sparse_task(void* vctx, std::int64_t t) {
  const SparseCtx<Kern>& c = *static_cast<const SparseCtx<Kern>*>(vctx);
  alignas(64) std::int32_t colbuf[kSpTile][kSpMaxR * kSpTile];
  alignas(64) std::int32_t tile[kSpTile * kTileLd];
  const index_t t0 = (t % c.n_mb) * c.RT, t1 = t0 + c.RT < c.MT ? t0 + c.RT : c.MT;
  const int R = static_cast<int>(t1 - t0);
  const index_t p0 = (t / c.n_mb) * c.GP, p1 = p0 + c.GP < c.P ? p0 + c.GP : c.P;
  const index_t tb = c.KG * 64;
  const std::int32_t* cp = c.S->col_ptr.data();
  for (index_t p = p0; p < p1; ++p) {
    const index_t n0 = p * 16;
    const int cols = static_cast<int>(c.N - n0 < 16 ? c.N - n0 : 16);
    for (int j = 0; j < cols; ++j) {
      const index_t n = n0 + j;
      Kern::column(c.Ap + t0 * tb, tb, R, c.S->off.data() + cp[n], c.S->val.data() + cp[n], cp[n + 1] - cp[n],
                   colbuf[j]);
    }
    for (int j = cols; j < kSpTile; ++j) std::memset(colbuf[j], 0, sizeof(colbuf[j]));
    for (int r = 0; r < R; ++r) {
      const index_t m0 = (t0 + r) * kSpTile;
      const int rows = static_cast<int>(c.M - m0 < kSpTile ? c.M - m0 : kSpTile);
      Kern::transpose(colbuf, r, tile);
      (*c.fin)(tile, rows, cols, m0, n0, c.rs ? c.rs + m0 : nullptr, c.C, c.ldc);
    }
  }
}

template <class Kern>
void run_sparse(const GemmArgs& g) {
  const PackedWeights& W = *g.W;
  const SparseBlocks& S = *W.sparse();
  const index_t M = g.M, K = W.K(), N = W.N(), KG = S.KG;
  if (M <= 0 || N <= 0) return;
  const auto* A = static_cast<const std::uint8_t*>(g.A);
  const index_t MT = (M + kSpTile - 1) / kSpTile;
  // Per-thread scratch: the runtime may run several GEMMs at once (column slices).
  thread_local std::vector<std::uint8_t> apbuf;
  const std::size_t need = static_cast<std::size_t>(MT * KG * 64) + 64;
  if (apbuf.size() < need) apbuf.resize(need);
  auto* Ap = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(apbuf.data()) + 63) / 64 * 64);
  sparse_pack_a(A, M, g.lda, K, KG, Ap);
  std::vector<std::int32_t> rs;
  const EpiResolved& e = *g.e;
  if (e.need_rowsum) {
    rs.assign(static_cast<std::size_t>(M), 0);
    for (index_t m = 0; m < M; ++m) {
      std::int32_t s = 0;
      for (index_t k = 0; k < K; ++k) s += A[m * g.lda + k];
      rs[m] = s;
    }
  }
  const typename Kern::Fin fin(e, N);
  const index_t P = W.panels();
  // Tiles per column pass: as many as keep their activations within ~48 KB (L1/L2 resident while
  // every column of the task streams over them), at most kSpMaxR.
  index_t RT = static_cast<index_t>(49152) / (KG * 64);
  RT = RT < 1 ? 1 : (RT > kSpMaxR ? kSpMaxR : RT);
  const index_t n_mb = (MT + RT - 1) / RT;
  // Threads by the work actually done (the nonzero blocks), as the dense GEMM counts MACs.
  const index_t nnzb = static_cast<index_t>(S.off.size());
  const int nt = gemm_threads(M, nnzb > 0 ? nnzb : 1, 4);
  // Panel groups: ~4 tasks per thread so a thread that loses its core delays a small piece.
  index_t GP = P;
  if (nt > 1) {
    const index_t want = 4 * nt;
    const index_t per = (P * n_mb + want - 1) / want;
    GP = per < 1 ? 1 : (per > P ? P : per);
  }
  const index_t n_pg = (P + GP - 1) / GP;
  SparseCtx<Kern> ctx{Ap, M, N, KG, MT, P, GP, n_mb, RT, &S, rs.empty() ? nullptr : rs.data(), g.C, g.ldc, &fin};
  parallel_tasks(n_mb * n_pg, nt, &sparse_task<Kern>, &ctx);
}

}  // namespace
}  // namespace graphopt::kernels
