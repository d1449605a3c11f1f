// Plan construction, the arena allocator and the run loop.
#include "plan.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>

namespace graphopt::runtime {

void register_eltwise_ops(std::map<std::string, OpFn>& r);  // ops/eltwise.cpp
void register_shape_ops(std::map<std::string, OpFn>& r);    // ops/shape.cpp
void register_nn_ops(std::map<std::string, OpFn>& r);       // ops/nn.cpp
void register_cnn_ops(std::map<std::string, OpFn>& r);      // ops/cnn.cpp
void register_decoder_ops(std::map<std::string, OpFn>& r);  // ops/decoder.cpp
void register_index_ops(std::map<std::string, OpFn>& r);    // ops/index.cpp
void register_int4_ops(std::map<std::string, OpFn>& r);     // ops/int4.cpp
void register_depthwise_ops(std::map<std::string, OpFn>& r);  // ops/depthwise.cpp

namespace {
const std::map<std::string, OpFn>& registry() {
  static const std::map<std::string, OpFn> r = [] {
    std::map<std::string, OpFn> m;
    register_eltwise_ops(m);
    register_shape_ops(m);
    register_nn_ops(m);
    register_cnn_ops(m);
    register_decoder_ops(m);
    register_index_ops(m);
    register_int4_ops(m);
    register_depthwise_ops(m);
    return m;
  }();
  return r;
}
constexpr std::size_t kAlign = 64;
std::size_t round_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
alignas(64) std::uint8_t g_empty[64];
}  // namespace

OpFn find_op(const std::string& kind) {
  auto it = registry().find(kind);
  return it == registry().end() ? nullptr : it->second;
}

std::vector<std::string> op_kinds() {
  std::vector<std::string> v;
  for (auto& kv : registry()) v.push_back(kv.first);
  return v;
}

// ---------------------------------------------------------------- small helpers

std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: case DType::s32: case DType::u32: return 4;
    case DType::u8: case DType::s8: case DType::boolean: return 1;
    case DType::u16: case DType::s16: case DType::f16: case DType::bf16: return 2;
    case DType::s64: case DType::f64: case DType::u64: return 8;
    default: return 0;
  }
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::u8: return "uint8";
    case DType::s8: return "int8";
    case DType::u16: return "uint16";
    case DType::s16: return "int16";
    case DType::s32: return "int32";
    case DType::s64: return "int64";
    case DType::boolean: return "bool";
    case DType::f16: return "float16";
    case DType::f64: return "float64";
    case DType::u32: return "uint32";
    case DType::u64: return "uint64";
    case DType::bf16: return "bfloat16";
    default: return "undefined";
  }
}

index_t numel(const Shape& s) {
  index_t n = 1;
  for (index_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? "," : "") << s[i];
  o << "]";
  return o.str();
}

std::int64_t Step::i(const char* k, std::int64_t d) const {
  auto it = ia.find(k);
  return it == ia.end() || it->second.empty() ? d : it->second[0];
}
const std::vector<std::int64_t>* Step::iv(const char* k) const {
  auto it = ia.find(k);
  return it == ia.end() ? nullptr : &it->second;
}
double Step::f(const char* k, double d) const {
  auto it = fa.find(k);
  return it == fa.end() || it->second.empty() ? d : it->second[0];
}

Status bad(const Step& s, const std::string& msg) {
  return Status::invalid(s.kind + " '" + s.name + "': " + msg);
}

bool norm_axis(std::int64_t& axis, std::int64_t r) {
  if (axis < 0) axis += r;
  return axis >= 0 && axis < r;
}

bool broadcast_shape(const Shape& a, const Shape& b, Shape* out) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape o(r);
  for (std::size_t i = 0; i < r; ++i) {
    const index_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const index_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) o[i] = da;
    else if (da == 1) o[i] = db;
    else return false;
  }
  *out = std::move(o);
  return true;
}

std::vector<std::int64_t> read_ints(const Tensor& t) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(t.numel()));
  if (t.dt == DType::s64) std::memcpy(v.data(), t.data, v.size() * 8);
  else if (t.dt == DType::s32)
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = t.as<std::int32_t>()[i];
  return v;
}

