// CudaBackend: lifetime, memory ops on the backend stream, and the op table that forwards each Backend
// op to its kernel family's launcher (see cuda_backend.cuh).
#include "kernels/cuda/cuda_backend.cuh"

#include <algorithm>

#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/attention_tiles.hpp"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/cublas_check.cuh"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "kernels/cuda/encoder.cuh"
#include "kernels/cuda/gelu.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/matmul_bf16.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/residual.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;  // NVIDIA's recommendation for Hopper
constexpr size_t kMinAllocation = 256;  // cudaMalloc's alignment; 0 bytes still get a block

}  // namespace

// ---- lifetime

Status CudaBackend::create(int device, std::unique_ptr<CudaBackend>* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "CudaBackend::create: null output pointer");
  out->reset();
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return make_error(StatusCode::kUnavailable,
                      "CudaBackend: no usable CUDA device: cudaGetDeviceCount returned ",
                      cudaGetErrorName(err), " (", static_cast<int>(err), ": ", cudaGetErrorString(err), ")");
  }
  PERIGEE_REQUIRE(count > 0, StatusCode::kUnavailable, "CudaBackend: the driver reports 0 CUDA devices");
  PERIGEE_REQUIRE(device >= 0 && device < count, StatusCode::kInvalidArgument, "CudaBackend: device ", device,
                  " does not exist (", count, " device(s))");

  std::unique_ptr<CudaBackend> be(new CudaBackend());
  be->device_ = device;
  PERIGEE_CHECK_CUDA(cudaSetDevice(device));
  PERIGEE_CHECK(current_device_shared_memory_optin(&be->shared_optin_));
  be->shared_limit_ = be->shared_optin_;
  PERIGEE_CHECK_CUDA(cudaStreamCreateWithFlags(&be->stream_, cudaStreamNonBlocking));
  PERIGEE_CHECK_CUBLAS(cublasCreate(&be->cublas_));
  PERIGEE_CHECK_CUBLAS(cublasSetStream(be->cublas_, be->stream_));  // resets the workspace: set it after
  PERIGEE_CHECK_CUDA(cudaMalloc(&be->cublas_workspace_, kCublasWorkspaceBytes));
  PERIGEE_CHECK_CUBLAS(cublasSetWorkspace(be->cublas_, be->cublas_workspace_, kCublasWorkspaceBytes));
  PERIGEE_CHECK_CUBLAS(cublasSetMathMode(be->cublas_, CUBLAS_DEFAULT_MATH));
  PERIGEE_CHECK_CUBLAS(cublasSetAtomicsMode(be->cublas_, CUBLAS_ATOMICS_NOT_ALLOWED));
  PERIGEE_CHECK_CUBLAS(cublasSetPointerMode(be->cublas_, CUBLAS_POINTER_MODE_HOST));
  PERIGEE_CHECK(LtGemm::create(&be->lt_));
  PERIGEE_CHECK_CUDA(cudaMalloc(&be->device_result_, sizeof(double)));
  PERIGEE_CHECK_CUDA(cudaMallocHost(&be->host_result_, sizeof(double)));
  *out = std::move(be);
  return Status::ok();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (cache_ != nullptr) cudaFree(cache_);
  cast_scratch_.clear();  // while the stream still exists (release synchronizes it)
  lt_.reset();
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
  if (device_result_ != nullptr) cudaFree(device_result_);
  if (host_result_ != nullptr) cudaFreeHost(host_result_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

const char* gpu_precision_name(GpuPrecision precision) {
  switch (precision) {
    case GpuPrecision::kFp32:
      return "fp32";
    case GpuPrecision::kTf32:
      return "tf32";
    case GpuPrecision::kBf16:
      return "bf16";
  }
  return "?";
}

const char* gpu_precision_description(GpuPrecision precision) {
  switch (precision) {
    case GpuPrecision::kFp32:
      return "fp32";
    case GpuPrecision::kTf32:
      return "fp32 memory, TF32 GEMMs";
    case GpuPrecision::kBf16:
      return "bf16 mixed: bf16 tensor-core GEMMs and attention, fp32 memory";
  }
  return "?";
}

Status parse_gpu_precision(const std::string& name, GpuPrecision* out) {
  for (GpuPrecision p : {GpuPrecision::kFp32, GpuPrecision::kTf32, GpuPrecision::kBf16}) {
    if (name == gpu_precision_name(p)) {
      *out = p;
      return Status::ok();
    }
  }
  return make_error(StatusCode::kInvalidArgument, "GPU precision \"", name,
                    "\": expected fp32, tf32 or bf16");
}

Status make_cuda_backend(int device, std::unique_ptr<Backend>* out, GpuPrecision precision) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "make_cuda_backend: null output pointer");
  std::unique_ptr<CudaBackend> be;
  PERIGEE_CHECK(CudaBackend::create(device, &be));
  be->set_precision(precision);
  *out = std::move(be);
  return Status::ok();
}

