// int8 GEMM with AMX (tdpbusd). Built with the AVX-512 VNNI flags plus
// -mamx-tile -mamx-int8; dispatched only when cpu_features() reports AMX
// tile + int8 support *and* the OS granted tile-data permission.
//
// Tiles: tmm0/tmm1 = two 16x16 s32 C blocks (32 output columns), tmm2 = A
// (16 rows x 64 k), tmm3/tmm4 = B (16 k-groups of 4 x 16 columns). The s8_k4
// packed panel *is* the AMX B-tile layout (64 bytes per k-group), so full
// k-tiles load straight from the packed weights with a 64-byte stride. A is
// copied per 16-row block into a zero-padded buffer (rows >= M, k >= K).
//
// NOTE: this path cannot be exercised on a CPU without AMX; the tests skip it
// there and the scalar/VNNI paths share its epilogue and packing.
#include <immintrin.h>

#include <new>

#include "driver.h"

namespace graphopt::kernels::amx {
namespace {

struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

}  // namespace

void gemm_s8(const GemmArgs& g) {
  const PackedWeights& W = *g.W;
  const index_t M = g.M, K = W.K(), N = W.N(), P = W.panels();
  ColumnBuf cols;
  const EpiResolved e = with_columns(*g.e, N, &cols);
  if (M <= 0 || N <= 0) return;
  const std::uint8_t* A = static_cast<const std::uint8_t*>(g.A);
  const index_t lda = g.lda;
  const index_t Kp64 = (K + 63) / 64 * 64;
  const index_t KT = Kp64 / 64;
  const index_t KG = W.Kp() / 4;  // k-groups stored per panel
  const EpiFn<std::int32_t> epi = pick_epilogue<std::int32_t>(e);
  const int nt = gemm_threads(M, N, K);
  const bool rowsums = e.need_rowsum;

#pragma omp parallel num_threads(nt)
  {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    for (int t = 0; t < 5; ++t) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);

    const Range rg = thread_range(M, P, 16, omp_get_num_threads(), omp_get_thread_num());
    std::uint8_t* apad = static_cast<std::uint8_t*>(::operator new(static_cast<std::size_t>(16 * Kp64), std::align_val_t(64)));
    alignas(64) std::uint8_t bpad0[1024];
    alignas(64) std::uint8_t bpad1[1024];
    alignas(64) std::int32_t tile[16 * kTileLd];
    std::int32_t rs[16];
    for (index_t m = rg.m0; m < rg.m1; m += 16) {
      const int mr = static_cast<int>(rg.m1 - m < 16 ? rg.m1 - m : 16);
      std::memset(apad, 0, static_cast<std::size_t>(16 * Kp64));
      for (int i = 0; i < mr; ++i) {
        std::memcpy(apad + i * Kp64, A + (m + i) * lda, static_cast<std::size_t>(K));
        if (rowsums) {
          std::int32_t s = 0;
          for (index_t k = 0; k < K; ++k) s += A[(m + i) * lda + k];
          rs[i] = s;
        }
      }
      for (index_t p = rg.p0; p < rg.p1; p += 2) {
        const int np = rg.p1 - p >= 2 ? 2 : 1;
        const std::uint8_t* b0 = W.panel(p);
        const std::uint8_t* b1 = np == 2 ? W.panel(p + 1) : b0;
        _tile_zero(0);
        _tile_zero(1);
        for (index_t kt = 0; kt < KT; ++kt) {
          _tile_loadd(2, apad + kt * 64, Kp64);
          if (kt * 16 + 16 <= KG) {
            _tile_loadd(3, b0 + kt * 1024, 64);
            _tile_loadd(4, b1 + kt * 1024, 64);
          } else {
            const std::size_t valid = static_cast<std::size_t>(KG - kt * 16) * 64;
            std::memset(bpad0, 0, sizeof(bpad0));
            std::memset(bpad1, 0, sizeof(bpad1));
            std::memcpy(bpad0, b0 + kt * 1024, valid);
            std::memcpy(bpad1, b1 + kt * 1024, valid);
            _tile_loadd(3, bpad0, 64);
            _tile_loadd(4, bpad1, 64);
          }
          _tile_dpbusd(0, 2, 3);
          _tile_dpbusd(1, 2, 4);
        }
        _tile_stored(0, tile, kTileLd * 4);
        _tile_stored(1, tile + 16, kTileLd * 4);
        const index_t n0 = p * 16;
        const int cols = static_cast<int>(N - n0 < np * 16 ? N - n0 : np * 16);
        epi(tile, mr, cols, m, n0, rowsums ? rs : nullptr, e, g.C, g.ldc);
      }
    }
    ::operator delete(apad, std::align_val_t(64));
    _tile_release();
  }
}

}  // namespace graphopt::kernels::amx
