// GEMM front: packing, argument checks, epilogue resolution and ISA dispatch.
// ISA-neutral translation unit (no -m flags).
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "../common/math.h"
#include "../common/thread_pool.h"
#include "gemm_internal.h"
#include "graphopt/dispatch.h"

namespace graphopt::kernels {

// ---------------------------------------------------------------- buffers, caches

namespace {
// Buffers of at least one huge page start on a huge-page boundary, and the whole huge pages they
// cover are advised to the kernel as transparent huge pages (Linux with THP "madvise" or "always"):
// fewer TLB misses on the weight streams. fp32 GEMMs with weights from L3 ran 0-2 % faster than
// with THP "never" in the same build (the 2-4 % spread between processes stayed). The tail short of
// a whole huge page keeps 4 KB pages, so resident memory does not grow.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
std::size_t buffer_align(std::size_t bytes) { return bytes >= kHugePage ? kHugePage : 64; }

std::uint8_t* allocate_aligned(std::size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, buffer_align(bytes), bytes ? bytes : 64) != 0) throw std::bad_alloc();
  return static_cast<std::uint8_t*>(p);
}
}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t bytes, bool zero) : ptr_(allocate_aligned(bytes)), size_(bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes >= kHugePage) madvise(ptr_.get(), bytes / kHugePage * kHugePage, MADV_HUGEPAGE);  // advisory
#endif
  if (zero) std::memset(ptr_.get(), 0, bytes);
}
void AlignedBuffer::Free::operator()(std::uint8_t* p) const { std::free(p); }