namespace {

// `backend` as a CudaBackend (in bf16 precision when `bf16`), or kInvalidArgument naming `fn`.
Status as_cuda(Backend& backend, const char* fn, CudaBackend** out, bool bf16 = false) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  PERIGEE_REQUIRE(cuda != nullptr && (!bf16 || cuda->precision() == GpuPrecision::kBf16),
                  StatusCode::kInvalidArgument, fn, ": ", backend.name(), " is not a CUDA backend",
                  bf16 ? " in bf16 precision" : "");
  *out = cuda;
  return Status::ok();
}

}  // namespace

Status writes_bf16_gemm_outputs(Backend& backend, int N, int C, int OC, bool bias, bool* yes) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "writes_bf16_gemm_outputs", &cuda, true));
  return cuda->lt().available(true, false, OC, N, C, C, C, OC, DType::kBF16, bias, LtEpilogue::kNone,
                              LtAlign{}, yes);
}

Status writes_bf16_input_gradients(Backend& backend, int N, int C, int OC, bool* yes) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "writes_bf16_input_gradients", &cuda, true));
  return cuda->lt().available(false, false, C, N, OC, C, OC, C, DType::kBF16, false, LtEpilogue::kNone,
                              LtAlign{}, yes);
}

Status cuda_stream_of(Backend& backend, void** stream) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "cuda_stream_of", &cuda));
  *stream = cuda->stream();
  return Status::ok();
}

Status lt_launch_counts(Backend& backend, LtLaunchCounts* out) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "lt_launch_counts", &cuda));
  const LtGemm::Counts& c = cuda->lt().counts();
  *out = LtLaunchCounts{c.launches, c.bf16_d, c.gelu_aux, c.dgelu, c.refused_at_launch, c.bias_apart};
  return Status::ok();
}

Status set_lt_bias_epilogue(Backend& backend, bool on) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "set_lt_bias_epilogue", &cuda));
  cuda->lt().set_bias_epilogue(on);
  return Status::ok();
}

Status set_gelu_fusion(Backend& backend, bool on) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "set_gelu_fusion", &cuda));
  cuda->set_gelu_fusion(on);
  return Status::ok();
}

Status set_kernel_variants(Backend& backend, const KernelVariants& variant) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "set_kernel_variants", &cuda));
  cuda->set_kernel_variants(variant);
  return Status::ok();
}

Status kernel_variant_runs(Backend& backend, KernelVariantRuns* out) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "kernel_variant_runs", &cuda));
  *out = cuda->kernel_variant_runs();
  return Status::ok();
}

Status scratch_use(Backend& backend, ScratchUse* out) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "scratch_use", &cuda));
  *out =
      ScratchUse{cuda->scratch().capacity(), cuda->scratch().largest_request(), cuda->cast_scratch_bytes()};
  return Status::ok();
}

Status set_weight_cache(Backend& backend, bool on) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "set_weight_cache", &cuda));
  cuda->set_weight_cache(on);
  return Status::ok();
}

Status act_cast_fallbacks(Backend& backend, uint64_t* out) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "act_cast_fallbacks", &cuda));
  *out = cuda->act_cast_fallbacks();
  return Status::ok();
}

Status set_shared_memory_limit(Backend& backend, size_t bytes) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "set_shared_memory_limit", &cuda));
  return cuda->set_shared_memory_limit(bytes);
}

