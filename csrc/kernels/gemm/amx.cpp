// int8 and bf16 GEMMs with AMX (tdpbusd, tdpbf16ps). Built with the AVX-512 VNNI flags plus
// -mamx-tile -mamx-int8 -mamx-bf16; dispatched only when cpu_features() reports AMX
// tile + int8 support *and* the OS granted tile-data permission.
//
// Tiles: tmm0-3 = a 2 x 2 block of 16x16 s32 C tiles (32 rows x 32 output columns), tmm4/tmm5 =
// A (two 16-row blocks x 64 k), tmm6/tmm7 = B (16 k-groups of 4 x 16 columns): one tile load per
// tdpbusd. The s8_k4 packed panel *is* the AMX B-tile layout (64 bytes per k-group), so full
// k-tiles load straight from the packed weights with a 64-byte stride. Each thread copies its rows
// of A once into a zero-padded buffer (rows to a multiple of 32, k to 64); the loop runs panel
// pairs outside and row blocks inside, so a pair's weights stay in L1 while A streams from L2.
// The epilogue is the AVX-512 one (epilogue_avx512.h): the same bits as the VNNI path, GELU
// included. Calls with fewer than 16 rows go to the VNNI kernel (a tile would be mostly padding).
//
// NOTE: this path cannot be exercised on a CPU without AMX; the tests skip it there.
#include <immintrin.h>

#include <algorithm>
#include <new>

#include "epilogue_avx512.h"