const CacheInfo& cache_info() {
  static const CacheInfo c = [] {
    auto get = [](int name, long dflt) {
      long v = sysconf(name);
      return static_cast<index_t>(v > 0 ? v : dflt);
    };
    CacheInfo ci;
    ci.l1d = get(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
    ci.l2 = get(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
    ci.l3 = get(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
    return ci;
  }();
  return c;
}

int gemm_threads(index_t M, index_t N, index_t K) {
  // ~128k MACs per thread at least: below that the fork/join costs more than it saves.
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int maxt = omp_get_max_threads();
  const double want = work / (128.0 * 1024.0);
  const int t = want < 1.0 ? 1 : (want > maxt ? maxt : static_cast<int>(want));
  return t < 1 ? 1 : t;
}

// ---------------------------------------------------------------- layouts and packing

const char* layout_name(PackLayout l) {
  switch (l) {
    case PackLayout::s8_k4: return "s8_k4";
    case PackLayout::s16_k2: return "s16_k2";
    case PackLayout::bf16_k2: return "bf16_k2";
    case PackLayout::f32_k1: return "f32_k1";
  }
  return "?";
}
int layout_group(PackLayout l) {
  switch (l) {
    case PackLayout::s8_k4: return 4;
    case PackLayout::s16_k2: return 2;
    case PackLayout::bf16_k2: return 2;
    case PackLayout::f32_k1: return 1;
  }
  return 1;
}
int layout_elem_bytes(PackLayout l) {
  switch (l) {
    case PackLayout::s8_k4: return 1;
    case PackLayout::s16_k2: return 2;
    case PackLayout::bf16_k2: return 2;
    case PackLayout::f32_k1: return 4;
  }
  return 1;
}

void PackedWeights::alloc(PackLayout l, index_t K, index_t N, bool zero) {
  layout_ = l;
  K_ = K;
  N_ = N;
  const index_t g = layout_group(l);
  Kp_ = (K + g - 1) / g * g;
  buf_ = AlignedBuffer(static_cast<std::size_t>(panels() * panel_bytes()), zero);
}

namespace {

Status check_dims(index_t K, index_t N, const void* B) {
  if (K <= 0 || N <= 0) return Status::invalid("weights must be non-empty, got K=" + std::to_string(K) + ", N=" + std::to_string(N));
  if (!B) return Status::invalid("weights pointer is null");
  return Status::ok();
}

template <class Get, class Put>
void pack_generic(const PackedWeights& W, std::uint8_t* base, Get get, Put put) {
  const index_t K = W.K(), N = W.N(), pb = W.panel_bytes();
  for (index_t n = 0; n < N; ++n) {
    std::uint8_t* panel = base + (n / 16) * pb;
    for (index_t k = 0; k < K; ++k) put(panel + panel_offset(W.layout(), k, n % 16), get(k, n));
  }
}

PackLayout s8_layout_for(Isa isa) {
  if (static_cast<int>(isa) >= static_cast<int>(Isa::avx512_vnni)) return PackLayout::s8_k4;
  if (static_cast<int>(isa) >= static_cast<int>(Isa::avx2)) return PackLayout::s16_k2;
  return PackLayout::s8_k4;
}

}  // namespace

Status PackedWeights::pack_s8(const std::int8_t* B, index_t K, index_t N, bool transposed, const float* scale,
                              index_t n_scale, const std::int32_t* zp, index_t n_zp, PackedWeights* out) {
  return pack_s8(B, K, N, transposed, scale, n_scale, zp, n_zp, s8_layout_for(isa_selected()), out);
}

Status PackedWeights::pack_s8(const std::int8_t* B, index_t K, index_t N, bool transposed, const float* scale,
                              index_t n_scale, const std::int32_t* zp, index_t n_zp, PackLayout layout,
                              PackedWeights* out) {
  if (Status s = check_dims(K, N, B); !s) return s;
  if (layout != PackLayout::s8_k4 && layout != PackLayout::s16_k2)
    return Status::invalid(std::string("layout ") + layout_name(layout) + " is not an int8 layout");
  if (n_scale != 0 && n_scale != 1 && n_scale != N)
    return Status::invalid("weight scale must have 1 or N=" + std::to_string(N) + " entries, got " + std::to_string(n_scale));
  if (n_zp != 0 && n_zp != 1 && n_zp != N)
    return Status::invalid("weight zero point must have 1 or N=" + std::to_string(N) + " entries, got " + std::to_string(n_zp));
  if ((n_scale && !scale) || (n_zp && !zp)) return Status::invalid("null scale/zero-point pointer");
  PackedWeights W;
  W.alloc(layout, K, N);
  auto get = [&](index_t k, index_t n) -> std::int32_t { return transposed ? B[n * K + k] : B[k * N + n]; };
  if (layout == PackLayout::s8_k4)
    pack_generic(W, W.buf_.data(), get, [](std::uint8_t* p, std::int32_t v) { *reinterpret_cast<std::int8_t*>(p) = static_cast<std::int8_t>(v); });
  else
    pack_generic(W, W.buf_.data(), get, [](std::uint8_t* p, std::int32_t v) { const std::int16_t s = static_cast<std::int16_t>(v); std::memcpy(p, &s, 2); });
  W.col_sum_.assign(static_cast<std::size_t>(N), 0);
  for (index_t n = 0; n < N; ++n) {
    std::int32_t s = 0;
    for (index_t k = 0; k < K; ++k) s += get(k, n);
    W.col_sum_[n] = s;
  }
  if (n_scale == 0) W.scale_.assign(1, 1.f);
  else W.scale_.assign(scale, scale + n_scale);
  W.zp_.assign(static_cast<std::size_t>(N), 0);
  for (index_t n = 0; n < N; ++n) W.zp_[n] = n_zp == 0 ? 0 : (n_zp == 1 ? zp[0] : zp[n]);
  W.has_zp_ = std::any_of(W.zp_.begin(), W.zp_.end(), [](std::int32_t v) { return v != 0; });
  W.col_scale_.resize(static_cast<std::size_t>(N));
  W.col_term_.resize(static_cast<std::size_t>(N));
  for (index_t n = 0; n < N; ++n) {
    W.col_scale_[n] = W.scale_[W.scale_.size() == 1 ? 0 : n];
    W.col_term_[n] = static_cast<std::int32_t>(K * W.zp_[n] - W.col_sum_[n]);  // exact for any K gemm_s8 accepts
  }
  for (std::int32_t v : W.zp_)
    if (v < -128 || v > 127) return Status::invalid("weight zero point " + std::to_string(v) + " is outside the s8 range");
  *out = std::move(W);
  return Status::ok();
}

Status PackedWeights::pack_s8_sparse(const std::int8_t* B, index_t K, index_t N, bool transposed, const float* scale,
                                     index_t n_scale, const std::int32_t* zp, index_t n_zp, PackedWeights* out) {
  // The per-column terms (col_sum, scales, zero points) exactly as for the dense kernel.
  PackedWeights W;
  if (Status s = pack_s8(B, K, N, transposed, scale, n_scale, zp, n_zp, PackLayout::s8_k4, &W); !s) return s;
  W.buf_ = AlignedBuffer();
  auto S = std::make_shared<SparseBlocks>();
  S->KG = (K + 3) / 4;
  S->col_ptr.assign(static_cast<std::size_t>(N) + 1, 0);
  auto get = [&](index_t k, index_t n) -> std::uint8_t {
    return k < K ? static_cast<std::uint8_t>(transposed ? B[n * K + k] : B[k * N + n]) : 0;
  };
  for (index_t n = 0; n < N; ++n) {
    for (index_t g = 0; g < S->KG; ++g) {
      const std::uint32_t v = get(4 * g, n) | get(4 * g + 1, n) << 8 | get(4 * g + 2, n) << 16 |
                              static_cast<std::uint32_t>(get(4 * g + 3, n)) << 24;
      if (!v) continue;
      S->off.push_back(static_cast<std::int32_t>(g * 64));
      S->val.push_back(static_cast<std::int32_t>(v));
    }
    if (S->off.size() > 2147483647u) return Status::invalid("too many nonzero blocks for int32 offsets");
    S->col_ptr[n + 1] = static_cast<std::int32_t>(S->off.size());
  }
  W.sparse_ = std::move(S);
  *out = std::move(W);
  return Status::ok();
}

Status PackedWeights::pack_bf16(const bf16_t* B, index_t K, index_t N, bool transposed, PackedWeights* out) {
  if (Status s = check_dims(K, N, B); !s) return s;
  PackedWeights W;
  W.alloc(PackLayout::bf16_k2, K, N);
  pack_generic(W, W.buf_.data(), [&](index_t k, index_t n) { return transposed ? B[n * K + k] : B[k * N + n]; },
               [](std::uint8_t* p, bf16_t v) { std::memcpy(p, &v, 2); });
  *out = std::move(W);
  return Status::ok();
}

Status PackedWeights::pack_bf16_from_f32(const float* B, index_t K, index_t N, bool transposed, PackedWeights* out) {
  return pack_bf16_from_f32(B, K, N, transposed ? K : N, transposed, 1, out);
}

Status PackedWeights::pack_f32(const float* B, index_t K, index_t N, bool transposed, PackedWeights* out) {
  return pack_f32(B, K, N, transposed ? K : N, transposed, 1, out);
}

namespace {

// Rows [k0, k1) of a row-major [K, N] source (row stride ld) into f32_k1 panels: row k of panel p is
// the 64 bytes at p * pb + k * 64, so a source row is read once, front to back, and written as
// 16-float runs; the padding columns of the last panel are written as zeros (no zeroed buffer).
void pack_rows_f32(const float* B, index_t N, index_t ld, index_t pb, index_t k0, index_t k1, std::uint8_t* base) {
  const index_t full = N / 16, tail = N % 16;
  for (index_t k = k0; k < k1; ++k) {
    const float* src = B + k * ld;
    std::uint8_t* dst = base + k * 64;
    for (index_t p = 0; p < full; ++p) std::memcpy(dst + p * pb, src + p * 16, 64);
    if (tail) {
      float t[16] = {};
      std::memcpy(t, src + full * 16, static_cast<std::size_t>(tail) * 4);
      std::memcpy(dst + full * pb, t, 64);
    }
  }
}

// The same into bf16_k2 panels ([k/2][col][k%2]): rows k0, k0 + 1, ... in pairs (k0 even); a missing
// last row of an odd K and the padding columns are zeros.
void pack_rows_bf16(const float* B, index_t K, index_t N, index_t ld, index_t pb, index_t k0, index_t k1,
                    std::uint8_t* base) {
  const index_t panels = (N + 15) / 16;
  for (index_t k = k0; k < k1; k += 2) {
    const float* r0 = B + k * ld;
    const float* r1 = k + 1 < K ? r0 + ld : nullptr;
    std::uint8_t* dst = base + (k / 2) * 64;
    for (index_t p = 0; p < panels; ++p) {
      std::uint16_t t[32];
      const index_t cols = std::min<index_t>(16, N - p * 16);
      for (index_t c = 0; c < cols; ++c) {
        t[2 * c] = f32_to_bf16(r0[p * 16 + c]);
        t[2 * c + 1] = r1 ? f32_to_bf16(r1[p * 16 + c]) : 0;
      }
      for (index_t c = cols; c < 16; ++c) t[2 * c] = t[2 * c + 1] = 0;
      std::memcpy(dst + p * pb, t, 64);
    }
  }
}

// Packs rows [0, K) in chunks of `rows` (even) on up to `threads` threads: each chunk writes a
// disjoint k range of every panel.
template <class Rows>
void pack_rows_parallel(index_t K, int threads, Rows rows_fn) {
  constexpr index_t kChunk = 64;
  const std::int64_t tasks = (K + kChunk - 1) / kChunk;
  if (threads <= 1 || tasks < 2) return rows_fn(0, K);
  struct Ctx { Rows* fn; index_t K; } ctx{&rows_fn, K};
  parallel_tasks(tasks, threads, [](void* c, std::int64_t t) {
    auto* x = static_cast<Ctx*>(c);
    (*x->fn)(t * kChunk, std::min<index_t>(x->K, (t + 1) * kChunk));
  }, &ctx);
}

}  // namespace

Status PackedWeights::pack_bf16_from_f32(const float* B, index_t K, index_t N, index_t ld, bool transposed,
                                         int threads, PackedWeights* out) {
  if (Status s = check_dims(K, N, B); !s) return s;
  if (ld < (transposed ? K : N)) return Status::invalid("row stride " + std::to_string(ld) + " is below the row length");
  PackedWeights W;
  if (transposed) {
    W.alloc(PackLayout::bf16_k2, K, N);
    pack_generic(W, W.buf_.data(), [&](index_t k, index_t n) { return f32_to_bf16(B[n * ld + k]); },
                 [](std::uint8_t* p, bf16_t v) { std::memcpy(p, &v, 2); });
  } else {
    W.alloc(PackLayout::bf16_k2, K, N, false);
    const index_t pb = W.panel_bytes();
    std::uint8_t* base = W.buf_.data();
    pack_rows_parallel(K, threads, [&](index_t k0, index_t k1) { pack_rows_bf16(B, K, N, ld, pb, k0, k1, base); });
  }
  *out = std::move(W);
  return Status::ok();
}

Status PackedWeights::pack_f32(const float* B, index_t K, index_t N, index_t ld, bool transposed, int threads,
                               PackedWeights* out) {
  if (Status s = check_dims(K, N, B); !s) return s;
  if (ld < (transposed ? K : N)) return Status::invalid("row stride " + std::to_string(ld) + " is below the row length");
  PackedWeights W;
  if (transposed) {
    W.alloc(PackLayout::f32_k1, K, N);
    pack_generic(W, W.buf_.data(), [&](index_t k, index_t n) { return B[n * ld + k]; },
                 [](std::uint8_t* p, float v) { std::memcpy(p, &v, 4); });
  } else {
    W.alloc(PackLayout::f32_k1, K, N, false);
    const index_t pb = W.panel_bytes();
    std::uint8_t* base = W.buf_.data();
    pack_rows_parallel(K, threads, [&](index_t k0, index_t k1) { pack_rows_f32(B, N, ld, pb, k0, k1, base); });
  }
  *out = std::move(W);
  return Status::ok();
}

float PackedWeights::at_f32(index_t k, index_t n) const {
  const std::uint8_t* p = panel(n / 16) + panel_offset(layout_, k, n % 16);
  if (layout_ == PackLayout::f32_k1) { float f; std::memcpy(&f, p, 4); return f; }
  if (layout_ == PackLayout::bf16_k2) { std::uint16_t h; std::memcpy(&h, p, 2); return bf16_to_f32(h); }
  return static_cast<float>(at_s8(k, n));
}

std::int32_t PackedWeights::at_s8(index_t k, index_t n) const {
  if (sparse_) {
    const SparseBlocks& S = *sparse_;
    for (std::int32_t b = S.col_ptr[n]; b < S.col_ptr[n + 1]; ++b)
      if (S.off[b] == (k / 4) * 64) return static_cast<std::int8_t>(static_cast<std::uint32_t>(S.val[b]) >> (8 * (k % 4)));
    return 0;
  }
  const std::uint8_t* p = panel(n / 16) + panel_offset(layout_, k, n % 16);
  if (layout_ == PackLayout::s8_k4) return *reinterpret_cast<const std::int8_t*>(p);
  std::int16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---------------------------------------------------------------- dispatch tables

namespace {

const Dispatch<GemmFn>& s8_vnni_table() {
  static const Dispatch<GemmFn> d = [] {
    Dispatch<GemmFn> t;
    t.ref = &ref::gemm_s8;
    t.avx512_vnni = &avx512_vnni::gemm_s8;
    t.amx = &amx::gemm_s8;
    return t;
  }();
  return d;
}
const Dispatch<GemmFn>& s8_avx2_table() {
  static const Dispatch<GemmFn> d = [] {
    Dispatch<GemmFn> t;
    t.ref = &ref::gemm_s8;
    t.avx2 = &avx2::gemm_s8;
    return t;
  }();
  return d;
}
const Dispatch<GemmFn>& bf16_table() {
  static const Dispatch<GemmFn> d = [] {
    Dispatch<GemmFn> t;
    t.ref = &ref::gemm_bf16;
    t.avx2 = &avx2::gemm_bf16;
    t.avx512 = &avx512::gemm_bf16;
    t.avx512_bf16 = &avx512_bf16::gemm_bf16;
    t.amx = &amx::gemm_bf16;  // AVX512-BF16 below 16 rows or without AMX-BF16
    return t;
  }();
  return d;
}
const Dispatch<GemmFn>& f32_table() {
  static const Dispatch<GemmFn> d = [] {
    Dispatch<GemmFn> t;
    t.ref = &ref::gemm_f32;
    t.avx2 = &avx2::gemm_f32;
    t.avx512 = &avx512::gemm_f32;
    return t;
  }();
  return d;
}

const Dispatch<GemmFn>& table_for(const PackedWeights& W) {
  switch (W.layout()) {
    case PackLayout::s8_k4: return s8_vnni_table();
    case PackLayout::s16_k2: return s8_avx2_table();
    case PackLayout::bf16_k2: return bf16_table();
    case PackLayout::f32_k1: return f32_table();
  }
  return f32_table();
}

Status check_gemm(const void* A, index_t M, index_t lda, const PackedWeights& W, const Epilogue& e, const void* C,
                  index_t ldc, bool int8) {
  if (M < 0) return Status::invalid("M must be >= 0, got " + std::to_string(M));
  if (W.N() <= 0) return Status::invalid("packed weights are empty");
  if (M > 0 && (!A || !C)) return Status::invalid("null A or C pointer");
  if (lda < W.K()) return Status::invalid("lda=" + std::to_string(lda) + " < K=" + std::to_string(W.K()));
  if (ldc < W.N()) return Status::invalid("ldc=" + std::to_string(ldc) + " < N=" + std::to_string(W.N()));
  if (!int8 && e.out == OutType::s32) return Status::invalid("s32 output is only available for the int8 GEMM");
  if (e.out_mul && e.out == OutType::s32) return Status::invalid("out_mul needs a float or requantized output, not s32");
  if ((e.out == OutType::u8 || e.out == OutType::s8) && !(e.out_scale > 0.f && std::isfinite(e.out_scale)))
    return Status::invalid("out_scale must be finite and > 0 for requantized output, got " + std::to_string(e.out_scale));
  if (int8 && (e.a_zp < 0 || e.a_zp > 255)) return Status::invalid("activation zero point " + std::to_string(e.a_zp) + " is outside the u8 range");
  if (!int8 && (e.a_row_scale || e.a_row_zp)) return Status::invalid("per-row activation grids are only for the int8 GEMM");
  if (!e.a_row_scale != !e.a_row_zp) return Status::invalid("a_row_scale and a_row_zp come together");
  if (e.a_row_zp) {
    for (index_t m = 0; m < M; ++m)
      if (e.a_row_zp[m] < 0 || e.a_row_zp[m] > 255)
        return Status::invalid("activation zero point " + std::to_string(e.a_row_zp[m]) + " of row " + std::to_string(m) +
                               " is outside the u8 range");
  }
  return Status::ok();
}

// Largest K for which sum_k (a - a_zp)(w - w_zp) always fits in int32.
constexpr index_t kMaxExactK = 2147483647LL / (255 * 255);

EpiResolved resolve_float(const Epilogue& e) {
  EpiResolved r;
  r.act = e.act;
  r.out = e.out;
  r.out_scale = e.out_scale;
  r.out_zp = e.out_zp;
  r.bias = e.bias;
  r.out_mul = e.out_mul;
  return r;
}

}  // namespace

Isa gemm_isa(const PackedWeights& W) { return W.sparse() ? sparse_isa() : table_for(W).level(isa_selected()); }

Status gemm_s8(const std::uint8_t* A, index_t M, index_t lda, const PackedWeights& W, const Epilogue& e, void* C,
               index_t ldc) {
  if (W.layout() != PackLayout::s8_k4 && W.layout() != PackLayout::s16_k2)
    return Status::invalid(std::string("gemm_s8 needs int8 packed weights, got layout ") + layout_name(W.layout()));
  if (Status s = check_gemm(A, M, lda, W, e, C, ldc, true); !s) return s;
  if (W.K() > kMaxExactK)
    return Status::invalid("int8 GEMM with K=" + std::to_string(W.K()) + " > " + std::to_string(kMaxExactK) +
                           " could overflow its int32 accumulators (|a - a_zp| * |w - w_zp| <= 255 * 255 per term)");
  if (M == 0) return Status::ok();
  // O(1) per call: the kernels derive the per-column terms from W's (driver.h).
  EpiResolved r = resolve_float(e);
  r.a_scale = e.a_scale;
  r.a_zp = e.a_zp;
  r.wscale = W.col_scale().data();
  r.wterm = W.col_term().data();
  r.wzp = W.zero_point().data();
  r.need_rowsum = W.has_zero_point();
  r.row_scale = e.a_row_scale;
  r.row_zp = e.a_row_zp;
  GemmArgs g{A, M, lda, &W, &r, C, ldc};
  if (W.sparse()) sparse_gemm_s8(g);
  else table_for(W).get()(g);
  return Status::ok();
}

Status gemm_bf16(const bf16_t* A, index_t M, index_t lda, const PackedWeights& W, const Epilogue& e, void* C,
                 index_t ldc) {
  if (W.layout() != PackLayout::bf16_k2)
    return Status::invalid(std::string("gemm_bf16 needs bf16 packed weights, got layout ") + layout_name(W.layout()));
  if (Status s = check_gemm(A, M, lda, W, e, C, ldc, false); !s) return s;
  if (M == 0) return Status::ok();
  const EpiResolved r = resolve_float(e);
  GemmArgs g{A, M, lda, &W, &r, C, ldc};
  table_for(W).get()(g);
  return Status::ok();
}

Status gemm_f32(const float* A, index_t M, index_t lda, const PackedWeights& W, const Epilogue& e, void* C,
                index_t ldc) {
  if (W.layout() != PackLayout::f32_k1)
    return Status::invalid(std::string("gemm_f32 needs fp32 packed weights, got layout ") + layout_name(W.layout()));
  if (Status s = check_gemm(A, M, lda, W, e, C, ldc, false); !s) return s;
  if (M == 0) return Status::ok();
  const EpiResolved r = resolve_float(e);
  GemmArgs g{A, M, lda, &W, &r, C, ldc};
  table_for(W).get()(g);
  return Status::ok();
}

double peak_gops(const char* kind, double seconds) {
  const std::string k = kind ? kind : "";
  const CpuFeatures& f = cpu_features();
  const bool avx512 = isa_available() >= Isa::avx512;
  if (k == "int8_vnni") return avx512 && f.avx512_vnni ? avx512_vnni::peak_gops(kPeakInt8Vnni, seconds) : 0.0;
  if (k == "bf16") return avx512 && f.avx512_bf16 ? avx512_bf16::peak_gops(kPeakBf16, seconds) : 0.0;
  if (k == "fp32_avx512") return avx512 ? avx512::peak_gops(kPeakF32Avx512, seconds) : 0.0;
  if (k == "int8_avx2") return isa_available() >= Isa::avx2 ? avx2::peak_gops(kPeakInt8Avx2, seconds) : 0.0;
  if (k == "fp32_avx2") return isa_available() >= Isa::avx2 ? avx2::peak_gops(kPeakF32Avx2, seconds) : 0.0;
  // AMX: tile products with operands resident in tiles (isa_available() includes the OS's permission).
  if (k == "int8_amx") return isa_available() >= Isa::amx ? amx::peak_gops(kPeakInt8Amx, seconds) : 0.0;
  if (k == "bf16_amx") return isa_available() >= Isa::amx && f.amx_bf16 ? amx::peak_gops(kPeakBf16Amx, seconds) : 0.0;
  return 0.0;
}

double amx_stage_seconds(const PackedWeights& W, index_t M, bool stores, int reps) {
  const bool bf16 = W.layout() == PackLayout::bf16_k2;
  if (isa_available() < Isa::amx || (bf16 && !cpu_features().amx_bf16)) return 0.0;
  if (!bf16 && W.layout() != PackLayout::s8_k4) return 0.0;
  return amx::stage_seconds(W, M, stores, reps);
}

}  // namespace graphopt::kernels
