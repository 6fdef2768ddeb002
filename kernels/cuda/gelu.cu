// GELU (tanh approximation), fp32 arithmetic, fp32 or bf16 output (see gelu.cuh).
#include "kernels/cuda/gelu.cuh"

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// ---- CUDA kernels

// sigmoid(2u) for the GELU argument x (expf overflows to inf for very negative x: the gate is then 0).
__device__ __forceinline__ float gelu_gate(float x) {
  const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 1.0f / (1.0f + expf(-2.0f * u));
}

template <typename Out>
__global__ void gelu_forward_kernel(Out* out, const float* inp, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp[i];
    store_act(out, i, x * gelu_gate(x));
  }
}

template <typename Out>
__global__ void gelu_backward_kernel(Out* dinp, const float* inp, const float* dout, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp[i];
    const float s = gelu_gate(x);
    const float du_dx = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    store_act(dinp, i, (s + 2.0f * x * s * (1.0f - s) * du_dx) * dout[i]);
  }
}

template <typename Out>
Status launch_gelu_forward(Out* out, const float* inp, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_forward", {out, inp}));
  gelu_forward_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(out, inp, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out>
Status launch_gelu_backward(Out* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_backward", {dinp, inp, dout}));
  gelu_backward_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(dinp, inp, dout, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace

// ---- kernel launchers

Status gelu_forward(float* out, const float* inp, size_t n, cudaStream_t stream) {
  return launch_gelu_forward(out, inp, n, stream);
}

Status gelu_forward(uint16_t* out, const float* inp, size_t n, cudaStream_t stream) {
  return launch_gelu_forward(out, inp, n, stream);
}

Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream) {
  return launch_gelu_backward(dinp, inp, dout, n, stream);
}

Status gelu_backward(uint16_t* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream) {
  return launch_gelu_backward(dinp, inp, dout, n, stream);
}

}  // namespace perigee::kernels::cuda
