// Blocking, threading and the fused epilogue, shared by every ISA's GEMM.
// Included only by ISA translation units; everything has internal linkage so
// each TU compiles its own copy with its own flags (see common/math.h).
#pragma once
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/math.h"
#include "../common/thread_pool.h"
#include "gemm_internal.h"

namespace graphopt::kernels {
namespace {

constexpr int kTileLd = 128;  // accumulator tile row stride in elements (>= 8 panels x 16)

template <Act A>
inline float activate(float y) {
  if constexpr (A == Act::relu) return y < 0.f ? 0.f : y;  // NaN stays NaN (ONNX Relu)
  else if constexpr (A == Act::gelu_erf) return gelu_erf_f(y);
  else if constexpr (A == Act::gelu_tanh) return gelu_tanh_f(y);
  else return y;
}

template <OutType O>
inline void store_f(void* C, index_t idx, float y, float out_scale, float qlo, float qhi, std::int32_t zp) {
  if constexpr (O == OutType::f32) {
    static_cast<float*>(C)[idx] = y;
  } else if constexpr (O == OutType::bf16) {
    static_cast<std::uint16_t*>(C)[idx] = f32_to_bf16(y);
  } else {
    float q = clampf(y / out_scale, -4194304.f, 4194304.f);
    q = clampf(round_even(q) + static_cast<float>(zp), qlo, qhi);
    if constexpr (O == OutType::u8) static_cast<std::uint8_t*>(C)[idx] = static_cast<std::uint8_t>(static_cast<std::int32_t>(q));
    else static_cast<std::int8_t*>(C)[idx] = static_cast<std::int8_t>(static_cast<std::int32_t>(q));
  }
}

inline void out_range(OutType o, float* lo, float* hi) {
  if (o == OutType::u8) { *lo = 0.f; *hi = 255.f; }
  else { *lo = -128.f; *hi = 127.f; }
}

// Per-column arrays the tile-buffer epilogues below read (the AVX-512 one
// derives them per panel instead): e with scale, coff and bias all set.
struct ColumnBuf {
  std::vector<float> scale, bias;
  std::vector<std::int32_t> coff;
};
inline EpiResolved with_columns(const EpiResolved& e, index_t N, ColumnBuf* buf) {
  EpiResolved r = e;
  if (!e.bias) {
    buf->bias.assign(static_cast<std::size_t>(N), 0.f);
    r.bias = buf->bias.data();
  }
  if (e.wterm) {  // int8
    buf->scale.resize(static_cast<std::size_t>(N));
    buf->coff.resize(static_cast<std::size_t>(N));
    for (index_t n = 0; n < N; ++n) {
      buf->scale[n] = e.a_scale * e.wscale[n];
      buf->coff[n] = static_cast<std::int32_t>(static_cast<std::int64_t>(e.a_zp) * e.wterm[n]);
    }
    r.scale = buf->scale.data();
    r.coff = buf->coff.data();
  }
  return r;
}

// acc: rows x cols tile (row stride kTileLd); writes C rows m0.., cols n0..
template <class AccT>
using EpiFn = void (*)(const AccT* acc, int rows, int cols, index_t m0, index_t n0,
                       const std::int32_t* rowsum, const EpiResolved& e, void* C, index_t ldc);

template <Act A, OutType O>
void epi_s8(const std::int32_t* __restrict acc, int rows, int cols, index_t m0, index_t n0,
            const std::int32_t* rowsum, const EpiResolved& e, void* C, index_t ldc) {
  float qlo = 0.f, qhi = 0.f;
  out_range(O, &qlo, &qhi);
  const float osc = e.out_scale;
  const std::int32_t ozp = e.out_zp;
  const std::int32_t* coff = e.coff + n0;
  const std::int32_t* __restrict wzp = e.wzp + n0;
  const float* sc = e.scale + n0;
  const float* __restrict bias = e.bias + n0;
  std::int32_t row_coff[kTileLd];
  float row_sc[kTileLd];
  for (int r = 0; r < rows; ++r) {
    const std::int32_t* __restrict a = acc + r * kTileLd;
    const std::int32_t rs = rowsum ? rowsum[r] : 0;
    const index_t base = (m0 + r) * ldc + n0;
    if (e.row_scale) {  // this row's grid: the terms with_columns builds from a_scale / a_zp
      const std::int64_t z = e.row_zp[m0 + r];
      for (int j = 0; j < cols; ++j) {
        row_coff[j] = static_cast<std::int32_t>(z * e.wterm[n0 + j]);
        row_sc[j] = e.row_scale[m0 + r] * e.wscale[n0 + j];
      }
      coff = row_coff;
      sc = row_sc;
    }
    if constexpr (O == OutType::s32) {
      std::int32_t* __restrict c = static_cast<std::int32_t*>(C) + base;
      for (int j = 0; j < cols; ++j) c[j] = a[j] + coff[j] - wzp[j] * rs;
    } else {
      for (int j = 0; j < cols; ++j) {
        const std::int32_t v = a[j] + coff[j] - wzp[j] * rs;
        float y = static_cast<float>(v) * sc[j];
        y = y + bias[j];
        y = activate<A>(y);
        if (e.out_mul) y = y * e.out_mul[n0 + j];
        store_f<O>(C, base + j, y, osc, qlo, qhi, ozp);
      }
    }
  }
}

template <Act A, OutType O>
void epi_f(const float* __restrict acc, int rows, int cols, index_t m0, index_t n0,
           const std::int32_t*, const EpiResolved& e, void* C, index_t ldc) {
  float qlo = 0.f, qhi = 0.f;
  out_range(O, &qlo, &qhi);
  const float* __restrict bias = e.bias + n0;
  for (int r = 0; r < rows; ++r) {
    const float* __restrict a = acc + r * kTileLd;
    const index_t base = (m0 + r) * ldc + n0;
    for (int j = 0; j < cols; ++j) {
      float y = activate<A>(a[j] + bias[j]);
      if (e.out_mul) y = y * e.out_mul[n0 + j];
      store_f<O>(C, base + j, y, e.out_scale, qlo, qhi, e.out_zp);
    }
  }
}

template <Act A>
EpiFn<std::int32_t> pick_s8_out(OutType o) {
  switch (o) {
    case OutType::s32: return &epi_s8<A, OutType::s32>;
    case OutType::f32: return &epi_s8<A, OutType::f32>;
    case OutType::bf16: return &epi_s8<A, OutType::bf16>;
    case OutType::u8: return &epi_s8<A, OutType::u8>;
    case OutType::s8: return &epi_s8<A, OutType::s8>;
  }
  return nullptr;
}
template <Act A>
EpiFn<float> pick_f_out(OutType o) {
  switch (o) {
    case OutType::f32: return &epi_f<A, OutType::f32>;
    case OutType::bf16: return &epi_f<A, OutType::bf16>;
    case OutType::u8: return &epi_f<A, OutType::u8>;
    case OutType::s8: return &epi_f<A, OutType::s8>;
    case OutType::s32: return nullptr;
  }
  return nullptr;
}

template <class AccT>
EpiFn<AccT> pick_epilogue(const EpiResolved& e) {
  if constexpr (sizeof(AccT) == 4 && static_cast<AccT>(0.5) == 0) {  // int32
    switch (e.act) {
      case Act::none: return pick_s8_out<Act::none>(e.out);
      case Act::relu: return pick_s8_out<Act::relu>(e.out);
      case Act::gelu_erf: return pick_s8_out<Act::gelu_erf>(e.out);
      case Act::gelu_tanh: return pick_s8_out<Act::gelu_tanh>(e.out);
    }
  } else {
    switch (e.act) {
      case Act::none: return pick_f_out<Act::none>(e.out);
      case Act::relu: return pick_f_out<Act::relu>(e.out);
      case Act::gelu_erf: return pick_f_out<Act::gelu_erf>(e.out);
      case Act::gelu_tanh: return pick_f_out<Act::gelu_tanh>(e.out);
    }
  }
  return nullptr;
}

// Where one micro-tile's results go: rows [m0, m0 + mr) and columns
// [n0, n0 + cols) of C, finished with epilogue e (rowsum: int8 with weight zero
// points, else null).
struct TileDst {
  const EpiResolved* e;
  void* C;
  index_t ldc, m0, n0;
  int cols;
  const std::int32_t* rowsum;
  // Lines of this thread's next panel group for the kernel to pull into L2 while the tile
  // computes (next_group_slice); kernels without kPrefetchNext are never given any.
  const std::uint8_t* pf = nullptr;
  index_t pf_lines = 0;
};

// Micro-kernel traits with a `Plan` (the AVX-512 ones, see epilogue_avx512.h)
// finish tiles in registers: Plan has full(A, lda, P, pb, K, TileDst) for MR x NP
// tiles, rows[r - 1] for r x NP_SMALL tiles (r <= 2) and edge(tile, mr, np, TileDst)
// for the rest.
template <class MK, class = void>
struct FusedPlanOf {
  using type = std::nullptr_t;
  static constexpr bool value = false;
};
template <class MK>
struct FusedPlanOf<MK, std::void_t<typename MK::Plan>> {
  using type = typename MK::Plan;
  static constexpr bool value = true;
};

// Micro-kernel traits with `static constexpr bool kPrefetchNext = true` issue TileDst::pf.
template <class MK, class = void>
struct PrefetchesNext : std::false_type {};
template <class MK>
struct PrefetchesNext<MK, std::void_t<decltype(MK::kPrefetchNext)>> : std::bool_constant<MK::kPrefetchNext> {};

struct Range { index_t m0, m1, p0, p1; };

// Split M (in units of mr) x panels over nth threads on a tm x tn grid that
// minimises the largest per-thread block (ties: split N, which keeps each
// thread's weight panels private to its core's L2).
inline Range thread_range(index_t M, index_t P, int mr, int nth, int tid) {
  const index_t mt = (M + mr - 1) / mr;
  int best_tn = 1;
  index_t best_cost = -1;
  for (int tn = nth; tn >= 1; --tn) {
    if (nth % tn) continue;
    const int tm = nth / tn;
    const index_t cost = ((mt + tm - 1) / tm) * ((P + tn - 1) / tn);
    if (best_cost < 0 || cost < best_cost) { best_cost = cost; best_tn = tn; }
  }
  const int tn = best_tn, tm = nth / tn;
  const int ti = tid / tn, tj = tid % tn;
  Range r;
  const index_t mq = mt / tm, mrem = mt % tm;
  const index_t ms = ti * mq + (ti < mrem ? ti : mrem);
  const index_t me = ms + mq + (ti < mrem ? 1 : 0);
  r.m0 = ms * mr < M ? ms * mr : M;
  r.m1 = me * mr < M ? me * mr : M;
  const index_t pq = P / tn, prem = P % tn;
  r.p0 = tj * pq + (tj < prem ? tj : prem);
  r.p1 = r.p0 + pq + (tj < prem ? 1 : 0);
  return r;
}

// How a GEMM is cut into tasks of MB rows x GP panels for nt threads (cell: which task is which).
// a_bytes: bytes per A element; kc: the K extent one pass over A covers (K, or the k-block of a
// K-blocked kernel), which sizes the row block. prefetch: the kernel can pull the next panel group
// into L2 while it computes (TileDst::pf).
struct TaskGrid {
  index_t MB, GP, n_mb, n_pg, ntasks;
  int nt;
  bool prefetch;   // the tasks prefetch their next group (next_group_slice)
  index_t halves;  // > 1: tasks ordered (row part, panel group, row block), see cell

