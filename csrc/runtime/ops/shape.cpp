// Data-movement and shape ops: Reshape/Flatten/Squeeze/Unsqueeze/Identity
// (views, no copy), Transpose, Concat, Slice, Gather, Shape, Expand,
// ConstantOfShape, Range, Split.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../plan.h"

namespace graphopt::runtime {
namespace {

Shape strides_of(const Shape& s) {
  Shape st(s.size(), 1);
  for (std::size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// ---------------------------------------------------------------- views

Status reshape(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  std::vector<std::int64_t> want = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("shape") ? *s.iv("shape") : std::vector<std::int64_t>{});
  const bool allowzero = s.i("allowzero", 0) != 0;
  Shape out(want.size());
  index_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] == 0 && !allowzero) {
      if (i >= x.shape.size()) return bad(s, "shape entry 0 at axis " + std::to_string(i) + " beyond input rank");
      out[i] = x.shape[i];
    } else if (want[i] == -1) {
      if (infer >= 0) return bad(s, "more than one -1 in shape");
      infer = static_cast<int>(i);
      continue;
    } else out[i] = want[i];
    known *= out[i];
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known) return bad(s, "cannot reshape " + shape_str(x.shape) + " with -1 in target");
    out[infer] = x.numel() / known;
  }
  if (numel(out) != x.numel()) return bad(s, "cannot reshape " + shape_str(x.shape) + " to " + shape_str(out));
  c.alias(s, 0, x, out);
  return Status::ok();
}

Status flatten(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  std::int64_t axis = s.i("axis", 1);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return bad(s, "axis out of range");
  index_t a = 1, b = 1;
  for (std::int64_t i = 0; i < r; ++i) (i < axis ? a : b) *= x.shape[i];
  c.alias(s, 0, x, {a, b});
  return Status::ok();
}

Status squeeze(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  std::vector<std::int64_t> axes = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("axes") ? *s.iv("axes") : std::vector<std::int64_t>{});
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  std::vector<bool> drop(r, false);
  if (axes.empty()) {
    for (std::int64_t i = 0; i < r; ++i) drop[i] = x.shape[i] == 1;
  } else {
    for (auto a : axes) {
      if (!norm_axis(a, r)) return bad(s, "axis out of range");
      if (x.shape[a] != 1) return bad(s, "cannot squeeze axis " + std::to_string(a) + " of size " + std::to_string(x.shape[a]));
      drop[a] = true;
    }
  }
  Shape out;
  for (std::int64_t i = 0; i < r; ++i)
    if (!drop[i]) out.push_back(x.shape[i]);
  c.alias(s, 0, x, out);
  return Status::ok();
}

Status unsqueeze(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  std::vector<std::int64_t> axes = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("axes") ? *s.iv("axes") : std::vector<std::int64_t>{});
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size() + axes.size());
  std::vector<bool> ins(r, false);
  for (auto a : axes) {
    if (!norm_axis(a, r) || ins[a]) return bad(s, "bad axes");
    ins[a] = true;
  }
  Shape out;
  std::size_t k = 0;
  for (std::int64_t i = 0; i < r; ++i) out.push_back(ins[i] ? 1 : x.shape[k++]);
  c.alias(s, 0, x, out);
  return Status::ok();
}

Status identity(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  c.alias(s, 0, x, x.shape);
  return Status::ok();
}

// ---------------------------------------------------------------- copies

template <class T>
void transpose_t(const T* x, const Shape& xs, const std::vector<std::int64_t>& perm, T* y) {
  const std::size_t r = xs.size();
  const Shape xst = strides_of(xs);
  Shape ys(r), st(r);
  for (std::size_t i = 0; i < r; ++i) { ys[i] = xs[perm[i]]; st[i] = xst[perm[i]]; }
  const index_t n = numel(ys);
  if (n == 0) return;
  if (r == 0) { y[0] = x[0]; return; }
  const index_t inner = ys[r - 1], rows = n / inner, sl = st[r - 1];
#pragma omp parallel for schedule(static) if (n >= kParMin)
  for (index_t row = 0; row < rows; ++row) {
    index_t off = 0, rem = row;
    for (std::size_t d = r - 1; d-- > 0;) { off += (rem % ys[d]) * st[d]; rem /= ys[d]; }
    T* yo = y + row * inner;
    const T* xi = x + off;
    if (sl == 1) std::memcpy(yo, xi, static_cast<std::size_t>(inner) * sizeof(T));
    else for (index_t j = 0; j < inner; ++j) yo[j] = xi[j * sl];
  }
}

