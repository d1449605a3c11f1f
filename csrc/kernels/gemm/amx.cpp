// int8 and bf16 GEMMs with AMX (tdpbusd, tdpbf16ps). Built with the AVX-512 VNNI flags plus
// -mamx-tile -mamx-int8 -mamx-bf16; dispatched only when cpu_features() reports AMX
// tile + int8 support *and* the OS granted tile-data permission.
//
// Tiles: tmm0-3 = a 2 x 2 block of 16x16 s32 C tiles (32 rows x 32 output columns), tmm4/tmm5 =
// A (two 16-row blocks x 64 k), tmm6/tmm7 = B (16 k-groups of 4 x 16 columns): one tile load per
// tdpbusd. The s8_k4 packed panel *is* the AMX B-tile layout (64 bytes per k-group), so full
// k-tiles load straight from the packed weights with a 64-byte stride; A tiles load straight from
// the caller's rows when K is a multiple of 64 (else from a zero-padded copy, see ARows). Blocking
// in tile_blocks. The epilogue is the AVX-512 one (epilogue_avx512.h): the same bits as the VNNI path, GELU
// included. Calls with fewer than 16 rows go to the VNNI kernel (a tile would be mostly padding).
//
// NOTE: this path cannot be exercised on a CPU without AMX; the tests skip it there.
#include <immintrin.h>

#include <time.h>

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

// Finishes rows [r0, r1) of a block's tile buffer (np panels) into its destination.
using EdgeFn = void (*)(const std::int32_t* tile, int r0, int r1, int np, const TileDst& d);

template <Act A>
EdgeFn edge_for_out(OutType o) {
  switch (o) {
    case OutType::s32: return &finish_s8_rows<Act::none, OutType::s32>;
    case OutType::f32: return &finish_s8_rows<A, OutType::f32>;
    case OutType::bf16: return &finish_s8_rows<A, OutType::bf16>;
    case OutType::u8: return &finish_s8_rows<A, OutType::u8>;
    case OutType::s8: return &finish_s8_rows<A, OutType::s8>;
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

using FEdge = void (*)(const float* tile, int r0, int r1, int np, const TileDst& d);

template <Act A>
FEdge f_edge_for_out(OutType o) {
  switch (o) {
    case OutType::f32: return &finish_f_rows<A, OutType::f32>;
    case OutType::bf16: return &finish_f_rows<A, OutType::bf16>;
    case OutType::u8: return &finish_f_rows<A, OutType::u8>;
    case OutType::s8: return &finish_f_rows<A, OutType::s8>;
    case OutType::s32: return nullptr;  // rejected by the front (check_gemm)
  }
  return nullptr;
}

// A thread's buffers, kept between calls: slot 0 its padded copy of A, slot 1 its panels' zero-padded
// last k-tiles. A fresh allocation of A's size is a fresh mapping, and its page faults cost 15-30 % of a
// 1024 x 768 x 768 GEMM.
std::uint8_t* thread_buffer(int slot, std::size_t bytes) {
  struct Buf {
    std::uint8_t* p = nullptr;
    std::size_t n = 0;
    ~Buf() { ::operator delete(p, std::align_val_t(64)); }
  };
  thread_local Buf b[2];
  if (b[slot].n < bytes) {
    ::operator delete(b[slot].p, std::align_val_t(64));
    b[slot].p = static_cast<std::uint8_t*>(::operator new(bytes, std::align_val_t(64)));
    b[slot].n = bytes;
  }
  return b[slot].p;
}
std::uint8_t* a_buffer(std::size_t bytes) { return thread_buffer(0, bytes); }

// Where a thread's 32-row blocks of A come from: rows [0, direct) straight from the caller's A (when K
// is a whole number of k-tiles: no copy, and half the L2 footprint), the rest from a zero-padded copy
// (rows to 32, k to the k-tile) in the thread's buffer.
struct ARows {
  const std::uint8_t* a;
  index_t lda;  // bytes
  index_t direct;
  const std::uint8_t* pad;
  index_t padb;  // bytes per padded row
  const std::uint8_t* block(index_t m) const { return m < direct ? a + m * lda : pad + (m - direct) * padb; }
  index_t stride(index_t m) const { return m < direct ? lda : padb; }
};

// rows of A (row stride lda bytes, kb bytes used) for tile loads of rowb bytes a row.
ARows a_rows(const std::uint8_t* A, index_t lda, index_t rows, index_t kb, index_t rowb) {
  const index_t direct = kb == rowb ? rows / 32 * 32 : 0;
  const index_t rest = rows - direct, mpad = (rest + 31) / 32 * 32;
  std::uint8_t* pad = nullptr;
  if (rest) {
    pad = a_buffer(static_cast<std::size_t>(mpad * rowb));
    for (index_t i = 0; i < rest; ++i) {
      std::memcpy(pad + i * rowb, A + (direct + i) * lda, static_cast<std::size_t>(kb));
      std::memset(pad + i * rowb + kb, 0, static_cast<std::size_t>(rowb - kb));
    }
    std::memset(pad + rest * rowb, 0, static_cast<std::size_t>((mpad - rest) * rowb));
  }
  return {A, lda, direct, pad, rowb};
}

// Sum of a row of u8 (exact: K <= 33025, checked by the front).
std::int32_t row_sum(const std::uint8_t* a, index_t K) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i acc = zero;
  index_t k = 0;
  for (; k + 64 <= K; k += 64) acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_loadu_si512(a + k), zero));
  if (k < K) {
    const __mmask64 m = (~0ULL) >> (64 - (K - k));
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, a + k), zero));
  }
  return static_cast<std::int32_t>(_mm512_reduce_add_epi64(acc));
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
// fp32 tiles), A as ARows. Blocking: a chunk of panels whose weights stay in
// L2 (half of it); in it, 32-row blocks whose A stays in L1 while the chunk's panel pairs stream past;
// 2x2 C tiles per block, stored to one of two tile buffers. Row blocks outside, panels inside, so each
// block's epilogue writes whole row segments of C: a column strip of 1024 rows touches a page and a
// cache set per row (strides of 3-12 KB alias in L1/L2), and finishing those strips cost more than
// the tile products. The previous block's epilogue runs a few rows per k-step, before each k-step's
// tile loads: issued after the whole block, it does not overlap the products (with K = 768 only 12
// k-steps, so the epilogue cost about as much as the products).
// dst(m, n0, cols) says where block (m, n0) goes. kStore = false stops after the tile products
// (stage_seconds' accounting only).
constexpr index_t kFewRows = 128;

