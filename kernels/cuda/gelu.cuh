// GELU, tanh approximation (GPT-2), elementwise fp32 over flat buffers of n floats:
// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x * sigmoid(2u) (the same
// function, full relative precision), as the CPU backend does. The backward writes
// dinp = gelu'(x) dout with gelu'(x) = s + 2 x s (1 - s) du/dx, s = sigmoid(2u). Grid-stride loops.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

Status gelu_forward(float* out, const float* inp, size_t n, cudaStream_t stream);
Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream);
// The same with the output stored as bf16 bits (kernels/act.hpp), rounded once from the fp32 value.
Status gelu_forward(uint16_t* out, const float* inp, size_t n, cudaStream_t stream);
Status gelu_backward(uint16_t* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
