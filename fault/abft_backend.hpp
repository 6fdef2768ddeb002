// AbftBackend: a kernels::Backend decorator that checks every GEMM with ABFT (fault/abft_gemm.hpp).
// Every op is forwarded to an inner Backend (not owned). matmul_forward and matmul_backward run the
// inner op unchanged (so a clean step is bit-identical to the inner backend alone), then verify
// each output: out, dinp, dweight and dbias. A single located error is corrected in place; anything
// else is recomputed by the inner backend (accumulating outputs are first restored from a snapshot
// taken before the GEMM); a mismatch that survives the recompute returns a kInternal Status
// ("ABFT escalation: ..."), unless every residual is within the worst-case rounding bound
// (kTolerated: a threshold calibration miss, counted, not a fault).
//
// Accumulating outputs (dinp, dweight, dbias: +=) are checked as increments: an output that is not
// all zero before the GEMM is copied to a scratch snapshot, whose sums enter the prediction, and a
// recompute starts again from the snapshot; an all-zero output (gradients zeroed before backward)
// needs no copy and is zeroed again for a recompute. Scratch is allocated from the inner backend and
// grows to the largest set of non-zero outputs of one backward call.
//
// Devices: the checksum work goes through a ChecksumKernels; the default HostChecksumKernels reads
// host memory, so it serves a CPU inner backend only (other kinds get kUnavailable from the matmul
// ops unless a device ChecksumKernels is given). The fault hook and the snapshot live in the inner
// backend's memory: device pointers for a CUDA inner backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "fault/abft_gemm.hpp"
#include "kernels/backend.hpp"

namespace perigee::fault {

struct AbftStats {
  uint64_t gemms_checked = 0;    // outputs verified (out, dinp, dweight, dbias each count)
  uint64_t faults_detected = 0;  // checks whose first verification flagged a line
  uint64_t corrected = 0;        // single elements corrected in place
  uint64_t recomputed = 0;       // outputs recomputed, then clean
  uint64_t escalated = 0;        // still wrong after a recompute (error returned)
  uint64_t tolerated = 0;        // over tau after a recompute but within the rounding bound
  uint64_t unverifiable = 0;     // operands not finite or beyond fp32 range
  double max_clean_ratio = 0.0;  // largest residual / threshold among clean checks (calibration telemetry)
};

// One check that was not clean on the first verification (or was unverifiable).
struct AbftEvent {
  GemmKind kind = GemmKind::kForward;
  AbftOutcome outcome = AbftOutcome::kClean;
  uint64_t gemm_index = 0;  // stats().gemms_checked when it happened (1-based)
  int N = 0, C = 0, OC = 0;
  int64_t rows_flagged = 0;
  int64_t cols_flagged = 0;
  double max_ratio = 0.0;
  bool corrected = false;
  Correction correction;
  std::string detail;
};

class AbftBackend final : public kernels::Backend {
 public:
  using EventCallback = std::function<void(const AbftEvent&)>;
  // Called on each output after the inner GEMM (and after each recompute) and before verification.
  using OutputFaultHook = std::function<void(float* out, size_t n, GemmKind kind)>;

  // inner: not owned, outlives this object. checksum_kernels: null = HostChecksumKernels(options.threads).
  explicit AbftBackend(kernels::Backend* inner, const AbftOptions& options = {},
                       std::unique_ptr<ChecksumKernels> checksum_kernels = nullptr);
  ~AbftBackend() override;
  AbftBackend(const AbftBackend&) = delete;
  AbftBackend& operator=(const AbftBackend&) = delete;

  kernels::Backend* inner() const { return inner_; }
  const AbftOptions& options() const { return options_; }
  const AbftStats& stats() const { return stats_; }
  void reset_stats() { stats_ = AbftStats{}; }
  void set_event_callback(EventCallback callback) { on_event_ = std::move(callback); }
  void set_output_fault_hook(OutputFaultHook hook) { fault_hook_ = std::move(hook); }

  kernels::DeviceKind kind() const override { return inner_->kind(); }
  const char* name() const override { return name_.c_str(); }

