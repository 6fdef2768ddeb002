// ProfilingBackend: a kernels::Backend decorator that forwards every op to an inner Backend (not
// owned, results untouched) and accumulates, per op name, the number of calls and the time spent.
// Timing goes through a pluggable OpTimer:
//   SyncClockTimer   synchronizes the inner backend before and after each op and reads steady_clock
//                    (exact on the CPU backend; on a GPU it serialises host and device).
//   CudaEventTimer   (kernels/cuda/event_timer.cuh) records a cudaEvent pair around each op on the
//                    CUDA backend's stream and resolves them only after a synchronize (no sync per op).
// Pending measurements are resolved on synchronize() and collect(); calls are counted at call time.
// Keys are the Backend method names ("matmul_forward", ...); with ProfilingOptions::by_shape the
// compute ops get their dimensions appended ("matmul_forward N=16384 C=768 OC=2304").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.hpp"

namespace perigee::kernels {

// Measures op calls. begin/end bracket one inner op (never nested); resolve hands every finished
// measurement since the last resolve to `sink` as (slot, milliseconds). The ProfilingBackend calls
// resolve only after the inner backend has synchronized.
class OpTimer {
 public:
  using Sink = std::function<void(int slot, double ms)>;
  virtual ~OpTimer() = default;
  virtual const char* name() const = 0;
  virtual Status begin(int slot) = 0;
  virtual Status end(int slot) = 0;
  virtual Status resolve(const Sink& sink) = 0;
};

// Host wall clock: synchronizes `backend` (not owned) before and after each op.
class SyncClockTimer final : public OpTimer {
 public:
  explicit SyncClockTimer(Backend* backend) : backend_(backend) {}
  const char* name() const override { return "sync+steady_clock"; }
  Status begin(int slot) override;
  Status end(int slot) override;
  Status resolve(const Sink& sink) override;

 private:
  Backend* backend_;
  int64_t start_ns_ = 0;
  int open_slot_ = -1;
  std::vector<std::pair<int, double>> pending_;
};

struct ProfilingOptions {
  bool by_shape = false;  // one entry per (op, dimensions) instead of per op
};

struct OpStat {
  std::string op;
  uint64_t calls = 0;
  double total_ms = 0.0;
};

class ProfilingBackend final : public Backend {
 public:
  // inner: not owned, outlives this object. timer: null = SyncClockTimer(inner).
  ProfilingBackend(Backend* inner, std::unique_ptr<OpTimer> timer = nullptr, ProfilingOptions options = {});
  ProfilingBackend(const ProfilingBackend&) = delete;
  ProfilingBackend& operator=(const ProfilingBackend&) = delete;

  Backend* inner() const { return inner_; }
  const OpTimer& timer() const { return *timer_; }

  // Synchronizes the inner backend and folds every pending measurement into the totals.
  Status collect();
  // Entries with at least one call, largest total first (call collect() first for final times).
  std::vector<OpStat> stats() const;
  double total_ms() const;       // sum over entries
  uint64_t total_calls() const;  // sum over entries
  void reset();                  // zero counts and times; pending measurements are dropped
  // While disabled, ops are forwarded without counting or timing (e.g. during warm-up steps).
  void set_enabled(bool enabled) { enabled_ = enabled; }
  bool enabled() const { return enabled_; }
  // Table: op, calls, total ms, ms/call, % of `reference_ms` (<= 0: % of total_ms()). `steps` > 0
  // adds a ms/step column.
  std::string report(double reference_ms = 0.0, int steps = 0) const;

  DeviceKind kind() const override { return inner_->kind(); }
  const char* name() const override { return name_.c_str(); }

  Status allocate(void** ptr, size_t bytes) override;
  void release(void* ptr) override;
  Status memset_zero(void* ptr, size_t bytes) override;
  Status copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  Status copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  Status synchronize() override { return collect(); }
  Status memory_info(MemoryInfo* out) const override { return inner_->memory_info(out); }
  uint64_t model_overhead_bytes(size_t n) const override { return inner_->model_overhead_bytes(n); }
  Status working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const override {
    return inner_->working_memory_bytes(calls, bytes);
  }
  Status reserve_working_memory(std::span<const OpCall> calls) override {
    return inner_->reserve_working_memory(calls);
  }

  Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C, int V) override;
  Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C, int V) override;
  Status layernorm_forward(Act out, float* mean, float* rstd, const float* inp, const float* weight,
                           const float* bias, int N, int C) override;
  Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* mean, const float* rstd, int N, int C) override;
  Status matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                        int OC) override;
  Status matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                         const float* weight, int N, int C, int OC) override;
  size_t attention_state_size(int B, int T, int C, int NH) const override {
    return inner_->attention_state_size(B, T, C, NH);
  }
  Status attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) override;
  Status attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att, int B,
                            int T, int C, int NH) override;
  Status gelu_forward(Act out, ConstAct inp, size_t n) override;
  Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) override;
  Status residual_forward(float* out, const float* a, const float* b, size_t n) override;
  // Fused ops: timed as one op when the inner backend fuses them; else the unfused ops are timed one by
  // one.
  bool fuses_gelu() const override { return inner_->fuses_gelu(); }
  Status matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight, const float* bias, int N,
                             int C, int OC) override;
  Status matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                              const float* weight, ConstAct pre, int N, int C, int OC) override;
  bool fuses_residual_layernorm() const override { return inner_->fuses_residual_layernorm(); }
  Status residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd, const float* a,
                                    const float* b, const float* weight, const float* bias, int N,
                                    int C) override;
  Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                              int V, int Vp) override;
  Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                               int V, int Vp) override;
  Status crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits, const int32_t* targets,
                                       float dloss, int N, int V, int Vp) override;
  Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                      const AdamWParams& hp) override;
  Status adamw_update_runs(float* params, const float* grads, float* m, float* v,
                           std::span<const AdamWRun> runs, const AdamWParams& hp) override;
  Status sum_squares(const float* x, size_t n, double* out) override;
  Status scale(float* x, float s, size_t n) override;
  Status to_bf16(uint16_t* out, const float* in, size_t n) override;
  Status from_bf16(float* out, const uint16_t* in, float s, size_t n) override;
  Status refresh_weight_cache(const float* params, size_t n) override;
  void release_weight_cache(const float* params) override;

 private:
  struct Entry {
    std::string op;
    uint64_t calls = 0;
    double total_ms = 0.0;
  };
  // Slot of `op` (with `dims` appended when by_shape); counts the call. -1 while disabled.
  int slot(const char* op, std::initializer_list<std::pair<const char*, int64_t>> dims = {});
  // begin, run, end; the op's own error wins over the timer's.
  template <class Op>
  Status timed(int slot, Op&& op);

  Backend* inner_;
  std::unique_ptr<OpTimer> timer_;
  ProfilingOptions options_;
  std::string name_;
  bool enabled_ = true;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, int> index_;
};

}  // namespace perigee::kernels
