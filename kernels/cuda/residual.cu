// Residual add, fp32 elementwise (see residual.cuh).
#include "kernels/cuda/residual.cuh"

#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kBlock = 256;

// ---- CUDA kernels

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

}  // namespace

// ---- kernel launchers

Status residual_forward(float* out, const float* a, const float* b, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("residual_forward", {out, a, b}));
  residual_forward_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(out, a, b, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
