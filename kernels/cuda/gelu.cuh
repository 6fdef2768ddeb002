// GELU, tanh approximation (GPT-2), elementwise fp32 over flat buffers of n floats:
// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x * sigmoid(2u) (the same
// function, full relative precision), as the CPU backend does. The backward writes
// dinp = gelu'(x) dout with gelu'(x) = s + 2 x s (1 - s) du/dx, s = sigmoid(2u). Grid-stride loops.
// Every tensor may be fp32 or bf16 storage (kernels/act.hpp), each on its own: bf16 inputs are widened
// on load, bf16 outputs rounded once on store; the arithmetic is fp32 in every combination.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"
#include "kernels/act.hpp"

namespace perigee::kernels::cuda {

Status gelu_forward(Act out, ConstAct inp, size_t n, cudaStream_t stream);
Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
