// The native execution plan: tensors live in numbered slots, steps run kernels
// on slots in order, and everything between two calls from Python happens here.
//
// Shapes are dynamic: every op computes its output shape from its inputs when
// it runs (the op *is* its shape function), so a new batch or sequence length
// needs no recompilation. Memory comes from one arena per plan: intermediate
// tensors get offsets from a first-fit allocator driven by the liveness lists
// the Python lowering computes (a slot is freed after its last use). The peak
// of that allocator is remembered per input-shape signature; the arena grows
// to the largest peak seen, so steady-state runs allocate nothing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "graphopt/kernels/gemm.h"
#include "graphopt/status.h"
#include "graphopt/tensor_view.h"
#include "fork_safe.h"

namespace graphopt::runtime {

// Element types use ONNX TensorProto codes so Python can pass them straight through.
enum class DType : int {
  undefined = 0, f32 = 1, u8 = 2, s8 = 3, u16 = 4, s16 = 5, s32 = 6, s64 = 7,
  boolean = 9, f16 = 10, f64 = 11, u32 = 12, u64 = 13, bf16 = 16
};
std::size_t dtype_size(DType d);
const char* dtype_name(DType d);

using Shape = std::vector<index_t>;
index_t numel(const Shape& s);
std::string shape_str(const Shape& s);

// A tensor as the executor sees it: a typed, dense, row-major view.
struct Tensor {
  void* data = nullptr;
  Shape shape;
  DType dt = DType::undefined;
  index_t numel() const { return runtime::numel(shape); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dt); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

class ExecCtx;
struct Step;
using OpFn = Status (*)(ExecCtx&, const Step&);

// One kernel invocation. Attributes are small named int/float vectors; packed
// weights are built once at compile time and owned by the step.
struct Step {
  std::string kind, name;
  std::vector<int> in, out;  // slot ids, -1 for an absent optional input
  std::map<std::string, std::vector<std::int64_t>> ia;
  std::map<std::string, std::vector<double>> fa;
  std::vector<std::shared_ptr<kernels::PackedWeights>> packed;
  std::vector<int> free_after;  // slots whose last use is this step
  std::vector<bool> alias_out;  // output i shares its storage with input 0
  OpFn fn = nullptr;
  std::function<Status(ExecCtx&, const Step&)> custom;  // fallback steps (Python callback)
  // Scratch reused across runs (quantized/bf16 activations, im2col): no per-run malloc.
  mutable std::vector<std::uint8_t> scratch;
  // Data an op builds on first use and keeps (Int4Linear's weights packed for its int8 path),
  // and its size (counted in Plan::packed_bytes once built).
  mutable std::shared_ptr<void> state;
  mutable std::size_t state_bytes = 0;

  std::int64_t i(const char* k, std::int64_t d) const;
  const std::vector<std::int64_t>* iv(const char* k) const;
  double f(const char* k, double d) const;
};

// First-fit offset allocator over a flat byte range (64-byte aligned blocks).
class OffsetAllocator {
 public:
  void reset();
  std::size_t alloc(std::size_t bytes);
  void free(std::size_t off, std::size_t bytes);
  std::size_t peak() const { return peak_; }

 private:
  std::vector<std::pair<std::size_t, std::size_t>> free_;  // (offset, size), sorted, coalesced, below top_
  std::size_t top_ = 0, peak_ = 0;
};

struct SlotInfo {
  DType dt = DType::undefined;
  bool is_const = false;
  std::string name;
  // A constant read in place from a read-only file mapping: its pages can be dropped from the
  // resident set (ExecCtx::drop_const_pages) and come back from the file if read again.
  bool droppable = false;
};

class Plan {
 public:
  int add_slot(DType dt, const std::string& name);
  // Constants are copied into plan-owned, 64-byte-aligned storage.
  void set_const(int slot, const void* data, const Shape& shape, DType dt);
  // A constant read in place from memory that `owner` keeps alive (e.g. a numpy view of a memory-
  // mapped weight file): nothing is copied; the executor never writes constants. 64-byte aligned.
  // droppable: the memory is a read-only file mapping (see SlotInfo::droppable).
  void set_const_ref(int slot, const void* data, const Shape& shape, DType dt, std::shared_ptr<void> owner,
                     bool droppable = false);
  int add_step(Step step);  // resolves step.fn from the op registry unless custom is set
  void set_io(std::vector<int> inputs, std::vector<int> outputs);

