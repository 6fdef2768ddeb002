// CudaBackend: the CUDA implementation of kernels::Backend on one device (fp32 memory everywhere).
// Every op is enqueued on the backend's own stream (non-blocking) and returns without waiting, except
// where the interface hands host data back: copy_to_host, copy_to_device (the host buffer may be reused
// as soon as it returns), sum_squares (writes a host double) and allocate. The precision
// (cuda_backend_factory.hpp) picks the GEMMs and attention: kFp32 cuBLAS fp32 and the fp32 attention
// kernel, kTf32 cuBLAS on TF32 tensor cores, kBf16 cuBLASLt on bf16 tensor cores (matmul_bf16.cuh)
// and the bf16 tensor-core attention (attention_bf16.cuh); every other op is fp32. All
// reductions run in a fixed order without atomics, so every op is bit-reproducible on one device.
// Temporary device memory comes from one scratch buffer, reserved up front for a model's ops
// (reserve_working_memory) and grown on demand beyond that. One backend runs one op at a
// time; callers use it from threads whose current device is device() (create() sets it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>

#include "kernels/act_cast.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/matmul_bf16.cuh"

namespace perigee::kernels::cuda {

class CudaBackend final : public Backend {
 public:
  // Makes `device` current, creates the stream, the cuBLAS handle and its workspace.
  static Status create(int device, std::unique_ptr<CudaBackend>* out);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  // The arithmetic of GEMMs and attention (kFp32 by default); takes effect from the next op.
  // A weight cache made under another precision is dropped and its memory freed.
  void set_precision(GpuPrecision precision) {
    if (precision != precision_) free_weight_cache();
    precision_ = precision;
  }
  GpuPrecision precision() const { return precision_; }
  LtGemm& lt() { return *lt_; }  // the bf16 GEMMs' cuBLASLt handle and plans
  // GELU in the MLP GEMMs' cuBLASLt epilogues (matmul_bf16.cuh), with bf16 precision only; off by default.
  void set_gelu_fusion(bool on) { gelu_fusion_ = on; }
  // The kernel variants awaiting a GPU measurement that run (kernel_variants.hpp; none by default).
  void set_kernel_variants(const KernelVariants& v) { kernel_variants_ = v; }
  const KernelVariantRuns& kernel_variant_runs() const { return variant_runs_; }
  // The bf16 weight cache (refresh_weight_cache below), with bf16 precision only; on by default. Off
  // frees it.
  void set_weight_cache(bool on);
  bool weight_cache() const { return weight_cache_on_; }
  const WeightCacheStats& weight_cache_stats() const { return cache_stats_; }
  // Act op calls that took the ActCast path (widen, fp32 op, round) instead of a native kernel for
  // their storage: tests check that the native bf16 paths really ran.
  uint64_t act_cast_fallbacks() const { return cast_fallbacks_; }
  // The shared memory per block the kernel choices assume: the device's opt-in limit, or less in tests
  // (an H100 told 99 KiB chooses as sm_86/89 do).
  // 0 restores the device's limit; more than it is kInvalidArgument.
  Status set_shared_memory_limit(size_t bytes) {
    PERIGEE_REQUIRE(bytes <= shared_optin_, StatusCode::kInvalidArgument, "set_shared_memory_limit: ", bytes,
                    " bytes is above the device's opt-in limit of ", shared_optin_);
    shared_limit_ = bytes == 0 ? shared_optin_ : bytes;
    return Status::ok();
  }

  DeviceKind kind() const override { return DeviceKind::kCuda; }
  const char* name() const override { return "cuda"; }

  // ---- memory
  Status allocate(void** ptr, size_t bytes) override;
  void release(void* ptr) override;
  Status memset_zero(void* ptr, size_t bytes) override;
  Status copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  Status copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  Status synchronize() override;
  Status memory_info(MemoryInfo* out) const override;  // cudaMemGetInfo on this backend's device
  // The weight cache's bf16 copy when it is on (bf16 precision).
  uint64_t model_overhead_bytes(size_t n_params) const override;
  // What the calls take from the scratch and the ActCast path's temporaries (the most any one takes
  // from each, added: working_memory.cu), and growing both to it now.
  Status working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const override;
  Status reserve_working_memory(std::span<const OpCall> calls) override;
  const DeviceScratch& scratch() const { return scratch_; }  // its capacity and largest request
  size_t cast_scratch_bytes() const { return cast_scratch_.bytes(); }

