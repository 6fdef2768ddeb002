// Residual add, elementwise fp32 over flat buffers of n floats: out = a + b (out may alias a or b: each
// element is read and written by the same thread). Grid-stride loop.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

Status residual_forward(float* out, const float* a, const float* b, size_t n, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
