// LayerNorm over the last dimension, fp32 storage, double accumulation of every reduction.
// inp/out/dout/dinp [N, C], weight/bias [C], mean/rstd [N]; eps = 1e-5f, biased variance.
// Forward: one warp per row (two-pass mean and variance in double, butterfly lane sums), optionally
// with the residual add that produces the row fused in front.
// Backward, accumulating (+=): dinp one warp per row; dweight/dbias as a deterministic two-stage
// reduction: stage 1 gives each block a fixed range of kLayerNormRowsPerPartial rows and writes
// per-range partial sums (double) to scratch; stage 2 adds the partials of each column in range order
// and adds the total to dweight/dbias. For C <= 1600 (and 2 x 8 x C doubles within the device's
// shared memory per block) stage 1 and dinp are one kernel (8 warps, rows w, w + 8, ... per warp,
// per-warp column sums in shared memory, added in warp order); wider rows run dinp and stage 1 as two
// kernels with the same sums in the same order. C % 4 == 0 with C <= 1024 and 16-byte aligned
// operands takes a float4 version of the fused kernel that reads each row once into registers and
// keeps each lane's column sums in registers; its lanes split a row's mean terms differently, so
// dinp may differ in the last bit from an unaligned call of the same shape. The order depends on the
// shape, the operands' alignment and the device's shared memory only: a re-run is bit-identical.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

inline constexpr int kLayerNormRowsPerPartial = 64;

Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C, cudaStream_t stream);
// The same with `out` stored as bf16 bits (kernels/act.hpp), each rounded once from its fp32 value.
Status layernorm_forward(uint16_t* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C, cudaStream_t stream);

// residual = a + b (fp32; may alias a or b), then out = layernorm(residual) as above, in one kernel: a and
// b read once, the sum written once and read back only from cache. The same bits as residual_forward
// (residual.cuh) followed by layernorm_forward.
Status residual_layernorm_forward(float* residual, float* out, float* mean, float* rstd, const float* a,
                                  const float* b, const float* weight, const float* bias, int N, int C,
                                  cudaStream_t stream);
Status residual_layernorm_forward(float* residual, uint16_t* out, float* mean, float* rstd, const float* a,
                                  const float* b, const float* weight, const float* bias, int N, int C,
                                  cudaStream_t stream);

// Takes layernorm_backward_scratch_bytes(N, C) of `scratch` (the dweight and dbias partials).
Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* mean, const float* rstd, int N, int C,
                          DeviceScratch& scratch, cudaStream_t stream);
size_t layernorm_backward_scratch_bytes(int N, int C);

}  // namespace perigee::kernels::cuda