  Status allocate(void** ptr, size_t bytes) override { return inner_->allocate(ptr, bytes); }
  void release(void* ptr) override { inner_->release(ptr); }
  Status memset_zero(void* ptr, size_t bytes) override { return inner_->memset_zero(ptr, bytes); }
  Status copy_to_device(void* dst, const void* host_src, size_t bytes) override {
    return inner_->copy_to_device(dst, host_src, bytes);
  }
  Status copy_to_host(void* host_dst, const void* src, size_t bytes) override {
    return inner_->copy_to_host(host_dst, src, bytes);
  }
  Status synchronize() override { return inner_->synchronize(); }
  Status memory_info(kernels::MemoryInfo* out) const override { return inner_->memory_info(out); }
  uint64_t model_overhead_bytes(size_t n) const override { return inner_->model_overhead_bytes(n); }
  // The inner backend's, plus the snapshot of the outputs a GEMM adds to when they already hold a sum
  // (the largest dweight and dbias of the matmul_backward calls that accumulate), plus what the
  // checksum kernels take to check the largest GEMM (device workspace; 0 for the host kernels).
  // Reserving allocates all three; a snapshot or workspace larger than reserved still grows on demand.
  Status working_memory_bytes(std::span<const kernels::OpCall> calls, uint64_t* bytes) const override;
  Status reserve_working_memory(std::span<const kernels::OpCall> calls) override;
  // The snapshot and checksum memory allocated now (the inner backend's not included).
  uint64_t held_working_bytes() const;

  Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C, int V) override {
    return inner_->encoder_forward(out, tokens, wte, wpe, B, T, C, V);
  }
  Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C, int V) override {
    return inner_->encoder_backward(dwte, dwpe, dout, tokens, B, T, C, V);
  }
  Status layernorm_forward(kernels::Act out, float* mean, float* rstd, const float* inp, const float* weight,
                           const float* bias, int N, int C) override {
    return inner_->layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
  }
  Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* mean, const float* rstd, int N,
                            int C) override {
    return inner_->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }

  // The checked ops. Their activation operands must be fp32 (kInvalidArgument otherwise): the checksums
  // read fp32 operands.
  Status matmul_forward(kernels::Act out, kernels::ConstAct inp, const float* weight, const float* bias,
                        int N, int C, int OC) override;
  Status matmul_backward(kernels::Act dinp, float* dweight, float* dbias, kernels::ConstAct dout,
                         kernels::ConstAct inp, const float* weight, int N, int C, int OC) override;

  size_t attention_state_size(int B, int T, int C, int NH) const override {
    return inner_->attention_state_size(B, T, C, NH);
  }
  Status attention_forward(kernels::Act out, float* att, kernels::ConstAct qkv, int B, int T, int C,
                           int NH) override {
    return inner_->attention_forward(out, att, qkv, B, T, C, NH);
  }
  Status attention_backward(kernels::Act dqkv, kernels::ConstAct dout, kernels::ConstAct qkv,
                            kernels::ConstAct out, const float* att, int B, int T, int C, int NH) override {
    return inner_->attention_backward(dqkv, dout, qkv, out, att, B, T, C, NH);
  }
  Status gelu_forward(kernels::Act out, kernels::ConstAct inp, size_t n) override {
    return inner_->gelu_forward(out, inp, n);
  }
  Status gelu_backward(kernels::Act dinp, kernels::ConstAct inp, kernels::ConstAct dout, size_t n) override {
    return inner_->gelu_backward(dinp, inp, dout, n);
  }
  // matmul_gelu_forward and matmul_backward_gelu are not forwarded: Backend's unfused forms run, so
  // their GEMMs go through the checked matmul ops above (a GELU epilogue would hide the GEMM's output).
  Status residual_forward(float* out, const float* a, const float* b, size_t n) override {
    return inner_->residual_forward(out, a, b, n);
  }
  bool fuses_residual_layernorm() const override { return inner_->fuses_residual_layernorm(); }
  Status residual_layernorm_forward(float* residual, kernels::Act out, float* mean, float* rstd,
                                    const float* a, const float* b, const float* weight, const float* bias,
                                    int N, int C) override {
    return inner_->residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C);
  }
  Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                              int V, int Vp) override {
    return inner_->crossentropy_forward(losses, probs, logits, targets, N, V, Vp);
  }
  Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                               int V, int Vp) override {
    return inner_->crossentropy_backward(dlogits, probs, targets, dloss, N, V, Vp);
  }
  Status crossentropy_forward_backward(float* losses, kernels::Act dlogits, kernels::ConstAct logits,
                                       const int32_t* targets, float dloss, int N, int V, int Vp) override {
    return inner_->crossentropy_forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp);
  }
  Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                      const kernels::AdamWParams& hp) override {
    return inner_->adamw_update(params, grads, m, v, n, hp);
  }
  Status adamw_update_runs(float* params, const float* grads, float* m, float* v,
                           std::span<const kernels::AdamWRun> runs, const kernels::AdamWParams& hp) override {
    return inner_->adamw_update_runs(params, grads, m, v, runs, hp);
  }
  Status sum_squares(const float* x, size_t n, double* out) override {
    return inner_->sum_squares(x, n, out);
  }
  Status scale(float* x, float s, size_t n) override { return inner_->scale(x, s, n); }
  Status to_bf16(uint16_t* out, const float* in, size_t n) override { return inner_->to_bf16(out, in, n); }
  Status from_bf16(float* out, const uint16_t* in, float s, size_t n) override {
    return inner_->from_bf16(out, in, s, n);
  }
  Status refresh_weight_cache(const float* params, size_t n) override {
    return inner_->refresh_weight_cache(params, n);
  }
  void release_weight_cache(const float* params) override { inner_->release_weight_cache(params); }

 private:
  // Hook, verify, correct or recompute (via `recompute`, after restoring `snapshot` when given, or
  // zeroing the output when it was zero), and escalate one output of an inner GEMM that has run.
  Status finish_output(AbftGemm* gemm, float* out, const float* snapshot, bool zero_before,
                       const std::function<Status()>& recompute);
  Status reserve_scratch(size_t floats);
  Status require_kernels() const;
  void emit(const AbftGemm& gemm, const AbftCheck& check, AbftOutcome outcome);

  kernels::Backend* inner_;
  AbftOptions options_;
  std::unique_ptr<ChecksumKernels> kernels_;
  bool host_kernels_ = false;
  std::string name_;
  AbftGemm forward_, backward_input_, backward_weight_, backward_bias_;
  float* scratch_ = nullptr;
  size_t scratch_floats_ = 0;
  AbftStats stats_;
  EventCallback on_event_;
  OutputFaultHook fault_hook_;
};

}  // namespace perigee::fault
