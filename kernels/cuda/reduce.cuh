// Reductions and scaling over flat fp32 buffers of n floats.
// sum_squares: the sum of x[i]^2 in double, in a fixed two-stage order that depends on n only:
// stage 1 cuts x into chunks of kSumSquaresChunk elements, one block of kSumSquaresBlock threads per chunk
// (thread i sums elements i, i + kSumSquaresBlock, ... of the chunk, then a fixed block reduction);
// stage 2, one block, adds the chunk sums the same way. The result stays on the device (`result`).
// scale: x *= s in fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

inline constexpr size_t kSumSquaresChunk = 8192;
inline constexpr int kSumSquaresBlock = 256;

// *result (device memory) = sum of x[i]^2; n may be 0 (result 0). Takes sum_squares_scratch_bytes(n)
// of `scratch` (the partial sums).
Status sum_squares(const float* x, size_t n, double* result, DeviceScratch& scratch, cudaStream_t stream);
size_t sum_squares_scratch_bytes(size_t n);

Status scale(float* x, float s, size_t n, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