  // ---- forward / backward ops
  Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C, int V) override;
  Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C, int V) override;
  // The Act ops (act_dispatch.cu) run native kernels for the bf16 storage the model uses and ActCast
  // (kernels/act_ops.hpp) for any other combination.
  Status layernorm_forward(Act out, float* mean, float* rstd, const float* inp, const float* weight,
                           const float* bias, int N, int C) override;
  Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* mean, const float* rstd, int N, int C) override;
  Status matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                        int OC) override;
  Status matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                         const float* weight, int N, int C, int OC) override;
  // The per-row log-sum-exp [B, NH, T] (flash-style: the probabilities are recomputed in the backward).
  size_t attention_state_size(int B, int T, int C, int NH) const override;
  Status attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) override;
  Status attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att, int B,
                            int T, int C, int NH) override;
  Status gelu_forward(Act out, ConstAct inp, size_t n) override;
  Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) override;
  Status residual_forward(float* out, const float* a, const float* b, size_t n) override;
  // One kernel (layernorm.cuh), the same bits as the two ops, for every precision and storage of `out`.
  bool fuses_residual_layernorm() const override { return true; }
  Status residual_layernorm_forward(float* residual, Act out, float* mean, float* rstd, const float* a,
                                    const float* b, const float* weight, const float* bias, int N,
                                    int C) override;
  // Fused (cuBLASLt GELU_AUX_BIAS / DGELU epilogues) when fuses_gelu() and cuBLASLt has the algorithm,
  // else Backend's unfused forms.
  bool fuses_gelu() const override { return gelu_fusion_ && precision_ == GpuPrecision::kBf16; }
  Status matmul_gelu_forward(Act pre, Act out, ConstAct inp, const float* weight, const float* bias, int N,
                             int C, int OC) override;
  Status matmul_backward_gelu(Act dpre, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                              const float* weight, ConstAct pre, int N, int C, int OC) override;
  Status crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets, int N,
                              int V, int Vp) override;
  Status crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets, float dloss, int N,
                               int V, int Vp) override;
  Status crossentropy_forward_backward(float* losses, Act dlogits, ConstAct logits, const int32_t* targets,
                                       float dloss, int N, int V, int Vp) override;

  // ---- optimizer and reductions
  Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                      const AdamWParams& hp) override;
  Status sum_squares(const float* x, size_t n, double* out) override;
  Status scale(float* x, float s, size_t n) override;
  Status to_bf16(uint16_t* out, const float* in, size_t n) override;
  Status from_bf16(float* out, const uint16_t* in, float s, size_t n) override;

  // ---- weight cache: with bf16 precision and the cache on, rounds [params, params + n) into one bf16
  // copy (grown on demand, 256-byte aligned, the same element offsets) on the stream; the bf16 GEMMs
  // then read any weight inside the range from it. Otherwise (and on release) the cache is dropped.
  Status refresh_weight_cache(const float* params, size_t n) override;
  void release_weight_cache(const float* params) override;

  // ---- the fp32-storage implementations of the Act ops (cuda_backend.cu)
  Status layernorm_forward_f32(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                               const float* bias, int N, int C);
  Status matmul_forward_f32(float* out, const float* inp, const float* weight, const float* bias, int N,
                            int C, int OC);
  Status matmul_backward_f32(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, int N, int C, int OC);
  Status attention_forward_f32(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
  Status attention_backward_f32(float* dqkv, const float* dout, const float* qkv, const float* out,
                                const float* att, int B, int T, int C, int NH);
  Status gelu_forward_f32(float* out, const float* inp, size_t n);
  Status gelu_backward_f32(float* dinp, const float* inp, const float* dout, size_t n);
  Status crossentropy_forward_backward_f32(float* losses, float* dlogits, const float* logits,
                                           const int32_t* targets, float dloss, int N, int V, int Vp);

 private:
  CudaBackend() = default;
  // The cached bf16 copy of weight [0, n) when the cache holds it, else null.
  const __nv_bfloat16* cached_weight(const float* weight, size_t n);
  void free_weight_cache();
  // Attention by the bf16 tensor-core kernels: bf16 precision, a head size they take, and their shared
  // memory within the device's limit per block (else the fp32 kernels run).
  bool bf16_attention(int C, int NH) const;
  // The bytes a call takes from the device scratch and from the ActCast path's CastScratch, and the
  // most any of `calls` takes from each (working_memory.cu).
  Status op_working_memory(const OpCall& call, size_t* scratch, size_t* cast) const;
  Status working_memory(std::span<const OpCall> calls, size_t* scratch, size_t* cast) const;
  CastScratch& cast_fallback() {  // the ActCast path's temporaries, counting the call
    ++cast_fallbacks_;
    return cast_scratch_;
  }

  int device_ = 0;
  size_t shared_optin_ = 0;  // the device's opt-in shared memory per block
  size_t shared_limit_ = 0;  // what the attention kernels choose by (shared_optin_ but in tests)
  GpuPrecision precision_ = GpuPrecision::kFp32;
  bool gelu_fusion_ = false;
  KernelVariants kernel_variants_;
  KernelVariantRuns variant_runs_;
  // The shared memory the staged cross-entropy may use: shared_limit_ with that variant on, else 0.
  size_t crossentropy_staged_bytes() const {
    return kernel_variants_.crossentropy_staged ? shared_limit_ : 0;
  }
  bool weight_cache_on_ = true;
  const float* cache_src_ = nullptr;  // the range the cache holds (null: none)
  size_t cache_n_ = 0;
  __nv_bfloat16* cache_ = nullptr;  // device memory of cache_capacity_ elements
  size_t cache_capacity_ = 0;
  WeightCacheStats cache_stats_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::unique_ptr<LtGemm> lt_;       // bf16 GEMMs
  double* device_result_ = nullptr;  // sum_squares result on the device
  double* host_result_ = nullptr;    // pinned host copy of it
  DeviceScratch scratch_;
  CastScratch cast_scratch_;  // fp32 temporaries of the ActCast fallback
  uint64_t cast_fallbacks_ = 0;
};

}  // namespace perigee::kernels::cuda