  // Runs the plan. inputs are views into caller memory (never written);
  // outputs receive plan-independent copies through `emit`.
  Status run(const std::vector<Tensor>& inputs, const std::function<void(int, const Tensor&)>& emit);

  const std::vector<Step>& steps() const { return steps_; }
  Step& step(int i) { return steps_[i]; }
  std::size_t num_slots() const { return slots_.size(); }
  const SlotInfo& slot(int i) const { return slots_[i]; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  std::size_t last_peak_bytes() const { return last_peak_; }
  std::size_t arena_bytes() const { return arena_.size(); }
  std::size_t const_bytes() const;
  std::size_t packed_bytes() const;
  std::map<std::string, std::size_t> peak_by_signature() const;
  // Per-step wall time of the last run when profiling is on (microseconds).
  bool profile = false;
  // Debug/check mode: every step output buffer starts as 0xFF bytes (NaN for floats), so an element
  // a kernel leaves unwritten shows as NaN instead of whatever the arena held (graphopt.runtime.check).
  bool poison = false;
  std::vector<double> step_us;

 private:
  friend class ExecCtx;
  std::vector<SlotInfo> slots_;
  std::vector<std::shared_ptr<kernels::AlignedBuffer>> const_store_;
  std::vector<std::shared_ptr<void>> const_refs_;  // owners of the constants read in place
  std::vector<Tensor> const_tensors_;  // indexed by slot (empty data when not const)
  std::vector<Step> steps_;
  std::vector<int> inputs_, outputs_;
  kernels::AlignedBuffer arena_;
  std::map<std::string, std::size_t> sig_peak_;
  std::size_t last_peak_ = 0;
  ForkSafeMutex mu_;  // one run at a time per plan (the arena is shared); usable after fork()
};

// What an op sees while it runs.
class ExecCtx {
 public:
  ExecCtx(Plan& p, std::vector<Tensor>& t, std::uint8_t* arena, std::size_t cap)
      : plan_(p), t_(t), arena_(arena), cap_(cap), block_(t.size(), {0, 0}) {}
  bool has(const Step& s, std::size_t i) const { return i < s.in.size() && s.in[i] >= 0; }
  const Tensor& in(const Step& s, std::size_t i) const { return t_[s.in[i]]; }
  // Allocates output i of the step with the given shape and type.
  Tensor& out(const Step& s, std::size_t i, const Shape& shape, DType dt);
  // Output i is a view of `src` with a new shape (Reshape & co.: no copy).
  Tensor& alias(const Step& s, std::size_t i, const Tensor& src, const Shape& shape);
  void release(int slot);
  // Input i of the step is a droppable constant (SlotInfo::droppable): hand its resident pages back
  // (an op that has built its own copy, e.g. Int4Linear's packed weights, no longer reads it).
  void drop_const_pages(const Step& s, std::size_t i) const;
  std::size_t peak() const { return alloc_.peak(); }
  std::vector<std::unique_ptr<std::uint8_t[]>> spill;  // arena overflow (first run of a new signature)

 private:
  Plan& plan_;
  std::vector<Tensor>& t_;
  std::uint8_t* arena_;
  std::size_t cap_;
  OffsetAllocator alloc_;
  std::vector<std::pair<std::size_t, std::size_t>> block_;  // (offset, bytes) per slot; bytes 0 = not in arena
};

// The op registry (ops/*.cpp register into it at static-init time via register_ops_*).
OpFn find_op(const std::string& kind);
std::vector<std::string> op_kinds();

// Helpers shared by ops.
Status bad(const Step& s, const std::string& msg);
// Normalises a possibly negative axis for rank r; returns false if out of range.
bool norm_axis(std::int64_t& axis, std::int64_t r);
// Broadcast shapes numpy-style; false if incompatible.
bool broadcast_shape(const Shape& a, const Shape& b, Shape* out);
// Reads an integer tensor (s64 or s32) into a vector.
std::vector<std::int64_t> read_ints(const Tensor& t);
// Parallel loop helper threshold (elements): below it ops run single-threaded.
constexpr index_t kParMin = 1 << 14;

}  // namespace graphopt::runtime
