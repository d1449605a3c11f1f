// int4 front: argument checks, ISA dispatch and the int8-activation path's weight packing
// (ISA-neutral TU).
#include <algorithm>
#include <string>
#include <vector>

#include "graphopt/dispatch.h"
#include "int4_internal.h"

namespace graphopt::kernels {
namespace {

const Dispatch<void (*)(const Int4Job&)>& table() {
  static const auto d = [] {
    Dispatch<void (*)(const Int4Job&)> t;
    t.ref = &ref::int4_matmul;
    t.avx512 = &avx512::int4_matmul;  // avx2 and below: the scalar reference
    return t;
  }();
  return d;
}

// The int8-activation path: the scalar reference and AVX-512 VNNI; the ISAs between them (avx2,
// avx512 without VNNI) keep the fp32 path.
const Dispatch<void (*)(const Int4Job&)>& q8_table() {
  static const auto d = [] {
    Dispatch<void (*)(const Int4Job&)> t;
    t.ref = &ref::int4_matmul_q8;
    t.avx512_vnni = &avx512_vnni::int4_matmul_q8;
    return t;
  }();
  return d;
}

}  // namespace

// From the first row: on this project's AVX-512 VNNI machine the int8 path beats the fp32 decode
// path at 1-4 rows (2-7x, hot and DRAM-bound weights alike) and the fp32 panels at 5+ (about 5x),
// benchmarks/int4_kernel.py. Kept as a function: a CPU where decode wins would raise it.
index_t int4_q8_min_rows() { return 1; }

bool int4_q8_needs_pack() { return q8_table().level(isa_selected()) != Isa::scalar; }

Status int4_matmul(const float* x, index_t M, const Int4Weights& w, const float* bias, float* y, index_t n0,
                   index_t n1) {
  if (M < 0 || w.K < 1 || w.N < 1) return Status::invalid("int4_matmul needs K, N >= 1");
  if (w.block < 16 || (w.block & (w.block - 1))) return Status::invalid("int4 block size must be a power of two >= 16, got " + std::to_string(w.block));
  if (n0 < 0 || n1 > w.N || n0 > n1) return Status::invalid("int4_matmul: bad column range");
  if (!w.q || !w.scale || (M && (!x || !y))) return Status::invalid("int4_matmul: null pointer");
  if (M == 0 || n0 == n1) return Status::ok();
  const Int4Job job{x, M, w, bias, y, n0, n1};
  if (w.q8 && M >= int4_q8_min_rows()) {
    const Isa sel = isa_selected(), lvl = q8_table().level(sel);
    if (lvl == Isa::scalar && sel == Isa::scalar) return ref::int4_matmul_q8(job), Status::ok();
    if (lvl != Isa::scalar) {
      const Int4Packed* p = w.packed;
      if (!p || p->K != w.K || p->N != w.N || p->block != w.block || p->zp != (w.zp != nullptr))
        return Status::invalid("int4_matmul: the int8-activation path needs the packed weights (int4_pack_*)");
      q8_table().at(sel)(job);
      return Status::ok();
    }
  }
  table().get()(job);
  return Status::ok();
}

void int4_pack_init(const Int4Weights& w, Int4Packed* p) {
  p->K = w.K;
  p->N = w.N;
  p->block = w.block;
  p->nb = (w.K + w.block - 1) / w.block;
  p->groups = (w.N + 15) / 16;
  p->zp = w.zp != nullptr;
  const auto gb = static_cast<std::size_t>(p->groups * p->nb);
  p->w.assign(gb * static_cast<std::size_t>(8 * w.block), 0);
  p->s16.assign(gb * 16, 0.f);
  p->comp.assign(gb * 16, 0);
  p->zs.assign(p->zp ? gb * 16 : 0, 0.f);
}

void int4_pack_groups(const Int4Weights& w, index_t g0, index_t g1, Int4Packed* p) {
  const index_t B = w.block, nb = p->nb, blob = B / 2;
  std::vector<int> sv(static_cast<std::size_t>(B));  // one block of one column, q - 8 (0 past K)
  for (index_t g = g0; g < g1; ++g)
    for (index_t b = 0; b < nb; ++b) {
      const index_t gb = g * nb + b, kn = std::min<index_t>(B, w.K - b * B);
      std::uint8_t* dst = p->w.data() + gb * 8 * B;
      for (index_t c = 0; c < 16; ++c) {
        const index_t n = g * 16 + c;
        if (n >= w.N) break;
        const std::uint8_t* src = w.q + (n * nb + b) * blob;
        int sum = 0;
        for (index_t i = 0; i < B; ++i) {
          const int v = i < kn ? ((i & 1) ? (src[i / 2] >> 4) : (src[i / 2] & 0x0F)) - 8 : 0;
          sv[static_cast<std::size_t>(i)] = v;
          sum += v;
        }
        for (index_t r = 0; r < B / 8; ++r)
          for (index_t i = 0; i < 4; ++i) {
            const int lo = sv[static_cast<std::size_t>(r * 8 + i)], hi = sv[static_cast<std::size_t>(r * 8 + 4 + i)];
            dst[r * 64 + c * 4 + i] = static_cast<std::uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
          }
        const float s = w.scale[n * nb + b];
        p->s16[static_cast<std::size_t>(gb * 16 + c)] = s / 16.f;  // the nibbles sit in the high half: x16
        p->comp[static_cast<std::size_t>(gb * 16 + c)] = -2048 * sum;
        if (p->zp) p->zs[static_cast<std::size_t>(gb * 16 + c)] = static_cast<float>(8 - int4_zp(w, n, b)) * s;
      }
    }
}

const char* int4_isa() { return isa_name(table().level(isa_selected())); }

}  // namespace graphopt::kernels
