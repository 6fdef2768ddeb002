// bf16 conversion of flat buffers (raw uint16_t bits, see core/bf16.hpp).
// to_bf16: out[i] = bf16 bits of in[i], nearest with ties to even, a NaN stays NaN: the integer rule
// of core/bf16.hpp, so the GPU writes the CPU backend's bits (the intrinsic __float2bfloat16_rn
// would turn every NaN into one canonical NaN). from_bf16: out[i] = float(in[i]) * s in fp32.
// scale_bf16: x[i] = bf16(float(x[i]) * s) in place, one fp32 multiply and one rounding (the host rule
// of collectives' bf16 average, collectives/bf16_reduce.hpp).
// Grid-stride loops, 4 elements per thread and step when the pointers allow it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

Status to_bf16(uint16_t* out, const float* in, size_t n, cudaStream_t stream);
Status from_bf16(float* out, const uint16_t* in, float s, size_t n, cudaStream_t stream);
Status scale_bf16(uint16_t* x, float s, size_t n, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