Status weight_cache_stats(Backend& backend, WeightCacheStats* out) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "weight_cache_stats", &cuda));
  *out = cuda->weight_cache_stats();
  return Status::ok();
}

Status fuses_gelu_gemms(Backend& backend, int N, int C, int OC, DType type, bool* forward, bool* backward) {
  CudaBackend* cuda = nullptr;
  PERIGEE_CHECK(as_cuda(backend, "fuses_gelu_gemms", &cuda, true));
  PERIGEE_CHECK(gelu_forward_fusable(cuda->lt(), N, C, OC, type, true, forward));
  return gelu_backward_fusable(cuda->lt(), N, C, OC, type, backward);
}

// ---- weight cache

void CudaBackend::set_weight_cache(bool on) {
  weight_cache_on_ = on;
  if (!on) free_weight_cache();
}

void CudaBackend::free_weight_cache() {
  cache_src_ = nullptr;
  cache_n_ = 0;
  if (cache_ != nullptr) {
    cudaStreamSynchronize(stream_);  // GEMMs queued on the stream may still read it
    cudaFree(cache_);
  }
  cache_ = nullptr;
  cache_capacity_ = 0;
  cache_stats_.bytes = 0;
}

Status CudaBackend::refresh_weight_cache(const float* params, size_t n) {
  cache_src_ = nullptr;  // dropped unless refreshed below
  if (!weight_cache_on_ || precision_ != GpuPrecision::kBf16 || params == nullptr || n == 0) {
    return Status::ok();
  }
  if (n > cache_capacity_) {
    free_weight_cache();
    const cudaError_t err = cudaMalloc(&cache_, n * sizeof(__nv_bfloat16));
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it
      cache_ = nullptr;
      return make_error(StatusCode::kOutOfMemory, "weight cache: cudaMalloc of ", n * sizeof(__nv_bfloat16),
                        " bytes (a bf16 copy of ", n, " parameters) failed: ", cudaGetErrorString(err),
                        "; [device] weight_cache = false rounds each GEMM's weight instead");
    }
    cache_capacity_ = n;
    cache_stats_.bytes = n * sizeof(__nv_bfloat16);
  }
  PERIGEE_CHECK(convert_to_bf16(cache_, params, n, stream_));
  cache_src_ = params;
  cache_n_ = n;
  ++cache_stats_.refreshes;
  return Status::ok();
}

void CudaBackend::release_weight_cache(const float* params) {
  // A copy that serves nobody (its refresh failed) goes too.
  if (params != nullptr && (params == cache_src_ || cache_src_ == nullptr)) free_weight_cache();
}

const __nv_bfloat16* CudaBackend::cached_weight(const float* weight, size_t n) {
  if (cache_src_ == nullptr || weight == nullptr) return nullptr;
  const auto lo = reinterpret_cast<uintptr_t>(cache_src_);
  const auto w = reinterpret_cast<uintptr_t>(weight);
  if (w < lo || (w - lo) % sizeof(float) != 0) return nullptr;
  const size_t offset = (w - lo) / sizeof(float);
  if (offset > cache_n_ || n > cache_n_ - offset) return nullptr;
  // Under 16 bytes the copy may have no cuBLASLt algorithm: the weight is rounded into scratch instead.
  if (reinterpret_cast<uintptr_t>(cache_ + offset) % 16 != 0) return nullptr;
  ++cache_stats_.hits;
  return cache_ + offset;
}

// ---- memory

Status CudaBackend::allocate(void** ptr, size_t bytes) {
  PERIGEE_REQUIRE(ptr != nullptr, StatusCode::kInvalidArgument, "allocate: null output pointer");
  *ptr = nullptr;
  const size_t size = std::max(bytes, kMinAllocation);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, size);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return make_error(StatusCode::kOutOfMemory, "allocate: cannot allocate ", bytes, " bytes on CUDA device ",
                      device_);
  }
  PERIGEE_CHECK_CUDA(err);
  const cudaError_t zero = cudaMemsetAsync(p, 0, size, stream_);
  const cudaError_t sync = zero == cudaSuccess ? cudaStreamSynchronize(stream_) : zero;
  if (sync != cudaSuccess) {
    cudaFree(p);
    PERIGEE_CHECK_CUDA(sync);
  }
  *ptr = p;
  return Status::ok();
}

