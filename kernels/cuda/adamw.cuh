// AdamW over flat fp32 buffers of n floats (params, grads, m, v), one fused elementwise pass with bias
// correction and decoupled weight decay: g = grad_scale * grad, m = b1 m + (1-b1) g,
// v = b2 v + (1-b2) g^2, p -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p),
// mhat = m / (1-b1^step), vhat = v / (1-b2^step). The bias corrections are computed once on the host in
// double (as the CPU backend does); the update is fp32. Grid-stride loop.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "core/status.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::cuda {

Status adamw_update(float* params, const float* grads, float* m, float* v, size_t n, const AdamWParams& hp,
                    cudaStream_t stream);

}  // namespace perigee::kernels::cuda