// ---------------------------------------------------------------- allocator

void OffsetAllocator::reset() {
  free_.clear();
  top_ = peak_ = 0;
}

std::size_t OffsetAllocator::alloc(std::size_t bytes) {
  bytes = round_up(bytes);
  // Best fit among holes keeps fragmentation low for the few dozen live tensors we hold.
  std::size_t best = free_.size();
  for (std::size_t i = 0; i < free_.size(); ++i)
    if (free_[i].second >= bytes && (best == free_.size() || free_[i].second < free_[best].second)) best = i;
  if (best < free_.size()) {
    const std::size_t off = free_[best].first;
    if (free_[best].second == bytes) free_.erase(free_.begin() + best);
    else { free_[best].first += bytes; free_[best].second -= bytes; }
    return off;
  }
  // Grow from the top, absorbing a hole that touches it.
  if (!free_.empty() && free_.back().first + free_.back().second == top_) {
    top_ = free_.back().first;
    free_.pop_back();
  }
  const std::size_t off = top_;
  top_ += bytes;
  peak_ = std::max(peak_, top_);
  return off;
}

void OffsetAllocator::free(std::size_t off, std::size_t bytes) {
  bytes = round_up(bytes);
  auto it = std::lower_bound(free_.begin(), free_.end(), std::make_pair(off, std::size_t(0)));
  it = free_.insert(it, {off, bytes});
  // Coalesce with the next and the previous hole.
  if (it + 1 != free_.end() && it->first + it->second == (it + 1)->first) {
    it->second += (it + 1)->second;
    free_.erase(it + 1);
  }
  if (it != free_.begin() && (it - 1)->first + (it - 1)->second == it->first) {
    (it - 1)->second += it->second;
    it = free_.erase(it) - 1;
  }
  if (it->first + it->second == top_) {
    top_ = it->first;
    free_.erase(it);
  }
}

// ---------------------------------------------------------------- ExecCtx

Tensor& ExecCtx::out(const Step& s, std::size_t i, const Shape& shape, DType dt) {
  const int slot = s.out[i];
  Tensor& t = t_[slot];
  t.shape = shape;
  t.dt = dt;
  const std::size_t bytes = t.nbytes();
  if (bytes == 0) {
    t.data = g_empty;
    return t;
  }
  const std::size_t off = alloc_.alloc(bytes);
  block_[slot] = {off, bytes};
  if (off + round_up(bytes) <= cap_) {
    t.data = arena_ + off;
  } else {
    // First run with a larger signature: spill to the heap; the next run's arena covers it.
    spill.emplace_back(new std::uint8_t[bytes + kAlign]);
    auto p = reinterpret_cast<std::uintptr_t>(spill.back().get());
    t.data = reinterpret_cast<void*>((p + kAlign - 1) / kAlign * kAlign);
  }
  if (plan_.poison) std::memset(t.data, 0xFF, bytes);
  return t;
}

Tensor& ExecCtx::alias(const Step& s, std::size_t i, const Tensor& src, const Shape& shape) {
  Tensor& t = t_[s.out[i]];
  t.data = src.data;
  t.dt = src.dt;
  t.shape = shape;
  return t;
}

