// Index and small element-wise ops the zoo's position/mask/bucket subgraphs need:
// CumSum, GatherElements, GatherND, Pad (constant/reflect/edge/wrap), Tile,
// Sign, HardSigmoid, HardSwish, and Abs/Neg/Clip on integer tensors
// ("IntAbs", "IntNeg", "IntClip": the fp32 kinds keep their vectorised loops).
// All are shape-generic and dtype-generic where ONNX allows it; data movement
// works on element sizes, arithmetic dispatches on the element type.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../plan.h"

namespace graphopt::runtime {
namespace {

Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (std::size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

bool is_int_index(DType d) { return d == DType::s64 || d == DType::s32; }

std::int64_t index_at(const Tensor& t, index_t i) {
  return t.dt == DType::s64 ? t.as<std::int64_t>()[i] : t.as<std::int32_t>()[i];
}

// Calls f.template operator()<T>() for the numeric element type of d; false if d is not numeric.
template <class F>
bool dispatch_num(DType d, F&& f) {
  switch (d) {
    case DType::f32: f(float{}); return true;
    case DType::f64: f(double{}); return true;
    case DType::s8: f(std::int8_t{}); return true;
    case DType::u8: f(std::uint8_t{}); return true;
    case DType::s16: f(std::int16_t{}); return true;
    case DType::u16: f(std::uint16_t{}); return true;
    case DType::s32: f(std::int32_t{}); return true;
    case DType::u32: f(std::uint32_t{}); return true;
    case DType::s64: f(std::int64_t{}); return true;
    case DType::u64: f(std::uint64_t{}); return true;
    default: return false;
  }
}

// ---------------------------------------------------------------- CumSum

Status cumsum(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (!c.has(s, 1) || c.in(s, 1).numel() != 1 || !is_int_index(c.in(s, 1).dt))
    return bad(s, "axis must be a one-element int32/int64 tensor");
  std::int64_t axis = index_at(c.in(s, 1), 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (!norm_axis(axis, r)) return bad(s, "axis " + std::to_string(index_at(c.in(s, 1), 0)) + " out of range for rank " + std::to_string(r));
  const bool excl = s.i("exclusive", 0) != 0, rev = s.i("reverse", 0) != 0;
  index_t outer = 1, inner = 1;
  for (std::int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
  for (std::int64_t i = axis + 1; i < r; ++i) inner *= x.shape[i];
  const index_t len = x.shape[axis];
  Tensor& y = c.out(s, 0, x.shape, x.dt);
  const bool ok = dispatch_num(x.dt, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.as<T>();
    T* yp = y.as<T>();
    for (index_t o = 0; o < outer; ++o)
      for (index_t in = 0; in < inner; ++in) {
        T acc = T(0);
        for (index_t k = 0; k < len; ++k) {
          const index_t j = rev ? len - 1 - k : k;
          const index_t off = (o * len + j) * inner + in;
          if (excl) { yp[off] = acc; acc = static_cast<T>(acc + xp[off]); }
          else { acc = static_cast<T>(acc + xp[off]); yp[off] = acc; }
        }
      }
  });
  return ok ? Status::ok() : bad(s, std::string("unsupported type ") + dtype_name(x.dt));
}

// ---------------------------------------------------------------- GatherElements

Status gather_elements(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& idx = c.in(s, 1);
  if (!is_int_index(idx.dt)) return bad(s, "indices must be int32/int64");
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (static_cast<std::int64_t>(idx.shape.size()) != r)
    return bad(s, "indices rank " + std::to_string(idx.shape.size()) + " != data rank " + std::to_string(r));
  std::int64_t axis = s.i("axis", 0);
  if (!norm_axis(axis, r)) return bad(s, "axis out of range");
  for (std::int64_t d = 0; d < r; ++d)
    if (d != axis && idx.shape[d] > x.shape[d])
      return bad(s, "indices shape " + shape_str(idx.shape) + " exceeds data shape " + shape_str(x.shape) + " off the axis");
  const std::size_t es = dtype_size(x.dt);
  Tensor& y = c.out(s, 0, idx.shape, x.dt);
  const index_t n = idx.numel();
  if (n == 0) return Status::ok();
  const Shape xst = strides_of(x.shape), ist = strides_of(idx.shape);
  const index_t dim = x.shape[axis];
  const auto* xp = static_cast<const std::uint8_t*>(x.data);
  auto* yp = static_cast<std::uint8_t*>(y.data);
  for (index_t i = 0; i < n; ++i) {
    std::int64_t k = index_at(idx, i);
    if (k < -dim || k >= dim) return bad(s, "index " + std::to_string(k) + " out of range [" + std::to_string(-dim) + ", " + std::to_string(dim) + ")");
    if (k < 0) k += dim;
    index_t off = 0, rem = i;
    for (std::int64_t d = 0; d < r; ++d) {
      const index_t id = rem / ist[d];
      rem %= ist[d];
      off += (d == axis ? k : id) * xst[d];
    }
    std::memcpy(yp + i * es, xp + off * es, es);
  }
  return Status::ok();
}

// ---------------------------------------------------------------- GatherND

Status gather_nd(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& idx = c.in(s, 1);
  if (!is_int_index(idx.dt)) return bad(s, "indices must be int32/int64");
  const std::int64_t b = s.i("batch_dims", 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size()), q = static_cast<std::int64_t>(idx.shape.size());
  if (q < 1 || b < 0 || b >= std::min(r, q)) return bad(s, "batch_dims " + std::to_string(b) + " must be below both ranks");
  const std::int64_t m = idx.shape[q - 1];
  if (m < 1 || m > r - b) return bad(s, "indices last dim " + std::to_string(m) + " must be in [1, " + std::to_string(r - b) + "]");
  for (std::int64_t d = 0; d < b; ++d)
    if (x.shape[d] != idx.shape[d]) return bad(s, "batch dims of data " + shape_str(x.shape) + " and indices " + shape_str(idx.shape) + " differ");
  Shape ys(idx.shape.begin(), idx.shape.end() - 1);
  for (std::int64_t d = b + m; d < r; ++d) ys.push_back(x.shape[d]);
  Tensor& y = c.out(s, 0, ys, x.dt);
  const std::size_t es = dtype_size(x.dt);
  index_t batch = 1, slice = 1;
  for (std::int64_t d = 0; d < b; ++d) batch *= x.shape[d];
  for (std::int64_t d = b + m; d < r; ++d) slice *= x.shape[d];
  index_t per_batch_idx = 1;  // index tuples per batch entry
  for (std::int64_t d = b; d < q - 1; ++d) per_batch_idx *= idx.shape[d];
  index_t xbatch = 1;  // data elements per batch entry
  for (std::int64_t d = b; d < r; ++d) xbatch *= x.shape[d];
  const Shape xst = strides_of(x.shape);
  const auto* xp = static_cast<const std::uint8_t*>(x.data);
  auto* yp = static_cast<std::uint8_t*>(y.data);
  const std::size_t sbytes = static_cast<std::size_t>(slice) * es;
  for (index_t bi = 0; bi < batch; ++bi)
    for (index_t t = 0; t < per_batch_idx; ++t) {
      const index_t row = bi * per_batch_idx + t;
      index_t off = bi * xbatch;
      for (std::int64_t j = 0; j < m; ++j) {
        const index_t dim = x.shape[b + j];
        std::int64_t k = index_at(idx, row * m + j);
        if (k < -dim || k >= dim) return bad(s, "index " + std::to_string(k) + " out of range for data dim " + std::to_string(b + j) + " of size " + std::to_string(dim));
        if (k < 0) k += dim;
        off += k * xst[b + j];
      }
      if (sbytes) std::memcpy(yp + row * sbytes, xp + off * es, sbytes);
    }
  return Status::ok();
}

// ---------------------------------------------------------------- Tile

Status tile(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& rp = c.in(s, 1);
  if (!is_int_index(rp.dt)) return bad(s, "repeats must be int64");
  const std::vector<std::int64_t> rep = read_ints(rp);
  const std::size_t r = x.shape.size();
  if (rep.size() != r) return bad(s, "repeats has " + std::to_string(rep.size()) + " entries for rank " + std::to_string(r));
  Shape ys(r);
  for (std::size_t d = 0; d < r; ++d) {
    if (rep[d] < 0) return bad(s, "negative repeat " + std::to_string(rep[d]));
    ys[d] = x.shape[d] * rep[d];
  }
  Tensor& y = c.out(s, 0, ys, x.dt);
  const index_t n = numel(ys);
  if (n == 0) return Status::ok();
  const std::size_t es = dtype_size(x.dt);
  const Shape xst = strides_of(x.shape);
  const auto* xp = static_cast<const std::uint8_t*>(x.data);
  auto* yp = static_cast<std::uint8_t*>(y.data);
  if (r == 0) { std::memcpy(yp, xp, es); return Status::ok(); }
  const index_t inner = ys[r - 1], rows = n / inner, xin = x.shape[r - 1];
  for (index_t row = 0; row < rows; ++row) {
    index_t off = 0, rem = row;
    for (std::size_t d = r - 1; d-- > 0;) { off += ((rem % ys[d]) % x.shape[d]) * xst[d]; rem /= ys[d]; }
    std::uint8_t* yo = yp + row * inner * es;
    for (index_t k = 0; k < rep[r - 1]; ++k) std::memcpy(yo + k * xin * es, xp + off * es, static_cast<std::size_t>(xin) * es);
  }
  return Status::ok();
}

// ---------------------------------------------------------------- Pad

// Source coordinate for output coordinate o in a dim of size n padded by `lo` before; -1 = constant.
index_t pad_src(index_t o, index_t lo, index_t n, int mode) {
  index_t i = o - lo;
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case 0: return -1;  // constant
    case 1: {           // reflect (edge not repeated)
      if (n == 1) return 0;
      const index_t p = 2 * (n - 1);
      i %= p;
      if (i < 0) i += p;
      return i < n ? i : p - i;
    }
    case 2: return i < 0 ? 0 : n - 1;  // edge
    default: {                          // wrap
      i %= n;
      return i < 0 ? i + n : i;
    }
  }
}

Status pad(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  const int mode = static_cast<int>(s.i("mode", 0));
  std::vector<std::int64_t> pads = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("pads") ? *s.iv("pads") : std::vector<std::int64_t>{});
  std::vector<std::int64_t> axes;
  if (c.has(s, 3)) axes = read_ints(c.in(s, 3));
  else for (std::int64_t d = 0; d < r; ++d) axes.push_back(d);
  if (pads.size() != 2 * axes.size())
    return bad(s, "pads has " + std::to_string(pads.size()) + " entries for " + std::to_string(axes.size()) + " axes");
  std::vector<std::int64_t> lo(r, 0), hi(r, 0);
  const std::size_t na = axes.size();
  for (std::size_t k = 0; k < na; ++k) {
    std::int64_t a = axes[k];
    if (!norm_axis(a, r)) return bad(s, "pad axis " + std::to_string(axes[k]) + " out of range");
    lo[a] = pads[k];
    hi[a] = pads[k + na];
  }
  Shape ys(r);
  for (std::int64_t d = 0; d < r; ++d) {
    ys[d] = x.shape[d] + lo[d] + hi[d];
    if (ys[d] < 0) return bad(s, "pads give a negative size on axis " + std::to_string(d));
    if (mode != 0 && x.shape[d] == 0 && ys[d] > 0) return bad(s, "cannot pad an empty axis in a non-constant mode");
  }
  Tensor& y = c.out(s, 0, ys, x.dt);
  const index_t n = numel(ys);
  if (n == 0) return Status::ok();
  const std::size_t es = dtype_size(x.dt);
  // the constant as bytes of the element type
  std::uint8_t cval[8] = {};
  if (c.has(s, 2) && c.in(s, 2).numel() > 0) {
    const Tensor& cv = c.in(s, 2);
    if (cv.dt != x.dt) return bad(s, "constant_value type differs from the data type");
    std::memcpy(cval, cv.data, es);
  }
  const Shape xst = strides_of(x.shape);
  const auto* xp = static_cast<const std::uint8_t*>(x.data);
  auto* yp = static_cast<std::uint8_t*>(y.data);
  if (r == 0) { std::memcpy(yp, xp, es); return Status::ok(); }
  const index_t inner = ys[r - 1], rows = n / inner;
  for (index_t row = 0; row < rows; ++row) {
    index_t off = 0, rem = row;
    bool constant = false;
    for (std::int64_t d = r - 1; d-- > 0;) {
      const index_t o = rem % ys[d];
      rem /= ys[d];
      const index_t src = pad_src(o, lo[d], x.shape[d], mode);
      if (src < 0) constant = true;
      else off += src * xst[d];
    }
    std::uint8_t* yo = yp + row * inner * es;
    for (index_t j = 0; j < inner; ++j) {
      const index_t src = constant ? -1 : pad_src(j, lo[r - 1], x.shape[r - 1], mode);
      std::memcpy(yo + j * es, src < 0 ? cval : xp + (off + src) * es, es);
    }
  }
  return Status::ok();
}

// ---------------------------------------------------------------- element-wise

template <class T>
T sign_of(T v) {
  if constexpr (std::is_unsigned_v<T>) return v > 0 ? T(1) : T(0);
  else return v > 0 ? T(1) : v < 0 ? T(-1) : T(0);  // NaN -> 0 as onnxruntime... NaN compares false
}

Status sign_op(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  Tensor& y = c.out(s, 0, x.shape, x.dt);
  const index_t n = x.numel();
  const bool ok = dispatch_num(x.dt, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.as<T>();
    T* yp = y.as<T>();
    for (index_t i = 0; i < n; ++i) {
      if constexpr (std::is_floating_point_v<T>) yp[i] = xp[i] != xp[i] ? xp[i] : sign_of(xp[i]);
      else yp[i] = sign_of(xp[i]);
    }
  });
  return ok ? Status::ok() : bad(s, std::string("unsupported type ") + dtype_name(x.dt));
}

template <bool NEG>
Status int_abs_neg(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  Tensor& y = c.out(s, 0, x.shape, x.dt);
  const index_t n = x.numel();
  const bool ok = dispatch_num(x.dt, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.as<T>();
    T* yp = y.as<T>();
    for (index_t i = 0; i < n; ++i) {
      if constexpr (std::is_unsigned_v<T>) yp[i] = NEG ? static_cast<T>(T(0) - xp[i]) : xp[i];
      else if constexpr (NEG) yp[i] = static_cast<T>(-xp[i]);
      else yp[i] = xp[i] < 0 ? static_cast<T>(-xp[i]) : xp[i];
    }
  });
  return ok ? Status::ok() : bad(s, std::string("unsupported type ") + dtype_name(x.dt));
}

