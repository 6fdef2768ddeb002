// The one-pass bf16 attention backward (KernelVariants::attention_one_pass_backward, off by default until
// timed on a GPU), used by attention_backward_bf16 (attention_bf16.cu), which checks the problem, computes
// D and stages the bf16 operands first. One block per (key block of 64 keys, b*NH + h) walks the query
// tiles from the diagonal on, as the default dK/dV pass does (dK and dV get its bits), and also adds each
// tile's dQ partial dS K (5 products per pair of tiles instead of the two passes' 7).
// Deterministic: the partials of a query tile are added in a fixed order (key block m, m-1, ..., 0) into an
// fp32 accumulator in scratch, each block waiting on a per-tile counter for the block before it; key block
// 0 adds the last partial and writes dqkv's q third. The blocks of a head take their key block from a
// ticket in the order they start, last first, so a block only ever waits on one already running; a wait
// longer than 10 s traps (a CUDA error, never a hang).
// dQ differs from the default's in the rounding of its sum (per-tile fp32 partials against one running
// accumulator), so it is compared within tolerance; the order is fixed, so reruns give the same bits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/status.hpp"
#include "kernels/cuda/attention_bf16_tiles.cuh"

namespace perigee::kernels::cuda {

// The head sizes it takes (its shared memory at 64 is 64 KiB; 128 would leave one block per SM).
inline constexpr int kOnePassMaxHeadSize = 64;

// Dynamic shared memory it launches with at this head size (0 above kOnePassMaxHeadSize).
size_t attention_one_pass_shared_bytes(int head_size);

// Whether it takes this problem: hs <= kOnePassMaxHeadSize and B*NH within a grid's y limit.
bool attention_one_pass_supports(int B, int NH, int hs);

// Scratch it needs beside the backward's own: the fp32 dQ accumulator (B*T*C floats), one counter per
// (b*NH + h, query tile of 64) and one ticket per head, each piece rounded up to the scratch alignment.
size_t attention_one_pass_scratch_bytes(int B, int T, int C, int NH);

// dqkv written whole (dq, dk, dv); dsum = D [B, NH, T] and lse as the backward computed them; `scratch` of
// attention_one_pass_scratch_bytes; scale = 1/sqrt(hs).
Status attention_backward_one_pass_bf16(float* dqkv, const float* dsum,
                                        const attention_bf16_tiles::BackwardRows& src, const float* lse,
                                        int B, int T, int C, int NH, float scale, void* scratch,
                                        cudaStream_t stream);
Status attention_backward_one_pass_bf16(uint16_t* dqkv, const float* dsum,
                                        const attention_bf16_tiles::BackwardRows& src, const float* lse,
                                        int B, int T, int C, int NH, float scale, void* scratch,
                                        cudaStream_t stream);

}  // namespace perigee::kernels::cuda