Status transpose(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const std::size_t r = x.shape.size();
  std::vector<std::int64_t> perm;
  if (s.iv("perm") && !s.iv("perm")->empty()) perm = *s.iv("perm");
  else for (std::size_t i = 0; i < r; ++i) perm.push_back(static_cast<std::int64_t>(r - 1 - i));
  if (perm.size() != r) return bad(s, "perm length " + std::to_string(perm.size()) + " != rank " + std::to_string(r));
  Shape ys(r);
  for (std::size_t i = 0; i < r; ++i) {
    if (perm[i] < 0 || perm[i] >= static_cast<std::int64_t>(r)) return bad(s, "bad perm");
    ys[i] = x.shape[perm[i]];
  }
  Tensor& y = c.out(s, 0, ys, x.dt);
  switch (dtype_size(x.dt)) {
    case 1: transpose_t(x.as<std::uint8_t>(), x.shape, perm, y.as<std::uint8_t>()); break;
    case 2: transpose_t(x.as<std::uint16_t>(), x.shape, perm, y.as<std::uint16_t>()); break;
    case 4: transpose_t(x.as<std::uint32_t>(), x.shape, perm, y.as<std::uint32_t>()); break;
    case 8: transpose_t(x.as<std::uint64_t>(), x.shape, perm, y.as<std::uint64_t>()); break;
    default: return bad(s, "unsupported type");
  }
  return Status::ok();
}

Status concat(ExecCtx& c, const Step& s) {
  const Tensor& x0 = c.in(s, 0);
  std::int64_t axis = s.i("axis", 0);
  const std::int64_t r = static_cast<std::int64_t>(x0.shape.size());
  if (!norm_axis(axis, r)) return bad(s, "axis out of range");
  Shape out = x0.shape;
  out[axis] = 0;
  for (std::size_t k = 0; k < s.in.size(); ++k) {
    const Tensor& x = c.in(s, k);
    if (x.shape.size() != x0.shape.size() || x.dt != x0.dt)
      return bad(s, "input " + std::to_string(k) + " is " + dtype_name(x.dt) + shape_str(x.shape) + ", input 0 is " +
                        dtype_name(x0.dt) + shape_str(x0.shape));
    for (std::int64_t d = 0; d < r; ++d)
      if (d != axis && x.shape[d] != x0.shape[d]) return bad(s, "shape mismatch: " + shape_str(x.shape) + " vs " + shape_str(x0.shape));
    out[axis] += x.shape[axis];
  }
  Tensor& y = c.out(s, 0, out, x0.dt);
  const std::size_t es = dtype_size(x0.dt);
  index_t outer = 1;
  for (std::int64_t d = 0; d < axis; ++d) outer *= out[d];
  const index_t inner = numel(out) / std::max<index_t>(outer, 1) / std::max<index_t>(out[axis], 1);
  auto* yp = y.as<std::uint8_t>();
  const std::size_t yrow = static_cast<std::size_t>(out[axis] * inner) * es;
  std::size_t off = 0;
  for (std::size_t k = 0; k < s.in.size(); ++k) {
    const Tensor& x = c.in(s, k);
    const std::size_t row = static_cast<std::size_t>(x.shape[axis] * inner) * es;
    for (index_t o = 0; o < outer; ++o) std::memcpy(yp + o * yrow + off, x.as<std::uint8_t>() + o * row, row);
    off += row;
  }
  return Status::ok();
}

