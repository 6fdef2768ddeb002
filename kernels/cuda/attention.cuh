// Causal multi-head self-attention, fp32, flash-style (the T x T probabilities are never stored).
// qkv [B, T, 3C] packed (q | k | v), head h in columns [h*hs, (h+1)*hs) of each third, hs = C/NH <= 128;
// out/dout [B, T, C]; dqkv [B, T, 3C] written (each element by one thread). Scores are scaled by 1/sqrt(hs).
// State saved for the backward: lse [B, NH, T], the log-sum-exp of each row's scaled scores, so
// P[i, j] = exp(s[i, j] - lse[i]) can be recomputed exactly as the forward saw it.
// Tiles of R = 64 query rows x 64 key rows live in shared memory (rows padded by 4 floats so float4 reads
// of rows and columns are bank-conflict free); a block of 4R threads gives each thread a 4 x R/16 piece of
// a score tile (rows 4*ty.., columns tx + 16*j) and 4 rows x hs/16 columns of an output tile. The head size
// is padded with zeros to the kernel's compiled width (32, 64 or 128). A pass whose 64-row kernels need
// more shared memory than the device allows per block (sm_86/89, and sm_80 for the backward at width 128)
// runs with R = 32 instead (attention_tiles.hpp): the same sums over another tiling, so the bits differ
// from the 64-row kernels' but are reproducible on that device.
//   forward, one block per (b, h, query tile): online softmax over the key tiles up to the diagonal;
//   backward, no atomics, each output element owned by one thread:
//     1. one block per (b, h, query tile): first D_i = sum_j P_ij dP_ij (dP = dO V^T, double
//        accumulation; saved to scratch), then dQ = scale * sum_j P_ij (dP_ij - D_i) K_j;
//     2. one block per (b, h, key tile), over the query tiles from the diagonal on:
//        dV = P^T dO and dK = scale * dS^T Q.
// Every loop runs in a fixed order, so results are bit-reproducible.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/kernel_variants.hpp"

namespace perigee::kernels::cuda {

inline constexpr int kAttentionMaxHeadSize = 128;

// Floats of attention state (the log-sum-exp rows) for one layer.
inline size_t attention_state_floats(int B, int T, int NH) {
  return static_cast<size_t>(B) * NH * T;
}

// `shared_limit`: the bytes of shared memory a block may have on the device (its opt-in limit), which
// picks the rows per tile (attention_fp32_rows). `runs`, when given, counts the pass and whether it ran
// 32-row tiles.
Status attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                         size_t shared_limit, cudaStream_t stream, KernelVariantRuns* runs = nullptr);

// Uses `scratch` for D (B*NH*T floats).
Status attention_backward(float* dqkv, const float* dout, const float* qkv, const float* lse, int B, int T,
                          int C, int NH, size_t shared_limit, DeviceScratch& scratch, cudaStream_t stream,
                          KernelVariantRuns* runs = nullptr);

}  // namespace perigee::kernels::cuda
