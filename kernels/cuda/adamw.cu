// AdamW, fused fp32 elementwise update (see adamw.cuh).
#include "kernels/cuda/adamw.cuh"

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kBlock = 256;

struct AdamWConstants {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  float inv_bias1;  // 1 / (1 - beta1^step)
  float inv_bias2;  // 1 / (1 - beta2^step)
};

// ---- CUDA kernels

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, size_t n,
                             AdamWConstants k) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = grads[i] * k.grad_scale;
    const float mi = k.beta1 * m[i] + (1.0f - k.beta1) * g;
    const float vi = k.beta2 * v[i] + (1.0f - k.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi * k.inv_bias1;
    const float vhat = vi * k.inv_bias2;
    const float p = params[i];
    params[i] = p - k.lr * (mhat / (sqrtf(vhat) + k.eps) + k.weight_decay * p);
  }
}

}  // namespace

// ---- kernel launchers

Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& hp,
                    cudaStream_t stream) {
  PERIGEE_CHECK(check_adamw_params("adamw_update", hp));
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("adamw_update", {params, grads, m, v}));
  const double step = static_cast<double>(hp.step);
  const AdamWConstants k{hp.lr,
                         hp.beta1,
                         hp.beta2,
                         hp.eps,
                         hp.weight_decay,
                         hp.grad_scale,
                         static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta1), step))),
                         static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta2), step)))};
  adamw_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(params, grads, m, v, n, k);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