Status int_clip(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  for (std::size_t k = 1; k < 3; ++k)
    if (c.has(s, k) && (c.in(s, k).dt != x.dt || c.in(s, k).numel() != 1))
      return bad(s, std::string(k == 1 ? "min" : "max") + " must be a one-element tensor of the input type");
  Tensor& y = c.out(s, 0, x.shape, x.dt);
  const index_t n = x.numel();
  const bool ok = dispatch_num(x.dt, [&](auto tag) {
    using T = decltype(tag);
    const T lo = c.has(s, 1) ? c.in(s, 1).as<T>()[0] : std::numeric_limits<T>::lowest();
    const T hi = c.has(s, 2) ? c.in(s, 2).as<T>()[0] : std::numeric_limits<T>::max();
    const T* xp = x.as<T>();
    T* yp = y.as<T>();
    for (index_t i = 0; i < n; ++i) yp[i] = std::min(std::max(xp[i], lo), hi);  // min > max gives max
  });
  return ok ? Status::ok() : bad(s, std::string("unsupported type ") + dtype_name(x.dt));
}

// HardSigmoid: max(0, min(1, alpha*x + beta)); HardSwish: x * HardSigmoid(x; 1/6, 1/2).
template <bool SWISH>
Status hard(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  if (x.dt != DType::f32) return bad(s, std::string("needs float32, got ") + dtype_name(x.dt));
  const float alpha = SWISH ? 1.f / 6.f : static_cast<float>(s.f("alpha", 0.2));
  const float beta = SWISH ? 0.5f : static_cast<float>(s.f("beta", 0.5));
  const float* xp = x.as<float>();
  float* yp = c.out(s, 0, x.shape, DType::f32).as<float>();
  const index_t n = x.numel();
#pragma omp parallel for schedule(static) if (n >= kParMin)
  for (index_t i = 0; i < n; ++i) {
    const float v = xp[i];
    const float h = std::fmax(0.f, std::fmin(1.f, alpha * v + beta));
    yp[i] = SWISH ? v * h : (v != v ? v : h);
  }
  return Status::ok();
}

}  // namespace

void register_index_ops(std::map<std::string, OpFn>& r) {
  r["CumSum"] = &cumsum;
  r["GatherElements"] = &gather_elements;
  r["GatherND"] = &gather_nd;
  r["Tile"] = &tile;
  r["Pad"] = &pad;
  r["Sign"] = &sign_op;
  r["IntAbs"] = &int_abs_neg<false>;
  r["IntNeg"] = &int_abs_neg<true>;
  r["IntClip"] = &int_clip;
  r["HardSigmoid"] = &hard<false>;
  r["HardSwish"] = &hard<true>;
}

}  // namespace graphopt::runtime