Status CudaBackend::memory_info(MemoryInfo* out) const {
  PERIGEE_CHECK_CUDA(cudaSetDevice(device_));
  size_t free = 0, total = 0;
  PERIGEE_CHECK_CUDA(cudaMemGetInfo(&free, &total));
  cudaDeviceProp prop{};
  PERIGEE_CHECK_CUDA(cudaGetDeviceProperties(&prop, device_));
  *out = MemoryInfo{free, total, str_cat("CUDA device ", device_, " (", prop.name, ")")};
  return Status::ok();
}

uint64_t CudaBackend::model_overhead_bytes(size_t n_params) const {
  return weight_cache_on_ && precision_ == GpuPrecision::kBf16 ? n_params * sizeof(__nv_bfloat16) : 0;
}

void CudaBackend::release(void* ptr) {
  if (ptr == nullptr) return;
  cudaStreamSynchronize(stream_);
  cudaFree(ptr);
}

Status CudaBackend::memset_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("memset_zero", {ptr}));
  PERIGEE_CHECK_CUDA(cudaMemsetAsync(ptr, 0, bytes, stream_));
  return Status::ok();
}

Status CudaBackend::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("copy_to_device", {dst, host_src}));
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyDefault, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return Status::ok();
}

Status CudaBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("copy_to_host", {host_dst, src}));
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDefault, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return Status::ok();
}

Status CudaBackend::synchronize() {
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  return Status::ok();
}

// ---- forward / backward ops

Status CudaBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                                    int B, int T, int C, int V) {
  PERIGEE_CHECK(cuda::encoder_forward(out, tokens, wte, wpe, B, T, C, V, stream_));
  return Status::ok();
}

Status CudaBackend::encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                                     int B, int T, int C, int V) {
  PERIGEE_CHECK(cuda::encoder_backward(dwte, dwpe, dout, tokens, B, T, C, V, scratch_, stream_));
  return Status::ok();
}

Status CudaBackend::layernorm_forward_f32(float* out, float* mean, float* rstd, const float* inp,
                                          const float* weight, const float* bias, int N, int C) {
  PERIGEE_CHECK(cuda::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream_));
  return Status::ok();
}

Status CudaBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                       const float* inp, const float* weight, const float* mean,
                                       const float* rstd, int N, int C) {
  PERIGEE_CHECK(
      cuda::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, scratch_, stream_));
  return Status::ok();
}

Status CudaBackend::matmul_forward_f32(float* out, const float* inp, const float* weight, const float* bias,
                                       int N, int C, int OC) {
  if (precision_ == GpuPrecision::kBf16) {
    PERIGEE_CHECK(cuda::matmul_forward_bf16(out, inp, weight, bias, N, C, OC, *lt_, scratch_, stream_,
                                            cached_weight(weight, static_cast<size_t>(OC) * C)));
    return Status::ok();
  }
  PERIGEE_CHECK(cuda::matmul_forward(out, inp, weight, bias, N, C, OC,
                                     GemmContext{cublas_, precision_ == GpuPrecision::kTf32}, stream_));
  return Status::ok();
}

Status CudaBackend::matmul_backward_f32(float* dinp, float* dweight, float* dbias, const float* dout,
                                        const float* inp, const float* weight, int N, int C, int OC) {
  if (precision_ == GpuPrecision::kBf16) {
    PERIGEE_CHECK(cuda::matmul_backward_bf16(dinp, dweight, dbias, dout, inp, weight, N, C, OC, *lt_,
                                             scratch_, stream_,
                                             cached_weight(weight, static_cast<size_t>(OC) * C)));
    return Status::ok();
  }
  PERIGEE_CHECK(cuda::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC,
                                      GemmContext{cublas_, precision_ == GpuPrecision::kTf32}, scratch_,
                                      stream_));
  return Status::ok();
}

size_t CudaBackend::attention_state_size(int B, int T, int /*C*/, int NH) const {
  return attention_state_floats(B, T, NH);
}

bool CudaBackend::bf16_attention(int C, int NH) const {
  return precision_ == GpuPrecision::kBf16 && attention_bf16_supports(C, NH) &&
         attention_bf16_shared_bytes(C / NH) <= shared_limit_;
}