void ExecCtx::drop_const_pages(const Step& s, std::size_t i) const {
  if (!has(s, i) || !plan_.slots_[s.in[i]].droppable) return;
  const Tensor& t = plan_.const_tensors_[s.in[i]];
  const long page = sysconf(_SC_PAGESIZE);
  if (page <= 0 || t.nbytes() < static_cast<std::size_t>(page)) return;
  // Whole pages around the tensor: a shared read-only file mapping loses nothing (a later read of any
  // of them faults it back in from the page cache). Advisory: a failure changes nothing.
  const auto lo = reinterpret_cast<std::uintptr_t>(t.data) / page * page;
  const auto hi = reinterpret_cast<std::uintptr_t>(t.data) + t.nbytes();
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

void ExecCtx::release(int slot) {
  auto& b = block_[slot];
  if (b.second) {
    alloc_.free(b.first, b.second);
    b = {0, 0};
  }
}

// ---------------------------------------------------------------- Plan

int Plan::add_slot(DType dt, const std::string& name) {
  slots_.push_back({dt, false, name});
  const_tensors_.emplace_back();
  return static_cast<int>(slots_.size()) - 1;
}

void Plan::set_const(int slot, const void* data, const Shape& shape, DType dt) {
  Tensor t;
  t.shape = shape;
  t.dt = dt;
  auto buf = std::make_shared<kernels::AlignedBuffer>(std::max<std::size_t>(t.nbytes(), 1));
  if (t.nbytes()) std::memcpy(buf->data(), data, t.nbytes());
  t.data = buf->data();
  const_store_.push_back(buf);
  const_tensors_[slot] = t;
  slots_[slot].is_const = true;
  slots_[slot].dt = dt;
}

void Plan::set_const_ref(int slot, const void* data, const Shape& shape, DType dt, std::shared_ptr<void> owner,
                         bool droppable) {
  Tensor t;
  t.shape = shape;
  t.dt = dt;
  t.data = const_cast<void*>(data);
  const_refs_.push_back(std::move(owner));
  const_tensors_[slot] = t;
  slots_[slot].is_const = true;
  slots_[slot].droppable = droppable;
  slots_[slot].dt = dt;
}

int Plan::add_step(Step step) {
  if (!step.custom && !step.fn) step.fn = find_op(step.kind);
  steps_.push_back(std::move(step));
  return static_cast<int>(steps_.size()) - 1;
}

void Plan::set_io(std::vector<int> inputs, std::vector<int> outputs) {
  inputs_ = std::move(inputs);
  outputs_ = std::move(outputs);
}

std::size_t Plan::const_bytes() const {
  std::size_t n = 0;
  for (auto& b : const_store_) n += b->size();
  return n;
}

std::size_t Plan::packed_bytes() const {
  std::size_t n = 0;
  for (auto& s : steps_) {
    for (auto& p : s.packed) n += p ? p->nbytes() : 0;
    n += s.state_bytes;
  }
  return n;
}

std::map<std::string, std::size_t> Plan::peak_by_signature() const { return sig_peak_; }

Status Plan::run(const std::vector<Tensor>& inputs, const std::function<void(int, const Tensor&)>& emit) {
  std::lock_guard<ForkSafeMutex> lock(mu_);
  if (inputs.size() != inputs_.size())
    return Status::invalid("plan expects " + std::to_string(inputs_.size()) + " inputs, got " + std::to_string(inputs.size()));
  std::string sig;
  for (const Tensor& t : inputs) sig += shape_str(t.shape) + dtype_name(t.dt) + ";";
  auto known = sig_peak_.find(sig);
  if (known != sig_peak_.end() && arena_.size() < known->second) arena_ = kernels::AlignedBuffer(known->second);

  std::vector<Tensor> t(slots_.size());
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].is_const) t[i] = const_tensors_[i];
  for (std::size_t k = 0; k < inputs.size(); ++k) t[inputs_[k]] = inputs[k];

  ExecCtx ctx(*this, t, arena_.data(), arena_.size());
  if (profile) step_us.assign(steps_.size(), 0.0);
  for (std::size_t si = 0; si < steps_.size(); ++si) {
    const Step& s = steps_[si];
    const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    Status st = s.custom ? s.custom(ctx, s) : (s.fn ? s.fn(ctx, s) : bad(s, "no kernel registered for this kind"));
    if (!st) {
      const std::string& m = st.message();
      const std::string pre = s.kind + " '" + s.name + "'";
      return m.compare(0, pre.size(), pre) == 0 ? st : Status::invalid(pre + ": " + m);
    }
    if (profile)
      step_us[si] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    for (int f : s.free_after) ctx.release(f);
  }
  last_peak_ = ctx.peak();
  sig_peak_[sig] = last_peak_;
  for (std::size_t k = 0; k < outputs_.size(); ++k) emit(static_cast<int>(k), t[outputs_[k]]);
  // Grow only after the outputs were copied out (they may live in the old arena).
  if (arena_.size() < last_peak_) arena_ = kernels::AlignedBuffer(last_peak_);
  return Status::ok();
}

}  // namespace graphopt::runtime