template <bool kBf16, class Tile, class Edge, class Dst, bool kStore = true>
void tile_blocks(const PackedWeights& W, const Range& rg, index_t rows, const ARows& A, index_t KT, index_t KG,
                 index_t N, Edge edge, Dst dst) {
  const index_t full_kt = KG / 16;  // k-tiles that load straight from the panel
  const index_t pb = W.panel_bytes();
  // A thread with few rows (a batch-1 call, <= 128) takes one panel pair per chunk: panel pairs outside,
  // each pair reused from L1 by every row block (its column strips are short). L2-sized chunks there
  // re-read every chunk from L2 per row block and made DistilBERT batch 1 Linears 15-18 % slower.
  const index_t pchunk = rows <= kFewRows ? 2 : std::max<index_t>(2, cache_info().l2 / 2 / pb / 2 * 2);
  // The last k-tile of each panel of a chunk when K is ragged: the remaining k-groups, zero-padded.
  std::uint8_t* tails = full_kt < KT ? thread_buffer(1, static_cast<std::size_t>(pchunk) * 1024) : nullptr;
  alignas(64) Tile tile[2][32 * kTileLd];
  int cur = 0, pmr = 0, pnp = 0;
  TileDst pd{};
  for (index_t q0 = rg.p0; q0 < rg.p1; q0 += pchunk) {
    const index_t q1 = std::min(rg.p1, q0 + pchunk);
    if (tails) {
      const std::size_t valid = static_cast<std::size_t>(KG - full_kt * 16) * 64;
      for (index_t p = q0; p < q1; ++p) {
        std::uint8_t* t = tails + (p - q0) * 1024;
        std::memcpy(t, W.panel(p) + full_kt * 1024, valid);
        std::memset(t + valid, 0, 1024 - valid);
      }
    }
    for (index_t m = 0; m < rows; m += 32) {
      const bool two = rows - m > 16;
      const std::uint8_t* a0 = A.block(m);
      const index_t as = A.stride(m);
      for (index_t p = q0; p < q1; p += 2) {
        const int np = q1 - p >= 2 ? 2 : 1;
        const index_t p1 = np == 2 ? p + 1 : p;
        const std::uint8_t* b0 = W.panel(p);
        const std::uint8_t* b1 = W.panel(p1);
        const std::uint8_t* t0 = tails ? tails + (p - q0) * 1024 : nullptr;
        const std::uint8_t* t1 = tails ? tails + (p1 - q0) * 1024 : nullptr;
        const Tile* prev = tile[cur ^ 1];
        const int step = static_cast<int>((pmr + KT - 1) / KT);  // rows of the previous block per k-step
        _tile_zero(0);
        _tile_zero(1);
        if (two) {
          _tile_zero(2);
          _tile_zero(3);
        }
        for (index_t kt = 0; kt < KT; ++kt) {
          if constexpr (kStore) {
            const int r0 = static_cast<int>(kt) * step;
            if (r0 < pmr) edge(prev, r0, std::min(pmr, r0 + step), pnp, pd);
          }
          _tile_loadd(4, a0 + kt * 64, as);
          if (kt < full_kt) {
            _tile_loadd(6, b0 + kt * 1024, 64);
            _tile_loadd(7, b1 + kt * 1024, 64);
          } else {
            _tile_loadd(6, t0, 64);
            _tile_loadd(7, t1, 64);
          }
          products_top<kBf16>();
          if (two) {
            _tile_loadd(5, a0 + 16 * as + kt * 64, as);
            products_bottom<kBf16>();
          }
        }
        if constexpr (!kStore) continue;
        Tile* t = tile[cur];
        _tile_stored(0, t, kTileLd * 4);
        _tile_stored(1, t + 16, kTileLd * 4);
        if (two) {
          _tile_stored(2, t + 16 * kTileLd, kTileLd * 4);
          _tile_stored(3, t + 16 * kTileLd + 16, kTileLd * 4);
        }
        const index_t n0 = p * 16;
        pmr = static_cast<int>(rows - m < 32 ? rows - m : 32);
        pnp = np;
        pd = dst(m, n0, static_cast<int>(N - n0 < np * 16 ? N - n0 : np * 16));
        cur ^= 1;
      }
    }
  }
  if (pmr) edge(tile[cur ^ 1], 0, pmr, pnp, pd);
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
      const std::uint8_t* Am = A + rg.m0 * lda;
      const ARows ar = a_rows(Am, lda, rows, K, Kp64);
      std::vector<std::int32_t> rs(rowsums ? static_cast<std::size_t>(rows) : 0);
      for (index_t i = 0; i < static_cast<index_t>(rs.size()); ++i) rs[i] = row_sum(Am + i * lda, K);
      tile_blocks<false, std::int32_t>(W, rg, rows, ar, KT, KG, N, edge, [&](index_t m, index_t n0, int cols) {
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
  FEdge edge = nullptr;
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
      const ARows ar = a_rows(reinterpret_cast<const std::uint8_t*>(A + rg.m0 * lda), lda * 2, rows, K * 2, Kp32 * 2);
      tile_blocks<true, float>(W, rg, rows, ar, KT, KG, N, edge,
                               [&](index_t m, index_t n0, int cols) {
                                 return TileDst{&e, g.C, g.ldc, rg.m0 + m, n0, cols, nullptr};
                               });
      _tile_release();
    }
  };
  run_tasks(nt, task);
}