  // Task t's panel group and row block. Usually group-major (t / n_mb, t % n_mb): parallel_tasks
  // hands each thread a contiguous block, so each thread takes its own panel groups over all rows.
  // With `halves` parts, thread i's block is instead all groups over its own 1/halves of the rows.
  void cell(std::int64_t t, index_t* pg, index_t* mb) const {
    if (halves <= 1) {
      *pg = t / n_mb;
      *mb = t % n_mb;
      return;
    }
    const index_t n_mbh = n_mb / halves, per = n_pg * n_mbh;
    const index_t h = t / per, r = t % per;
    *pg = r / n_mbh;
    *mb = h * n_mbh + r % n_mbh;
  }
};
inline TaskGrid task_grid(index_t M, index_t kc, index_t P, index_t pb, index_t a_bytes, int MR, int NP, int nt,
                          bool prefetch = false) {
  // Weight chunk per pass over M: about half the per-core L2, in panels (at least NP: K = 3072
  // fp32 panels are 192 KB, and 8 of them with the A rows overflowed L2: 74-75 % of the FMA peak
  // against 78 % with 4, M = 1024, 1 and 2 threads). A quarter where the kernel prefetches the next
  // chunk (next_group_slice), so the two chunks share L2 with the A rows (an eighth of L2 for those
  // when a chunk is over a quarter). Only for short M (up to 48 row tiles), where a group's first row
  // tile is a large share of its work. A/B at one thread, DistilBERT's shapes with weights from L3
  // (benchmarks/gemm_shapes.py, 3 alternating process pairs), M = 128: K = 768 shapes 67-70 % ->
  // 73-75 % (weights in L2: 75-77 -> 76-79 %), K = 3072 63-67 % -> 68-70 %. At M = 1024 chunks of a
  // quarter L2 lost 1-3 % (A re-read more often), so none there.
  const index_t l2 = cache_info().l2, pbs = pb > 0 ? pb : 1;
  prefetch = prefetch && M <= 48 * MR && NP * pbs <= l2 / 2;
  index_t nc = (prefetch ? l2 / 4 : l2 / 2) / pbs;
  nc = nc < 8 ? (nc < NP ? NP : nc - nc % NP) : nc - nc % 8;
  // Work is split into tasks of (GP panels) x (MB rows), claimed dynamically from
  // a caller-participating pool (common/thread_pool.h), so a thread that loses its
  // core to another process does not stall the GEMM.
  // One thread: L2-sized panel groups (plain blocking).
  // Row block: A rows of one task stay within a quarter of L2 next to the weight chunk.
  index_t mb_cache = (l2 / (prefetch && nc * pbs > l2 / 4 ? 8 : 4)) / (kc * a_bytes + 1);
  mb_cache = mb_cache < MR ? MR : mb_cache - mb_cache % MR;
  index_t MB = M < mb_cache ? M : mb_cache, GP = nc;
  if (nt > 1) {
    const index_t mb0 = 8 * MR < mb_cache ? 8 * MR : mb_cache;
    MB = M <= mb0 ? M : mb0;
    const index_t n_mb = (M + MB - 1) / MB;
    // Panel group: the widest (multiple of NP, <= nc) whose tasks spread evenly over the
    // threads: estimated makespan ceil(tasks / nt) * GP against the ideal P * n_mb / nt.
    // At least 4 tasks per thread where the shape allows, so a thread that loses its
    // core for a while only delays a small piece of the work.
    GP = 1;
    double best = -1.0;
    const index_t top = P < nc ? P : nc;
    // A single row block (GEMV-like, memory-bound) gets 8 per thread: finer
    // pieces to hand over when the other thread starts late.
    const index_t per_thread = n_mb == 1 ? 8 : 4;
    const index_t min_tasks = per_thread * nt < P * n_mb ? per_thread * nt : P * n_mb;
    for (index_t gp = top; gp >= 1; gp = gp > NP ? gp - (gp % NP ? gp % NP : NP) : gp - 1) {
      const index_t tasks = n_mb * ((P + gp - 1) / gp);
      if (tasks < min_tasks) continue;
      const double eff = static_cast<double>(P * n_mb) / static_cast<double>(((tasks + nt - 1) / nt) * nt * gp);
      if (eff > best + 0.02) { best = eff; GP = gp; }
    }
  }
  const index_t n_mb = (M + MB - 1) / MB, n_pg = (P + GP - 1) / GP;
  // Long M on several threads: each thread takes all panel groups over its own rows, so the rows it
  // writes are the ones the next step (a LayerNorm, the next GEMM's A) reads on the same core, and no
  // panel group is split between threads (QKV's 9 groups at 2 threads were). DistilBERT batch 8 fp32,
  // 2 threads (benchmarks/ab_builds.py, 3 runs): 0.983x, 0.996x, 0.983x; the QKV GEMMs 75.0 -> 69.0 ms
  // (thread_scaling.py). Each output's sum is unchanged: same bits. Not with the prefetch, whose
  // next group is the next task's in group-major order.
  const index_t halves = nt > 1 && !prefetch && n_mb % nt == 0 && n_mb >= 4 * nt ? nt : 1;
  return TaskGrid{MB, GP, n_mb, n_pg, n_mb * n_pg, nt, prefetch, halves};
}

template <class MK>
struct GemmTaskCtx {
  const typename MK::AType* A;
  index_t lda;
  const PackedWeights* W;
  const EpiResolved* e;
  void* C;
  index_t ldc;
  EpiFn<typename MK::AccT> epi;
  typename FusedPlanOf<MK>::type plan;
  index_t M, K, N, P;
  TaskGrid tg;
  bool rowsums;
};

// The lines of the next panel group's weights that task t pulls into L2, spread over its tiles.
// Why: the first row tile of a panel group otherwise waits on L3 for every weight line it reads;
// with a batch-1 M of 128 rows, that is about 10 % of an fp32 GEMM whose weights are not in L2
// (each of a model's weights is read once per inference). Tasks are numbered so that a thread runs
// a group's row blocks in a row, then the next group's (parallel_tasks' contiguous blocks), so each
// of a group's n_mb tasks fetches 1 / n_mb of the next group.
struct PrefetchSlice {
  const std::uint8_t* base = nullptr;
  index_t lines = 0;
};
inline PrefetchSlice next_group_slice(const PackedWeights& W, const TaskGrid& tg, std::int64_t t) {
  if (!tg.prefetch) return {};
  index_t pg, mb;
  tg.cell(t, &pg, &mb);  // group-major: task_grid never orders a prefetching grid by row parts
  const index_t P = W.panels(), q0 = (pg + 1) * tg.GP;
  if (q0 >= P) return {};
  const index_t q1 = q0 + tg.GP < P ? q0 + tg.GP : P;
  const index_t total = (q1 - q0) * W.panel_bytes() / 64;
  const index_t l0 = total * mb / tg.n_mb, l1 = total * (mb + 1) / tg.n_mb;
  return {W.panel(q0) + l0 * 64, l1 - l0};
}

// One task: rows [m0, m1) x panels [p0, p1), micro-tile by micro-tile, each
// accumulator tile finished by the fused epilogue while it is hot.
template <class MK>
void gemm_task(void* vctx, std::int64_t t) {
  using AType = typename MK::AType;
  using AccT = typename MK::AccT;
  const GemmTaskCtx<MK>& c = *static_cast<const GemmTaskCtx<MK>*>(vctx);
  alignas(64) AccT tile[MK::MR * kTileLd];
  std::int32_t rs[MK::MR];
  index_t pg, mb;
  c.tg.cell(t, &pg, &mb);
  const index_t p0 = pg * c.tg.GP, p1 = p0 + c.tg.GP < c.P ? p0 + c.tg.GP : c.P;
  const index_t m0 = mb * c.tg.MB, m1 = m0 + c.tg.MB < c.M ? m0 + c.tg.MB : c.M;
  const index_t pb = c.W->panel_bytes();
  const PrefetchSlice pf = next_group_slice(*c.W, c.tg, t);
  const index_t calls = ((m1 - m0 + MK::MR - 1) / MK::MR) * ((p1 - p0 + MK::NP - 1) / MK::NP);
  const index_t pf_per_call = (pf.lines + calls - 1) / calls;
  index_t pf_done = 0;
  for (index_t m = m0; m < m1; m += MK::MR) {
    const int mr = static_cast<int>(m1 - m < MK::MR ? m1 - m : MK::MR);
    const AType* Am = c.A + m * c.lda;
    if (c.rowsums) {
      for (int i = 0; i < mr; ++i) {
        std::int32_t s = 0;
        const AType* a = Am + i * c.lda;
        for (index_t k = 0; k < c.K; ++k) s += static_cast<std::int32_t>(a[k]);
        rs[i] = s;
      }
    }
    const int npmax = mr <= 2 ? MK::NP_SMALL : MK::NP;
    for (index_t p = p0; p < p1; p += npmax) {
      const int np = static_cast<int>(p1 - p < npmax ? p1 - p : npmax);
      const index_t n0 = p * 16;
      const int cols = static_cast<int>(c.N - n0 < np * 16 ? c.N - n0 : np * 16);
      if constexpr (FusedPlanOf<MK>::value) {
        const index_t pf_n = pf.lines - pf_done < pf_per_call ? pf.lines - pf_done : pf_per_call;
        const TileDst d{c.e, c.C, c.ldc, m, n0, cols, c.rowsums ? rs : nullptr, pf.base + pf_done * 64, pf_n};
        pf_done += pf_n;
        if (mr == MK::MR && np == MK::NP) {
          c.plan.full(Am, c.lda, c.W->panel(p), pb, c.K, d);
        } else if (mr <= 2 && np == MK::NP_SMALL) {
          c.plan.rows[mr - 1](Am, c.lda, c.W->panel(p), pb, c.K, d);
        } else {
          MK::micro(mr, np, Am, c.lda, c.W->panel(p), pb, c.K, tile);
          c.plan.edge(tile, mr, np, d);
        }
      } else {
        MK::micro(mr, np, Am, c.lda, c.W->panel(p), pb, c.K, tile);
        c.epi(tile, mr, cols, m, n0, c.rowsums ? rs : nullptr, *c.e, c.C, c.ldc);
      }
    }
  }
}

// MK (micro-kernel traits) provides:
//   using AType, AccT;  static constexpr int MR, NP, NP_SMALL (for mr <= 2);
//   static void micro(int mr, int np, const AType* A, index_t lda, const std::uint8_t* panel,
//                     index_t panel_bytes, index_t K, AccT* tile);   // tile row stride kTileLd
template <class MK>
void run_gemm(const GemmArgs& g) {
  using AType = typename MK::AType;
  using AccT = typename MK::AccT;
  const PackedWeights& W = *g.W;
  const index_t M = g.M, K = W.K(), N = W.N(), P = W.panels();
  if (M <= 0 || N <= 0) return;
  const AType* A = static_cast<const AType*>(g.A);
  const index_t lda = g.lda;
  EpiFn<AccT> epi = nullptr;
  typename FusedPlanOf<MK>::type plan{};
  ColumnBuf cols;
  EpiResolved e = *g.e;
  if constexpr (FusedPlanOf<MK>::value) {
    plan = MK::plan(e);
  } else {
    e = with_columns(e, N, &cols);
    epi = pick_epilogue<AccT>(e);
  }
  const bool rowsums = e.need_rowsum;
  const TaskGrid tg = task_grid(M, K, P, W.panel_bytes(), static_cast<index_t>(sizeof(AType)), MK::MR, MK::NP,
                                gemm_threads(M, N, K), PrefetchesNext<MK>::value);
  GemmTaskCtx<MK> ctx{A, lda, &W, &e, g.C, g.ldc, epi, plan, M, K, N, P, tg, rowsums};
  parallel_tasks(tg.ntasks, tg.nt, &gemm_task<MK>, &ctx);
}

// Function-pointer table of micro<MR, NP> for 1 <= mr <= MRMAX, 1 <= np <= NPMAX.
template <class Fn, template <int, int> class Micro, int MRMAX, int NPMAX>
struct MicroTable {
  Fn t[MRMAX][NPMAX];
  MicroTable() { fill<MRMAX, NPMAX>(); }
  template <int MR, int NP>
  void fill() {
    t[MR - 1][NP - 1] = &Micro<MR, NP>::run;
    if constexpr (NP > 1) fill<MR, NP - 1>();
    else if constexpr (MR > 1) fill<MR - 1, NPMAX>();
  }
  Fn get(int mr, int np) const { return t[mr - 1][np - 1]; }
};

}  // namespace
}  // namespace graphopt::kernels