Status slice(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  std::vector<std::int64_t> starts, ends, axes, steps;
  if (c.has(s, 1)) {
    starts = read_ints(c.in(s, 1));
    ends = read_ints(c.in(s, 2));
    if (c.has(s, 3)) axes = read_ints(c.in(s, 3));
    if (c.has(s, 4)) steps = read_ints(c.in(s, 4));
  } else {
    if (s.iv("starts")) starts = *s.iv("starts");
    if (s.iv("ends")) ends = *s.iv("ends");
    if (s.iv("axes")) axes = *s.iv("axes");
  }
  if (axes.empty()) for (std::size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<std::int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (starts.size() != ends.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return bad(s, "starts/ends/axes/steps lengths differ");
  Shape st(r, 0), stp(r, 1), out = x.shape;
  for (std::size_t k = 0; k < axes.size(); ++k) {
    std::int64_t a = axes[k];
    if (!norm_axis(a, r)) return bad(s, "axis out of range");
    const index_t dim = x.shape[a], step = steps[k];
    if (step == 0) return bad(s, "step 0");
    index_t b = starts[k], e = ends[k];
    if (b < 0) b += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      b = std::clamp<index_t>(b, 0, dim);
      e = std::clamp<index_t>(e, 0, dim);
      out[a] = e > b ? (e - b + step - 1) / step : 0;
    } else {
      b = std::clamp<index_t>(b, 0, dim - 1);
      e = std::clamp<index_t>(e, -1, dim - 1);
      out[a] = b > e ? (b - e + (-step) - 1) / (-step) : 0;
    }
    st[a] = b;
    stp[a] = step;
  }
  Tensor& y = c.out(s, 0, out, x.dt);
  const index_t n = numel(out);
  if (n == 0) return Status::ok();
  const std::size_t es = dtype_size(x.dt);
  const Shape xst = strides_of(x.shape);
  if (r == 0) { std::memcpy(y.data, x.data, es); return Status::ok(); }
  const index_t inner = out[r - 1], rows = n / inner;
  auto* yp = y.as<std::uint8_t>();
  const auto* xp = x.as<std::uint8_t>();
  for (index_t row = 0; row < rows; ++row) {
    index_t off = 0, rem = row;
    for (std::int64_t d = r - 1; d-- > 0;) { off += (st[d] + (rem % out[d]) * stp[d]) * xst[d]; rem /= out[d]; }
    off += st[r - 1];
    if (stp[r - 1] == 1) std::memcpy(yp + row * inner * es, xp + off * es, static_cast<std::size_t>(inner) * es);
    else
      for (index_t j = 0; j < inner; ++j) std::memcpy(yp + (row * inner + j) * es, xp + (off + j * stp[r - 1]) * es, es);
  }
  return Status::ok();
}

Status gather(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const Tensor& idx = c.in(s, 1);
  std::int64_t axis = s.i("axis", 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (!norm_axis(axis, r)) return bad(s, "axis out of range");
  if (idx.dt != DType::s64 && idx.dt != DType::s32) return bad(s, "indices must be int64/int32");
  Shape out(x.shape.begin(), x.shape.begin() + axis);
  out.insert(out.end(), idx.shape.begin(), idx.shape.end());
  out.insert(out.end(), x.shape.begin() + axis + 1, x.shape.end());
  const index_t dim = x.shape[axis];
  const std::vector<std::int64_t> ids = read_ints(idx);
  for (auto v : ids)
    if (v < -dim || v >= dim) return bad(s, "index " + std::to_string(v) + " out of range for axis of size " + std::to_string(dim));
  if (s.i("dequant", 0)) {
    // Rows of an int8 table with one scale per row (weight-only int8 embeddings): y = q[v, :] * scale[v].
    if (x.dt != DType::s8 || r != 2 || axis != 0 || !c.has(s, 2) || c.in(s, 2).numel() != dim)
      return bad(s, "dequantizing gather needs an int8 [rows, dim] table and one scale per row");
    const float* sc = c.in(s, 2).as<float>();
    const index_t inner = x.shape[1], ni = static_cast<index_t>(ids.size());
    Tensor& y = c.out(s, 0, out, DType::f32);
    float* yp = y.as<float>();
    const std::int8_t* xp = x.as<std::int8_t>();
    for (index_t j = 0; j < ni; ++j) {
      const index_t v = ids[j] < 0 ? ids[j] + dim : ids[j];
      const float f = sc[v];
      const std::int8_t* row = xp + v * inner;
      for (index_t d = 0; d < inner; ++d) yp[j * inner + d] = static_cast<float>(row[d]) * f;
    }
    return Status::ok();
  }
  Tensor& y = c.out(s, 0, out, x.dt);
  const std::size_t es = dtype_size(x.dt);
  index_t outer = 1, inner = 1;
  for (std::int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (std::int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d];
  const std::size_t blk = static_cast<std::size_t>(inner) * es;
  const index_t ni = static_cast<index_t>(ids.size());
  auto* yp = y.as<std::uint8_t>();
  const auto* xp = x.as<std::uint8_t>();
#pragma omp parallel for schedule(static) if (outer * ni * inner >= kParMin)
  for (index_t t = 0; t < outer * ni; ++t) {
    const index_t o = t / ni, j = t % ni;
    const index_t v = ids[j] < 0 ? ids[j] + dim : ids[j];
    std::memcpy(yp + t * blk, xp + (o * dim + v) * blk, blk);
  }
  return Status::ok();
}

Status shape_op(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  std::int64_t b = s.i("start", 0), e = s.i("end", r);
  if (b < 0) b += r;
  if (e < 0) e += r;
  b = std::clamp<std::int64_t>(b, 0, r);
  e = std::clamp<std::int64_t>(e, 0, r);
  const std::int64_t n = std::max<std::int64_t>(e - b, 0);
  Tensor& y = c.out(s, 0, {n}, DType::s64);
  for (std::int64_t i = 0; i < n; ++i) y.as<std::int64_t>()[i] = x.shape[b + i];
  return Status::ok();
}

template <class T>
void bcast_copy(const T* x, const Shape& xs, T* y, const Shape& ys) {
  const std::size_t r = ys.size();
  Shape st(r, 0);
  index_t acc = 1;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const std::size_t i = xs.size() - 1 - k;
    st[r - 1 - k] = xs[i] == 1 ? 0 : acc;
    acc *= xs[i];
  }
  const index_t n = numel(ys);
  if (n == 0) return;
  if (r == 0) { y[0] = x[0]; return; }
  const index_t inner = ys[r - 1], rows = n / inner, sl = st[r - 1];
#pragma omp parallel for schedule(static) if (n >= kParMin)
  for (index_t row = 0; row < rows; ++row) {
    index_t off = 0, rem = row;
    for (std::size_t d = r - 1; d-- > 0;) { off += (rem % ys[d]) * st[d]; rem /= ys[d]; }
    for (index_t j = 0; j < inner; ++j) y[row * inner + j] = x[off + j * sl];
  }
}

Status expand(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  const std::vector<std::int64_t> want = read_ints(c.in(s, 1));
  Shape out;
  if (!broadcast_shape(x.shape, Shape(want.begin(), want.end()), &out))
    return bad(s, "cannot expand " + shape_str(x.shape) + " to " + shape_str(Shape(want.begin(), want.end())));
  Tensor& y = c.out(s, 0, out, x.dt);
  switch (dtype_size(x.dt)) {
    case 1: bcast_copy(x.as<std::uint8_t>(), x.shape, y.as<std::uint8_t>(), out); break;
    case 2: bcast_copy(x.as<std::uint16_t>(), x.shape, y.as<std::uint16_t>(), out); break;
    case 4: bcast_copy(x.as<std::uint32_t>(), x.shape, y.as<std::uint32_t>(), out); break;
    case 8: bcast_copy(x.as<std::uint64_t>(), x.shape, y.as<std::uint64_t>(), out); break;
    default: return bad(s, "unsupported type");
  }
  return Status::ok();
}

Status constant_of_shape(ExecCtx& c, const Step& s) {
  const std::vector<std::int64_t> want = c.has(s, 0) ? read_ints(c.in(s, 0)) : std::vector<std::int64_t>{};
  const DType dt = static_cast<DType>(s.i("dtype", 1));
  const double v = s.f("value", 0.0);
  Tensor& y = c.out(s, 0, Shape(want.begin(), want.end()), dt);
  const index_t n = y.numel();
  switch (dt) {
    case DType::f32: std::fill_n(y.as<float>(), n, static_cast<float>(v)); break;
    case DType::f64: std::fill_n(y.as<double>(), n, v); break;
    case DType::s64: std::fill_n(y.as<std::int64_t>(), n, static_cast<std::int64_t>(v)); break;
    case DType::s32: std::fill_n(y.as<std::int32_t>(), n, static_cast<std::int32_t>(v)); break;
    case DType::boolean: case DType::u8: std::fill_n(y.as<std::uint8_t>(), n, static_cast<std::uint8_t>(v)); break;
    case DType::s8: std::fill_n(y.as<std::int8_t>(), n, static_cast<std::int8_t>(v)); break;
    default: return bad(s, "unsupported type");
  }
  return Status::ok();
}

Status range(ExecCtx& c, const Step& s) {
  const Tensor& a = c.in(s, 0);
  if (a.dt == DType::f32) {
    const float b = a.as<float>()[0], e = c.in(s, 1).as<float>()[0], d = c.in(s, 2).as<float>()[0];
    if (d == 0.f) return bad(s, "delta 0");
    const index_t n = std::max<index_t>(static_cast<index_t>(std::ceil((e - b) / d)), 0);
    float* y = c.out(s, 0, {n}, DType::f32).as<float>();
    for (index_t i = 0; i < n; ++i) y[i] = b + static_cast<float>(i) * d;
    return Status::ok();
  }
  const std::int64_t b = read_ints(a)[0], e = read_ints(c.in(s, 1))[0], d = read_ints(c.in(s, 2))[0];
  if (d == 0) return bad(s, "delta 0");
  const index_t n = std::max<index_t>(d > 0 ? (e - b + d - 1) / d : (b - e + (-d) - 1) / (-d), 0);
  Tensor& y = c.out(s, 0, {n}, a.dt);
  for (index_t i = 0; i < n; ++i) {
    if (a.dt == DType::s64) y.as<std::int64_t>()[i] = b + i * d;
    else y.as<std::int32_t>()[i] = static_cast<std::int32_t>(b + i * d);
  }
  return Status::ok();
}

Status split(ExecCtx& c, const Step& s) {
  const Tensor& x = c.in(s, 0);
  std::int64_t axis = s.i("axis", 0);
  const std::int64_t r = static_cast<std::int64_t>(x.shape.size());
  if (!norm_axis(axis, r)) return bad(s, "axis out of range");
  std::vector<std::int64_t> parts = c.has(s, 1) ? read_ints(c.in(s, 1)) : (s.iv("split") ? *s.iv("split") : std::vector<std::int64_t>{});
  const std::size_t no = s.out.size();
  if (parts.empty()) {
    const index_t dim = x.shape[axis], each = (dim + static_cast<index_t>(no) - 1) / static_cast<index_t>(no);
    for (std::size_t k = 0; k < no; ++k) parts.push_back(std::min<index_t>(each, dim - each * static_cast<index_t>(k)));
  }
  if (parts.size() != no) return bad(s, "split sizes do not match the number of outputs");
  index_t outer = 1, inner = 1;
  for (std::int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (std::int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d];
  const std::size_t es = dtype_size(x.dt);
  index_t off = 0;
  for (std::size_t k = 0; k < no; ++k) {
    Shape os = x.shape;
    os[axis] = parts[k];
    Tensor& y = c.out(s, k, os, x.dt);
    const std::size_t row = static_cast<std::size_t>(parts[k] * inner) * es;
    for (index_t o = 0; o < outer; ++o)
      std::memcpy(y.as<std::uint8_t>() + o * row, x.as<std::uint8_t>() + (o * x.shape[axis] + off) * inner * es, row);
    off += parts[k];
  }
  return Status::ok();
}

}  // namespace

void register_shape_ops(std::map<std::string, OpFn>& r) {
  r["Reshape"] = &reshape;
  r["Flatten"] = &flatten;
  r["Squeeze"] = &squeeze;
  r["Unsqueeze"] = &unsqueeze;
  r["Identity"] = &identity;
  r["Transpose"] = &transpose;
  r["Concat"] = &concat;
  r["Slice"] = &slice;
  r["Gather"] = &gather;
  r["Shape"] = &shape_op;
  r["Expand"] = &expand;
  r["ConstantOfShape"] = &constant_of_shape;
  r["Range"] = &range;
  r["Split"] = &split;
}

}  // namespace graphopt::runtime
