// Element-wise ops with numpy broadcasting: arithmetic, comparisons, logic,
// Where, Cast and fp32 unary math. Memory-bound, so plain loops the compiler
// vectorises; OpenMP above kParMin elements.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <cstring>

#include "../plan.h"
#include "graphopt/kernels/eltwise.h"

namespace graphopt::runtime {
namespace {

// Broadcast strides of `s` (right-aligned) against output shape `o` (0 where broadcast).
std::vector<index_t> bstrides(const Shape& s, const Shape& o) {
  std::vector<index_t> st(o.size(), 0);
  index_t acc = 1;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const std::size_t i = s.size() - 1 - k, oi = o.size() - 1 - k;
    st[oi] = s[i] == 1 ? 0 : acc;
    acc *= s[i];
  }
  return st;
}

// Calls f(out_index, off_0, ..., off_{n-1}) over the output, row by row (last dim inner).
template <int N, class F>
void for_bcast(const Shape& o, const Shape* in[N], F f) {
  const index_t total = numel(o);
  if (total == 0) return;
  if (o.empty()) { index_t offs[N] = {}; f(0, offs, nullptr); return; }
  std::vector<index_t> st[N];
  for (int k = 0; k < N; ++k) st[k] = bstrides(*in[k], o);
  const std::size_t r = o.size();
  const index_t inner = o[r - 1], rows = total / inner;
  index_t last[N];
  for (int k = 0; k < N; ++k) last[k] = st[k][r - 1];
#pragma omp parallel for schedule(static) if (total >= kParMin && rows > 1)
  for (index_t row = 0; row < rows; ++row) {
    index_t offs[N] = {};
    index_t rem = row;
    for (std::size_t d = r - 1; d-- > 0;) {
      const index_t idx = rem % o[d];
      rem /= o[d];
      for (int k = 0; k < N; ++k) offs[k] += idx * st[k][d];
    }
    f(row * inner, offs, last, inner);
  }
}

enum class Bin { add, sub, mul, div, pow, max, min, eq, lt, gt, le, ge, and_, or_, xor_ };

template <class T>
inline T apply(Bin op, T a, T b) {
  switch (op) {
    case Bin::add: return a + b;
    case Bin::sub: return a - b;
    case Bin::mul: return a * b;
    case Bin::div: return a / b;
    case Bin::pow: return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case Bin::max: return a > b ? a : b;
    case Bin::min: return a < b ? a : b;
    default: return a;
  }
}
template <>
inline float apply<float>(Bin op, float a, float b) {
  switch (op) {
    case Bin::add: return a + b;
    case Bin::sub: return a - b;
    case Bin::mul: return a * b;
    case Bin::div: return a / b;
    case Bin::pow: return std::pow(a, b);
    case Bin::max: return a != a || b != b ? a + b : std::fmax(a, b);  // NaN propagates (ONNX Max/Min)
    case Bin::min: return a != a || b != b ? a + b : std::fmin(a, b);
    default: return a;
  }
}
template <class T>
inline bool cmp(Bin op, T a, T b) {
  switch (op) {
    case Bin::eq: return a == b;
    case Bin::lt: return a < b;
    case Bin::gt: return a > b;
    case Bin::le: return a <= b;
    case Bin::ge: return a >= b;
    case Bin::and_: return a && b;
    case Bin::or_: return a || b;
    case Bin::xor_: return (a != 0) != (b != 0);
    default: return false;
  }
}

template <Bin OP, class T, class O>
void binary_loop(const T* a, const Shape& sa, const T* b, const Shape& sb, O* o, const Shape& so) {
  constexpr bool is_cmp = OP >= Bin::eq;
  auto fn = [](T x, T y) -> O {
    if constexpr (is_cmp) return static_cast<O>(cmp<T>(OP, x, y));
    else return apply<T>(OP, x, y);
  };
  const index_t n = numel(so), na = numel(sa), nb = numel(sb);
  if (na == n && nb == n) {
#pragma omp parallel for schedule(static) if (n >= kParMin)
    for (index_t i = 0; i < n; ++i) o[i] = fn(a[i], b[i]);
    return;
  }
  if (na == n && nb == 1) {
    const T y = b[0];
#pragma omp parallel for schedule(static) if (n >= kParMin)
    for (index_t i = 0; i < n; ++i) o[i] = fn(a[i], y);
    return;
  }
  if (nb == n && na == 1) {
    const T x = a[0];
#pragma omp parallel for schedule(static) if (n >= kParMin)
    for (index_t i = 0; i < n; ++i) o[i] = fn(x, b[i]);
    return;
  }
  const Shape* in[2] = {&sa, &sb};
  for_bcast<2>(so, in, [&](index_t base, const index_t* off, const index_t* last, index_t inner = 1) {
    if (!last) { o[0] = fn(a[off[0]], b[off[1]]); return; }
    const T* pa = a + off[0];
    const T* pb = b + off[1];
    O* po = o + base;
    if (last[0] == 1 && last[1] == 0) { const T y = pb[0]; for (index_t j = 0; j < inner; ++j) po[j] = fn(pa[j], y); }
    else if (last[0] == 0 && last[1] == 1) { const T x = pa[0]; for (index_t j = 0; j < inner; ++j) po[j] = fn(x, pb[j]); }
    else if (last[0] == 1 && last[1] == 1) { for (index_t j = 0; j < inner; ++j) po[j] = fn(pa[j], pb[j]); }
    else for (index_t j = 0; j < inner; ++j) po[j] = fn(pa[j * last[0]], pb[j * last[1]]);
  });
}

template <Bin OP>
Status binary(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  const Tensor& b = c.in(s, 1);
  if (a.dt != b.dt) return bad(s, std::string("input types differ: ") + dtype_name(a.dt) + " vs " + dtype_name(b.dt));
  Shape so;
  if (!broadcast_shape(a.shape, b.shape, &so))
    return bad(s, "cannot broadcast " + shape_str(a.shape) + " with " + shape_str(b.shape));
  constexpr bool is_cmp = OP >= Bin::eq;
  constexpr bool is_logic = OP >= Bin::and_;
  const DType odt = is_cmp ? DType::boolean : a.dt;
  if (is_logic && a.dt != DType::boolean) return bad(s, "logical ops need bool inputs");
  // Outputs are allocated after the inputs are read: no aliasing with inputs.
  Tensor& o = c.out(s, 0, so, odt);
  using B = std::uint8_t;
  switch (a.dt) {
    case DType::f32:
      if constexpr (is_cmp) binary_loop<OP, float, B>(a.as<float>(), a.shape, b.as<float>(), b.shape, o.as<B>(), so);
      else binary_loop<OP, float, float>(a.as<float>(), a.shape, b.as<float>(), b.shape, o.as<float>(), so);
      return Status::ok();
    case DType::s64:
      if constexpr (is_cmp) binary_loop<OP, std::int64_t, B>(a.as<std::int64_t>(), a.shape, b.as<std::int64_t>(), b.shape, o.as<B>(), so);
      else binary_loop<OP, std::int64_t, std::int64_t>(a.as<std::int64_t>(), a.shape, b.as<std::int64_t>(), b.shape, o.as<std::int64_t>(), so);
      return Status::ok();
    case DType::s32:
      if constexpr (is_cmp) binary_loop<OP, std::int32_t, B>(a.as<std::int32_t>(), a.shape, b.as<std::int32_t>(), b.shape, o.as<B>(), so);
      else binary_loop<OP, std::int32_t, std::int32_t>(a.as<std::int32_t>(), a.shape, b.as<std::int32_t>(), b.shape, o.as<std::int32_t>(), so);
      return Status::ok();
    case DType::f64:
      if constexpr (is_cmp) binary_loop<OP, double, B>(a.as<double>(), a.shape, b.as<double>(), b.shape, o.as<B>(), so);
      else binary_loop<OP, double, double>(a.as<double>(), a.shape, b.as<double>(), b.shape, o.as<double>(), so);
      return Status::ok();
    case DType::boolean:
      if constexpr (is_cmp) { binary_loop<OP, B, B>(a.as<B>(), a.shape, b.as<B>(), b.shape, o.as<B>(), so); return Status::ok(); }
      break;
    default: break;
  }
  return bad(s, std::string("unsupported input type ") + dtype_name(a.dt));
}

// Pow with a scalar constant exponent is common (LayerNorm decompositions): specialise 2, 0.5, 3.
Status pow_op(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  const Tensor& b = c.in(s, 1);
  if (a.dt == DType::f32 && b.numel() == 1 && (b.dt == DType::f32 || b.dt == DType::s64 || b.dt == DType::s32)) {
    const double e = b.dt == DType::f32 ? b.as<float>()[0] : static_cast<double>(read_ints(b)[0]);
    Shape so;
    broadcast_shape(a.shape, b.shape, &so);
    const float* x = a.as<float>();
    float* y = c.out(s, 0, so, DType::f32).as<float>();
    const index_t n = a.numel();
    const float ef = static_cast<float>(e);
#pragma omp parallel for schedule(static) if (n >= kParMin)
    for (index_t i = 0; i < n; ++i)
      y[i] = e == 2.0 ? x[i] * x[i] : e == 0.5 ? std::sqrt(x[i]) : e == 3.0 ? x[i] * x[i] * x[i] : e == 1.0 ? x[i] : std::pow(x[i], ef);
    return Status::ok();
  }
  return binary<Bin::pow>(c, s);
}

enum class Un { sqrt, exp, log, tanh, erf, abs, neg, recip, relu, sigmoid, floor, ceil, sin, cos, gelu, leaky, not_, identity, softplus, round };

template <Un OP>
Status unary(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  if constexpr (OP == Un::not_) {
    if (a.dt != DType::boolean) return bad(s, "Not needs bool");
    const auto* x = a.as<std::uint8_t>();
    auto* y = c.out(s, 0, a.shape, a.dt).as<std::uint8_t>();
    for (index_t i = 0, n = a.numel(); i < n; ++i) y[i] = !x[i];
    return Status::ok();
  } else if constexpr (OP == Un::identity) {
    Tensor& o = c.out(s, 0, a.shape, a.dt);
    if (a.nbytes()) std::memcpy(o.data, a.data, a.nbytes());
    return Status::ok();
  } else {
    if (a.dt != DType::f32) return bad(s, std::string("needs float32, got ") + dtype_name(a.dt));
    const float* x = a.as<float>();
    float* y = c.out(s, 0, a.shape, DType::f32).as<float>();
    const index_t n = a.numel();
    // erf/tanh/GELU: the vectorised kernels (max abs error ~1 ulp of 1, vs libm's 1 ulp of the result).
    if constexpr (OP == Un::gelu || OP == Un::erf || OP == Un::tanh) {
      Status st = OP == Un::gelu ? kernels::gelu(x, n, s.i("tanh", 0) != 0, y)
                  : OP == Un::erf ? kernels::erf(x, n, y) : kernels::tanh(x, n, y);
      return st ? Status::ok() : bad(s, st.message());
    }
    const float alpha = static_cast<float>(s.f("alpha", 0.01));
#pragma omp parallel for schedule(static) if (n >= kParMin / 4)
    for (index_t i = 0; i < n; ++i) {
      const float v = x[i];
      float r;
      switch (OP) {
        case Un::sqrt: r = std::sqrt(v); break;
        case Un::exp: r = std::exp(v); break;
        case Un::log: r = std::log(v); break;
        case Un::tanh: r = std::tanh(v); break;
        case Un::erf: r = std::erf(v); break;
        case Un::abs: r = std::fabs(v); break;
        case Un::neg: r = -v; break;
        case Un::recip: r = 1.f / v; break;
        case Un::relu: r = v < 0.f ? 0.f : v; break;  // NaN stays NaN
        case Un::sigmoid: r = 1.f / (1.f + std::exp(-v)); break;
        case Un::floor: r = std::floor(v); break;
        case Un::ceil: r = std::ceil(v); break;
        case Un::sin: r = std::sin(v); break;
        case Un::cos: r = std::cos(v); break;
        case Un::leaky: r = v >= 0.f ? v : alpha * v; break;
        case Un::softplus: r = v > 20.f ? v : std::log1p(std::exp(v)); break;
        case Un::round: r = std::nearbyint(v); break;
        default: r = v; break;
      }
      y[i] = r;
    }
    return Status::ok();
  }
}

// Clip(x, min?, max?) on fp32.
Status clip(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  if (a.dt != DType::f32) return bad(s, "Clip needs float32");
  float lo = static_cast<float>(s.f("min", -INFINITY)), hi = static_cast<float>(s.f("max", INFINITY));
  if (c.has(s, 1)) lo = c.in(s, 1).as<float>()[0];
  if (c.has(s, 2)) hi = c.in(s, 2).as<float>()[0];
  const float* x = a.as<float>();
  float* y = c.out(s, 0, a.shape, DType::f32).as<float>();
  // min > max gives max, as numpy; NaN fails both comparisons and stays NaN, as ONNX Clip keeps it
  // (plain compares, not std::fmin/fmax: those are NaN-aware calls that kept the loop scalar, ~3 ns/element).
  for (index_t i = 0, n = a.numel(); i < n; ++i) {
    const float v = x[i] < lo ? lo : x[i];
    y[i] = v > hi ? hi : v;
  }
  return Status::ok();
}

template <class T>
void where_loop(const std::uint8_t* cnd, const Shape& sc, const T* x, const Shape& sx, const T* y, const Shape& sy,
                T* o, const Shape& so) {
  const Shape* in[3] = {&sc, &sx, &sy};
  for_bcast<3>(so, in, [&](index_t base, const index_t* off, const index_t* last, index_t inner = 1) {
    if (!last) { o[0] = cnd[off[0]] ? x[off[1]] : y[off[2]]; return; }
    for (index_t j = 0; j < inner; ++j)
      o[base + j] = cnd[off[0] + j * last[0]] ? x[off[1] + j * last[1]] : y[off[2] + j * last[2]];
  });
}

Status where_op(ExecCtx& c, const Step& s) {
  const Tensor& cd = c.in(s, 0);
  const Tensor& x = c.in(s, 1);
  const Tensor& y = c.in(s, 2);
  if (cd.dt != DType::boolean || x.dt != y.dt) return bad(s, "Where needs (bool, T, T)");
  Shape t, so;
  if (!broadcast_shape(cd.shape, x.shape, &t) || !broadcast_shape(t, y.shape, &so))
    return bad(s, "cannot broadcast " + shape_str(cd.shape) + ", " + shape_str(x.shape) + ", " + shape_str(y.shape));
  Tensor& o = c.out(s, 0, so, x.dt);
  const auto* cp = cd.as<std::uint8_t>();
  switch (dtype_size(x.dt)) {
    case 1: where_loop(cp, cd.shape, x.as<std::uint8_t>(), x.shape, y.as<std::uint8_t>(), y.shape, o.as<std::uint8_t>(), so); break;
    case 2: where_loop(cp, cd.shape, x.as<std::uint16_t>(), x.shape, y.as<std::uint16_t>(), y.shape, o.as<std::uint16_t>(), so); break;
    case 4: where_loop(cp, cd.shape, x.as<std::uint32_t>(), x.shape, y.as<std::uint32_t>(), y.shape, o.as<std::uint32_t>(), so); break;
    case 8: where_loop(cp, cd.shape, x.as<std::uint64_t>(), x.shape, y.as<std::uint64_t>(), y.shape, o.as<std::uint64_t>(), so); break;
    default: return bad(s, "unsupported type");
  }
  return Status::ok();
}

// ---------------------------------------------------------------- Cast

inline float bf16f(std::uint16_t h) { std::uint32_t u = static_cast<std::uint32_t>(h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline std::uint16_t f2bf(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

template <class S>
Status cast_from(const S* x, index_t n, DType to, void* y) {
  switch (to) {
    case DType::f32: for (index_t i = 0; i < n; ++i) static_cast<float*>(y)[i] = static_cast<float>(x[i]); break;
    case DType::f64: for (index_t i = 0; i < n; ++i) static_cast<double*>(y)[i] = static_cast<double>(x[i]); break;
    case DType::s64: for (index_t i = 0; i < n; ++i) static_cast<std::int64_t*>(y)[i] = static_cast<std::int64_t>(x[i]); break;
    case DType::s32: for (index_t i = 0; i < n; ++i) static_cast<std::int32_t*>(y)[i] = static_cast<std::int32_t>(x[i]); break;
    case DType::s8: for (index_t i = 0; i < n; ++i) static_cast<std::int8_t*>(y)[i] = static_cast<std::int8_t>(x[i]); break;
    case DType::u8: for (index_t i = 0; i < n; ++i) static_cast<std::uint8_t*>(y)[i] = static_cast<std::uint8_t>(x[i]); break;
    case DType::boolean: for (index_t i = 0; i < n; ++i) static_cast<std::uint8_t*>(y)[i] = x[i] != S(0); break;
    case DType::bf16: for (index_t i = 0; i < n; ++i) static_cast<std::uint16_t*>(y)[i] = f2bf(static_cast<float>(x[i])); break;
    default: return Status::invalid(std::string("cast to ") + dtype_name(to) + " is not supported natively");
  }
  return Status::ok();
}

Status cast_op(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  const DType to = static_cast<DType>(s.i("to", 1));
  if (!dtype_size(to)) return bad(s, "bad target type");
  const index_t n = a.numel();
  Tensor& o = c.out(s, 0, a.shape, to);
  if (a.dt == to) { if (a.nbytes()) std::memcpy(o.data, a.data, a.nbytes()); return Status::ok(); }
  Status st;
  switch (a.dt) {
    case DType::f32: st = cast_from(a.as<float>(), n, to, o.data); break;
    case DType::f64: st = cast_from(a.as<double>(), n, to, o.data); break;
    case DType::s64: st = cast_from(a.as<std::int64_t>(), n, to, o.data); break;
    case DType::s32: st = cast_from(a.as<std::int32_t>(), n, to, o.data); break;
    case DType::s8: st = cast_from(a.as<std::int8_t>(), n, to, o.data); break;
    case DType::u8: case DType::boolean: st = cast_from(a.as<std::uint8_t>(), n, to, o.data); break;
    case DType::bf16: {
      std::vector<float> tmp(static_cast<std::size_t>(n));
      for (index_t i = 0; i < n; ++i) tmp[i] = bf16f(a.as<std::uint16_t>()[i]);
      st = cast_from(tmp.data(), n, to, o.data);
      break;
    }
    default: return bad(s, std::string("cast from ") + dtype_name(a.dt) + " is not supported natively");
  }
  return st ? Status::ok() : bad(s, st.message());
}

// Mod: fmod=1 -> C fmod (sign of the dividend); fmod=0 (integers) -> sign of the divisor, as Python.
template <class T>
void mod_loop(const T* a, const Shape& sa, const T* b, const Shape& sb, T* o, const Shape& so, bool cmod) {
  auto f = [cmod](T x, T y) -> T {
    if constexpr (std::is_floating_point<T>::value) {
      const T r = std::fmod(x, y);
      return (cmod || r == T(0) || ((r < 0) == (y < 0))) ? r : r + y;
    } else {
      if (y == 0) return 0;
      const T r = x % y;
      return (cmod || r == 0 || ((r < 0) == (y < 0))) ? r : static_cast<T>(r + y);
    }
  };
  const Shape* in[2] = {&sa, &sb};
  for_bcast<2>(so, in, [&](index_t base, const index_t* off, const index_t* last, index_t inner = 1) {
    if (!last) { o[0] = f(a[off[0]], b[off[1]]); return; }
    for (index_t j = 0; j < inner; ++j) o[base + j] = f(a[off[0] + j * last[0]], b[off[1] + j * last[1]]);
  });
}

Status mod_op(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  const Tensor& b = c.in(s, 1);
  Shape so;
  if (a.dt != b.dt || !broadcast_shape(a.shape, b.shape, &so)) return bad(s, "Mod needs same-typed broadcastable inputs");
  const bool cmod = s.i("fmod", 0) != 0;
  Tensor& o = c.out(s, 0, so, a.dt);
  switch (a.dt) {
    case DType::f32: mod_loop(a.as<float>(), a.shape, b.as<float>(), b.shape, o.as<float>(), so, cmod); break;
    case DType::f64: mod_loop(a.as<double>(), a.shape, b.as<double>(), b.shape, o.as<double>(), so, cmod); break;
    case DType::s64: mod_loop(a.as<std::int64_t>(), a.shape, b.as<std::int64_t>(), b.shape, o.as<std::int64_t>(), so, cmod); break;
    case DType::s32: mod_loop(a.as<std::int32_t>(), a.shape, b.as<std::int32_t>(), b.shape, o.as<std::int32_t>(), so, cmod); break;
    default: return bad(s, std::string("unsupported type ") + dtype_name(a.dt));
  }
  return Status::ok();
}

// Size: number of elements as an int64 scalar.
Status size_op(ExecCtx& c, const Step& s) {
  const index_t n = c.in(s, 0).numel();
  c.out(s, 0, {}, DType::s64).as<std::int64_t>()[0] = n;
  return Status::ok();
}

// LogSoftmax over the last axis (fp32).
Status log_softmax(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32 || x.shape.empty()) return bad(s, "needs a float32 tensor of rank >= 1");
  const index_t N = x.shape.back(), rows = N ? x.numel() / N : 0;
  float* y = c.out(s, 0, x.shape, DType::f32).as<float>();
  const float* xp = x.as<float>();
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = xp + r * N;
    float m = -INFINITY;
    for (index_t j = 0; j < N; ++j) m = std::max(m, xr[j]);
    double sum = 0.0;
    for (index_t j = 0; j < N; ++j) sum += std::exp(static_cast<double>(xr[j] - m));
    const float lse = m + static_cast<float>(std::log(sum));
    for (index_t j = 0; j < N; ++j) y[r * N + j] = xr[j] - lse;
  }
  return Status::ok();
}

}  // namespace

void register_eltwise_ops(std::map<std::string, OpFn>& r) {
  r["Add"] = &binary<Bin::add>;
  r["Sub"] = &binary<Bin::sub>;
  r["Mul"] = &binary<Bin::mul>;
  r["Div"] = &binary<Bin::div>;
  r["Pow"] = &pow_op;
  r["Max"] = &binary<Bin::max>;
  r["Min"] = &binary<Bin::min>;
  r["Equal"] = &binary<Bin::eq>;
  r["Less"] = &binary<Bin::lt>;
  r["Greater"] = &binary<Bin::gt>;
  r["LessOrEqual"] = &binary<Bin::le>;
  r["GreaterOrEqual"] = &binary<Bin::ge>;
  r["And"] = &binary<Bin::and_>;
  r["Or"] = &binary<Bin::or_>;
  r["Xor"] = &binary<Bin::xor_>;
  r["Sqrt"] = &unary<Un::sqrt>;
  r["Exp"] = &unary<Un::exp>;
  r["Log"] = &unary<Un::log>;
  r["Tanh"] = &unary<Un::tanh>;
  r["Erf"] = &unary<Un::erf>;
  r["Abs"] = &unary<Un::abs>;
  r["Neg"] = &unary<Un::neg>;
  r["Reciprocal"] = &unary<Un::recip>;
  r["Relu"] = &unary<Un::relu>;
  r["Sigmoid"] = &unary<Un::sigmoid>;
  r["Floor"] = &unary<Un::floor>;
  r["Ceil"] = &unary<Un::ceil>;
  r["Sin"] = &unary<Un::sin>;
  r["Cos"] = &unary<Un::cos>;
  r["Gelu"] = &unary<Un::gelu>;
  r["LeakyRelu"] = &unary<Un::leaky>;
  r["Softplus"] = &unary<Un::softplus>;
  r["Round"] = &unary<Un::round>;
  r["Not"] = &unary<Un::not_>;
  r["Copy"] = &unary<Un::identity>;
  r["Clip"] = &clip;
  r["Where"] = &where_op;
  r["Cast"] = &cast_op;
  r["Mod"] = &mod_op;
  r["Size"] = &size_op;
  r["LogSoftmax"] = &log_softmax;
}

}  // namespace graphopt::runtime
