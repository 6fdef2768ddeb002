// Token + position embedding, fp32. out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] with wte [V, C],
// wpe [maxT, C], out/dout [B, T, C], tokens [B, T] on the device.
// Forward: one thread per output element; a negative token yields NaN (it is not read from wte).
// Backward, deterministic without atomics, accumulating (+=) into dwte and dwpe:
//   dwpe: one thread per (t, c) adds dout[b, t, c] for b = 0, 1, ... in order;
//   dwte: the positions are stably sorted by token id (CUB radix sort of (token, position) pairs), and
//         one block per run of equal tokens adds that token's dout rows in position order.
// Both add in fp32 in the same order as the CPU backend, so they match it bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

// A token outside [0, V) gives a NaN row (read nowhere) and no gradient.
Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                       int C, int V, cudaStream_t stream);

// Uses `scratch` for the sort: encoder_backward_scratch_bytes (about 3 B*T ints plus CUB's temporary
// storage, which CUB sizes for the current device).
Status encoder_backward_scratch_bytes(int B, int T, size_t* bytes);
Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                        int C, int V, DeviceScratch& scratch, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