double stage_seconds(const PackedWeights& W, index_t M, bool stores, int reps) {
  const bool bf16 = W.layout() == PackLayout::bf16_k2;
  const index_t K = W.K(), N = W.N(), P = W.panels();
  const index_t rowb = bf16 ? (K + 31) / 32 * 64 : (K + 63) / 64 * 64;  // 64 bytes per k-tile row either way
  const index_t KT = rowb / 64, KG = bf16 ? W.Kp() / 2 : W.Kp() / 4;
  const int nt = gemm_threads(M, N, K);
  std::vector<double> secs(static_cast<std::size_t>(nt), 0.0);
  auto task = [&](int tid) {
    const Range rg = thread_range(M, P, 32, nt, tid);
    const index_t rows = rg.m1 - rg.m0;
    if (rows <= 0 || rg.p1 <= rg.p0) return;
    load_config(8);
    const index_t mpad = (rows + 31) / 32 * 32;
    std::uint8_t* apad = a_buffer(static_cast<std::size_t>(mpad * rowb));
    // Random operands: the tile unit runs zeros faster than real data.
    std::uint32_t x = 12345u + static_cast<std::uint32_t>(tid);
    for (index_t i = 0; i + 1 < mpad * rowb; i += 2) {
      x = x * 1664525u + 1013904223u;
      const std::uint16_t v = bf16 ? static_cast<std::uint16_t>(0x3f80u | (x >> 16 & 0x807fu)) : static_cast<std::uint16_t>(x >> 16);
      std::memcpy(apad + i, &v, 2);
    }
    const ARows ar{apad, rowb, 0, apad, rowb};
    auto none = [](const auto*, int, int, int, const TileDst&) {};
    auto dst = [](index_t, index_t, int) { return TileDst{}; };
    // Each thread's CPU time: another process sharing the core does not inflate it.
    const auto cpu_now = [] {
      timespec ts;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    };
    const double t0 = cpu_now();
    for (int r = 0; r < reps; ++r) {
      if (bf16 && stores) tile_blocks<true, float>(W, rg, rows, ar, KT, KG, N, none, dst);
      else if (bf16) tile_blocks<true, float, decltype(none), decltype(dst), false>(W, rg, rows, ar, KT, KG, N, none, dst);
      else if (stores) tile_blocks<false, std::int32_t>(W, rg, rows, ar, KT, KG, N, none, dst);
      else tile_blocks<false, std::int32_t, decltype(none), decltype(dst), false>(W, rg, rows, ar, KT, KG, N, none, dst);
    }
    secs[tid] = (cpu_now() - t0) / reps;
    _tile_release();
  };
  run_tasks(nt, task);
  return *std::max_element(secs.begin(), secs.end());
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