Status CudaBackend::attention_forward_f32(float* out, float* att, const float* qkv, int B, int T, int C,
                                          int NH) {
  if (bf16_attention(C, NH)) {
    PERIGEE_CHECK(
        cuda::attention_forward_bf16(out, att, qkv, B, T, C, NH, stream_, kernel_variants_, &variant_runs_));
    return Status::ok();
  }
  PERIGEE_CHECK(cuda::attention_forward(out, att, qkv, B, T, C, NH, shared_limit_, stream_, &variant_runs_));
  return Status::ok();
}

Status CudaBackend::attention_backward_f32(float* dqkv, const float* dout, const float* qkv, const float* out,
                                           const float* att, int B, int T, int C, int NH) {
  if (bf16_attention(C, NH)) {
    PERIGEE_CHECK(cuda::attention_backward_bf16(dqkv, dout, qkv, out, att, B, T, C, NH, scratch_, stream_,
                                                kernel_variants_, &variant_runs_));
    return Status::ok();
  }
  PERIGEE_CHECK(cuda::attention_backward(dqkv, dout, qkv, att, B, T, C, NH, shared_limit_, scratch_, stream_,
                                         &variant_runs_));
  return Status::ok();
}

Status CudaBackend::gelu_forward_f32(float* out, const float* inp, size_t n) {
  PERIGEE_CHECK(cuda::gelu_forward(out, inp, n, stream_));
  return Status::ok();
}

Status CudaBackend::gelu_backward_f32(float* dinp, const float* inp, const float* dout, size_t n) {
  PERIGEE_CHECK(cuda::gelu_backward(dinp, inp, dout, n, stream_));
  return Status::ok();
}

Status CudaBackend::residual_forward(float* out, const float* a, const float* b, size_t n) {
  PERIGEE_CHECK(cuda::residual_forward(out, a, b, n, stream_));
  return Status::ok();
}

Status CudaBackend::crossentropy_forward(float* losses, float* probs, const float* logits,
                                         const int32_t* targets, int N, int V, int Vp) {
  PERIGEE_CHECK(cuda::crossentropy_forward(losses, probs, logits, targets, N, V, Vp, stream_));
  return Status::ok();
}

Status CudaBackend::crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                          float dloss, int N, int V, int Vp) {
  PERIGEE_CHECK(cuda::crossentropy_backward(dlogits, probs, targets, dloss, N, V, Vp, stream_));
  return Status::ok();
}

Status CudaBackend::crossentropy_forward_backward_f32(float* losses, float* dlogits, const float* logits,
                                                      const int32_t* targets, float dloss, int N, int V,
                                                      int Vp) {
  PERIGEE_CHECK(cuda::crossentropy_forward_backward(losses, dlogits, logits, targets, dloss, N, V, Vp,
                                                    stream_, crossentropy_staged_bytes(), &variant_runs_));
  return Status::ok();
}

// ---- optimizer and reductions

Status CudaBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                                 const AdamWParams& hp) {
  PERIGEE_CHECK(cuda::adamw_update(params, grads, m, v, n, hp, stream_));
  return Status::ok();
}

Status CudaBackend::sum_squares(const float* x, size_t n, double* out) {
  PERIGEE_CHECK(check_pointers("sum_squares", {out}));
  *out = 0.0;
  PERIGEE_CHECK(cuda::sum_squares(x, n, device_result_, scratch_, stream_));
  PERIGEE_CHECK_CUDA(
      cudaMemcpyAsync(host_result_, device_result_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream_));
  *out = *host_result_;
  return Status::ok();
}

Status CudaBackend::scale(float* x, float s, size_t n) {
  PERIGEE_CHECK(cuda::scale(x, s, n, stream_));
  return Status::ok();
}

Status CudaBackend::to_bf16(uint16_t* out, const float* in, size_t n) {
  PERIGEE_CHECK(cuda::to_bf16(out, in, n, stream_));
  return Status::ok();
}

Status CudaBackend::from_bf16(float* out, const uint16_t* in, float s, size_t n) {
  PERIGEE_CHECK(cuda::from_bf16(out, in, s, n, stream_));
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