namespace graphopt::kernels::amx {
namespace {

struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

void load_config(int tiles) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < tiles; ++t) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
  // GCC's ldtilecfg intrinsic tells the compiler it reads one byte: without this barrier the
  // rows/colsb stores can be dropped as dead (seen once inlined: every tile op then faults).
  __asm__ __volatile__("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

using EdgeFn = void (*)(const std::int32_t* tile, int mr, int np, const TileDst& d);

template <Act A>
EdgeFn edge_for_out(OutType o) {
  switch (o) {
    case OutType::s32: return &finish_s8_tile<Act::none, OutType::s32>;
    case OutType::f32: return &finish_s8_tile<A, OutType::f32>;
    case OutType::bf16: return &finish_s8_tile<A, OutType::bf16>;
    case OutType::u8: return &finish_s8_tile<A, OutType::u8>;
    case OutType::s8: return &finish_s8_tile<A, OutType::s8>;
  }
  return nullptr;
}

EdgeFn edge_for(const EpiResolved& e) {
  switch (e.act) {
    case Act::none: return edge_for_out<Act::none>(e.out);
    case Act::relu: return edge_for_out<Act::relu>(e.out);
    case Act::gelu_erf: return edge_for_out<Act::gelu_erf>(e.out);
    case Act::gelu_tanh: return edge_for_out<Act::gelu_tanh>(e.out);
  }
  return nullptr;
}

using FEdge = void (*)(const float* tile, int mr, int np, const TileDst& d);

template <Act A>
FEdge f_edge_for_out(OutType o) {
  switch (o) {
    case OutType::f32: return &finish_f_tile<A, OutType::f32>;
    case OutType::bf16: return &finish_f_tile<A, OutType::bf16>;
    case OutType::u8: return &finish_f_tile<A, OutType::u8>;
    case OutType::s8: return &finish_f_tile<A, OutType::s8>;
    case OutType::s32: return nullptr;  // rejected by the front (check_gemm)
  }
  return nullptr;
}

// A thread's padded copy of A, kept between calls: a fresh allocation of this size is a fresh
// mapping, and its page faults cost 15-30 % of a 1024 x 768 x 768 GEMM.
std::uint8_t* a_buffer(std::size_t bytes) {
  struct Buf {
    std::uint8_t* p = nullptr;
    std::size_t n = 0;
    ~Buf() { ::operator delete(p, std::align_val_t(64)); }
  };
  thread_local Buf b;
  if (b.n < bytes) {
    ::operator delete(b.p, std::align_val_t(64));
    b.p = static_cast<std::uint8_t*>(::operator new(bytes, std::align_val_t(64)));
    b.n = bytes;
  }
  return b.p;
}

// One task per thread slot on the GEMMs' caller-participating pool (common/thread_pool.h): an OpenMP
// region's barrier would wait a scheduler slice for a worker another process delays. Each task
// configures the tiles on whichever thread runs it.
template <class F>
void run_tasks(int nt, F& f) {
  parallel_tasks(nt, nt, [](void* c, std::int64_t t) { (*static_cast<F*>(c))(static_cast<int>(t)); }, &f);
}

// The tile products of one 32-row x 2-panel block. GCC's tile intrinsics stringify their tile
// numbers, so the numbers stay literal here and the element type picks the instruction.
template <bool kBf16>
inline void products_top() {
  if constexpr (kBf16) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
  } else {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
  }
}

template <bool kBf16>
inline void products_bottom() {
  if constexpr (kBf16) {
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  } else {
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
}

// One thread's share of an AMX GEMM, the same for int8 (tdpbusd, int32 tiles) and bf16 (tdpbf16ps,
// fp32 tiles): A padded to rowb bytes a row in apad; row chunks whose A stays in L2 while every panel
// pair streams past it once; 2x2 C tiles; two tile buffers, so a block's epilogue runs while the next
// block's tile products are in flight. dst(m, n0, cols) says where block (m, n0) goes.
template <bool kBf16, class Tile, class Edge, class Dst>
void tile_blocks(const PackedWeights& W, const Range& rg, index_t rows, const std::uint8_t* apad, index_t rowb,
                 index_t KT, index_t KG, index_t N, Edge edge, Dst dst) {
  const index_t full_kt = KG / 16;  // k-tiles that load straight from the panel
  alignas(64) std::uint8_t bpad[2][1024];
  alignas(64) Tile tile[2][32 * kTileLd];
  int cur = 0, pmr = 0, pnp = 0;
  bool pend = false;
  TileDst pd{};
  const index_t chunk = std::max<index_t>(32, cache_info().l2 / 2 / rowb / 32 * 32);
  for (index_t c0 = 0; c0 < rows; c0 += chunk) {
    const index_t c1 = std::min(rows, c0 + chunk);
    for (index_t p = rg.p0; p < rg.p1; p += 2) {
      const int np = rg.p1 - p >= 2 ? 2 : 1;
      const std::uint8_t* b[2] = {W.panel(p), np == 2 ? W.panel(p + 1) : W.panel(p)};
      if (full_kt < KT) {  // the last k-tile: the panel's remaining k-groups, zero-padded
        const std::size_t valid = static_cast<std::size_t>(KG - full_kt * 16) * 64;
        for (int j = 0; j < 2; ++j) {
          std::memset(bpad[j], 0, sizeof(bpad[j]));
          std::memcpy(bpad[j], b[j] + full_kt * 1024, valid);
        }
      }
      const index_t n0 = p * 16;
      const int cols = static_cast<int>(N - n0 < np * 16 ? N - n0 : np * 16);
      for (index_t m = c0; m < c1; m += 32) {
        const bool two = c1 - m > 16;
        const std::uint8_t* a0 = apad + m * rowb;
        _tile_zero(0);
        _tile_zero(1);
        if (two) {
          _tile_zero(2);
          _tile_zero(3);
        }
        for (index_t kt = 0; kt < KT; ++kt) {
          _tile_loadd(4, a0 + kt * 64, rowb);
          if (kt < full_kt) {
            _tile_loadd(6, b[0] + kt * 1024, 64);
            _tile_loadd(7, b[1] + kt * 1024, 64);
          } else {
            _tile_loadd(6, bpad[0], 64);
            _tile_loadd(7, bpad[1], 64);
          }
          products_top<kBf16>();
          if (two) {
            _tile_loadd(5, a0 + 16 * rowb + kt * 64, rowb);
            products_bottom<kBf16>();
          }
        }
        if (pend) edge(tile[cur ^ 1], pmr, pnp, pd);
        Tile* t = tile[cur];
        _tile_stored(0, t, kTileLd * 4);
        _tile_stored(1, t + 16, kTileLd * 4);
        if (two) {
          _tile_stored(2, t + 16 * kTileLd, kTileLd * 4);
          _tile_stored(3, t + 16 * kTileLd + 16, kTileLd * 4);
        }
        pmr = static_cast<int>(c1 - m < 32 ? c1 - m : 32);
        pnp = np;
        pd = dst(m, n0, cols);
        pend = true;
        cur ^= 1;
      }
    }
  }
  if (pend) edge(tile[cur ^ 1], pmr, pnp, pd);
}

}  // namespace

void gemm_s8(const GemmArgs& g) {
  if (g.M < 16) {
    avx512_vnni::gemm_s8(g);
    return;
  }
  const PackedWeights& W = *g.W;
  const EpiResolved& e = *g.e;
  const index_t M = g.M, K = W.K(), N = W.N(), P = W.panels();
  if (M <= 0 || N <= 0) return;
  const std::uint8_t* A = static_cast<const std::uint8_t*>(g.A);
  const index_t lda = g.lda;
  const index_t Kp64 = (K + 63) / 64 * 64;
  const index_t KT = Kp64 / 64;
  const index_t KG = W.Kp() / 4;  // k-groups stored per panel
  const EdgeFn edge = edge_for(e);
  const int nt = gemm_threads(M, N, K);
  const bool rowsums = e.need_rowsum;

  auto task = [&](int tid) {
    const Range rg = thread_range(M, P, 32, nt, tid);
    const index_t rows = rg.m1 - rg.m0;
    if (rows > 0 && rg.p1 > rg.p0) {
      load_config(8);
      const index_t mpad = (rows + 31) / 32 * 32;
      std::uint8_t* apad = a_buffer(static_cast<std::size_t>(mpad * Kp64));
      std::memset(apad + rows * Kp64, 0, static_cast<std::size_t>((mpad - rows) * Kp64));
      std::vector<std::int32_t> rs(rowsums ? static_cast<std::size_t>(mpad) : 0, 0);
      for (index_t i = 0; i < rows; ++i) {
        const std::uint8_t* src = A + (rg.m0 + i) * lda;
        std::memcpy(apad + i * Kp64, src, static_cast<std::size_t>(K));
        std::memset(apad + i * Kp64 + K, 0, static_cast<std::size_t>(Kp64 - K));
        if (rowsums) {
          std::int32_t s = 0;
          for (index_t k = 0; k < K; ++k) s += src[k];
          rs[i] = s;
        }
      }
      tile_blocks<false, std::int32_t>(W, rg, rows, apad, Kp64, KT, KG, N, edge, [&](index_t m, index_t n0, int cols) {
        return TileDst{&e, g.C, g.ldc, rg.m0 + m, n0, cols, rowsums ? rs.data() + m : nullptr};
      });
      _tile_release();
    }
  };
  run_tasks(nt, task);
}

// bf16 on AMX (tdpbf16ps), the same blocking as gemm_s8: the bf16_k2 panel is the AMX B-tile layout
// too (64 bytes = 16 columns x one k-pair per row, 16 k-pairs = 32 k per tile); A tiles are 16 rows x
// 32 bf16. Each C tile sums its products in the tile unit's order, fixed per output element (threads
// split rows and panels, never k), so results are the same run to run and at any thread count; they
// differ from the AVX512-BF16 path's in fp32 rounding only. The epilogue is the AVX-512 one.
void gemm_bf16(const GemmArgs& g) {
  if (g.M < 16 || !cpu_features().amx_bf16) {
    avx512_bf16::gemm_bf16(g);
    return;
  }
  const PackedWeights& W = *g.W;
  const EpiResolved& e = *g.e;
  const index_t M = g.M, K = W.K(), N = W.N(), P = W.panels();
  if (M <= 0 || N <= 0) return;
  const auto* A = static_cast<const std::uint16_t*>(g.A);
  const index_t lda = g.lda;
  const index_t Kp32 = (K + 31) / 32 * 32;  // bf16 per padded A row
  const index_t KT = Kp32 / 32;
  const index_t KG = W.Kp() / 2;  // k-pairs stored per panel
  using Edge = void (*)(const float*, int, int, const TileDst&);
  Edge edge = nullptr;
  switch (e.act) {
    case Act::none: edge = f_edge_for_out<Act::none>(e.out); break;
    case Act::relu: edge = f_edge_for_out<Act::relu>(e.out); break;
    case Act::gelu_erf: edge = f_edge_for_out<Act::gelu_erf>(e.out); break;
    case Act::gelu_tanh: edge = f_edge_for_out<Act::gelu_tanh>(e.out); break;
  }
  const int nt = gemm_threads(M, N, K);

  auto task = [&](int tid) {
    const Range rg = thread_range(M, P, 32, nt, tid);
    const index_t rows = rg.m1 - rg.m0;
    if (rows > 0 && rg.p1 > rg.p0) {
      load_config(8);
      const index_t mpad = (rows + 31) / 32 * 32;
      const std::size_t rowb = static_cast<std::size_t>(Kp32) * 2;
      std::uint8_t* apad = a_buffer(static_cast<std::size_t>(mpad) * rowb);
      std::memset(apad + rows * rowb, 0, static_cast<std::size_t>(mpad - rows) * rowb);
      for (index_t i = 0; i < rows; ++i) {
        std::memcpy(apad + i * rowb, A + (rg.m0 + i) * lda, static_cast<std::size_t>(K) * 2);
        std::memset(apad + i * rowb + K * 2, 0, rowb - static_cast<std::size_t>(K) * 2);
      }
      tile_blocks<true, float>(W, rg, rows, apad, static_cast<index_t>(rowb), KT, KG, N, edge,
                               [&](index_t m, index_t n0, int cols) {
                                 return TileDst{&e, g.C, g.ldc, rg.m0 + m, n0, cols, nullptr};
                               });
      _tile_release();
    }
  };
  run_tasks(nt, task);
}

// Per-core peak of the tile unit: 2 A x 2 B tiles into 4 C tiles, all resident (no memory traffic),
// as the best a GEMM's inner loop could issue. int8: 16x16x64 MACs per tdpbusd; bf16: 16x16x32.
double peak_gops(int kind, double seconds) {
  load_config(8);
  alignas(64) std::uint8_t buf[1024];
  std::memset(buf, 0, sizeof(buf));
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, buf, 64);
  _tile_loadd(5, buf, 64);
  _tile_loadd(6, buf, 64);
  _tile_loadd(7, buf, 64);
  const bool bf16 = kind == kPeakBf16Amx;
  double t0 = omp_get_wtime(), t = t0;
  long long iters = 0;
  const long long chunk = 1 << 12;
  while (t - t0 < seconds) {
    if (bf16) {
      for (long long n = 0; n < chunk; ++n) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    } else {
      for (long long n = 0; n < chunk; ++n) {
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
      }
    }
    iters += chunk;
    t = omp_get_wtime();
  }
  _tile_stored(0, buf, 64);
  volatile int sink = buf[0];
  (void)sink;
  _tile_release();
  const double macs = bf16 ? 16.0 * 16 * 32 : 16.0 * 16 * 64;
  return static_cast<double>(iters) * 4 * macs * 2 / (t - t0) * 1e-9;
}

}  // namespace graphopt::kernels::amx
