// Scalar 4x1-block sparse int8 GEMM (always built, no ISA flags): the same blocking as
// the AVX-512 VNNI path and the dense scalar epilogue (epi_s8), so it is bit-identical
// to the dense scalar gemm_s8.
#include "driver.h"
#include "sparse_internal.h"

namespace graphopt::kernels::sparse_ref {
namespace {

struct Kern {
  static void column(const std::uint8_t* Ap, index_t tb, int R, const std::int32_t* off, const std::int32_t* val,
                     std::int32_t nb, std::int32_t* out) {
    for (int r = 0; r < R; ++r) {
      const std::uint8_t* tile = Ap + r * tb;
      for (int i = 0; i < kSpTile; ++i) {
        std::int32_t s = 0;
        for (std::int32_t b = 0; b < nb; ++b) {
          const std::uint8_t* a = tile + off[b] + 4 * i;
          const auto w = static_cast<std::uint32_t>(val[b]);
          for (int q = 0; q < 4; ++q)
            s += static_cast<std::int32_t>(a[q]) * static_cast<std::int8_t>(static_cast<std::uint8_t>(w >> (8 * q)));
        }
        out[r * kSpTile + i] = s;
      }
    }
  }
  static void transpose(const std::int32_t (*colbuf)[kSpMaxR * kSpTile], int r, std::int32_t* tile) {
    for (int i = 0; i < kSpTile; ++i)
      for (int j = 0; j < kSpTile; ++j) tile[i * kTileLd + j] = colbuf[j][r * kSpTile + i];
  }
  struct Fin {
    ColumnBuf cols;
    EpiResolved e;
    EpiFn<std::int32_t> epi;
    Fin(const EpiResolved& r, index_t N) : e(with_columns(r, N, &cols)), epi(pick_epilogue<std::int32_t>(e)) {}
    void operator()(const std::int32_t* tile, int rows, int ncols, index_t m0, index_t n0, const std::int32_t* rs,
                    void* C, index_t ldc) const {
      epi(tile, rows, ncols, m0, n0, rs, e, C, ldc);
    }
  };
};

}  // namespace

void gemm_s8(const GemmArgs& g) { run_sparse<Kern>(g); }

}  // namespace graphopt::kernels::sparse_ref
