// The wide bf16 attention forward (KernelVariants::attention_wide_forward, off by default until timed on
// a GPU), used by attention_forward_bf16 (attention_bf16.cu), which checks the problem first. Blocks of 4
// warps, each warp owning two groups of 16 query rows whose Q fragments stay in registers, so that each K
// or V fragment read from shared memory feeds two mma (against one in the default kernel); K and V tiles
// stream from qkv's rows with cp.async into two stages. Same semantics, layouts and bits as
// attention_forward_bf16 with a bf16 qkv.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

// The head sizes it takes (two groups of accumulators and Q fragments leave no registers for 128).
inline constexpr int kWideMaxHeadSize = 64;

// Dynamic shared memory it launches with at this head size (0 above kWideMaxHeadSize).
size_t attention_wide_shared_bytes(int head_size);

// qkv bf16 on a 16-byte boundary, C/NH <= kWideMaxHeadSize (kInternal otherwise); scale = 1/sqrt(hs).
Status attention_forward_wide_bf16(float* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH,
                                   float scale, cudaStream_t stream);
Status attention_forward_wide_bf16(uint16_t* out, float* lse, const uint16_t* qkv, int B, int T, int C,
                                   int NH, float scale, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
