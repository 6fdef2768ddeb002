// Causal multi-head self-attention on bf16 tensor cores (mixed precision), flash-style.
// Same layouts and semantics as attention.cuh: qkv [B, T, 3C] packed (q | k | v), head h in columns
// [h*hs, (h+1)*hs) of each third; out/dout [B, T, C]; dqkv [B, T, 3C] written; scores scaled
// by 1/sqrt(hs); state lse [B, NH, T] (log-sum-exp of each row's scaled scores, fp32).
// Precision: Q, K, V, dO (fp32 in memory; Q, K, V may be bf16 already) are rounded to bf16 as they are
// staged into shared memory;
// the products S = Q K^T, O = P V, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q run on bf16 tensor
// cores (mma.sync m16n8k16) with fp32 accumulation; softmax statistics, D_i = dO_i . O_i and every
// output stay fp32 until stored (bf16 storage of out or dqkv: rounded once as written). P and dS are
// rounded to bf16 only as the operands of the next product.
// Expected error against the fp32 CPU backend: about 1e-2 relative (bf16 has an 8-bit mantissa).
// Deterministic: no atomics, every output element written by one thread in a fixed loop order.
// Head sizes: hs a multiple of 16, at most 128 (others: kInvalidArgument; callers fall back to the
// fp32 kernel of attention.cuh). Any T >= 1.
// Tiling: each warp owns 16 rows (forward: blocks of 8 warps, 128 query rows; backward: blocks of 4
// warps, 64 rows) and walks the other side in tiles of 64 keys or queries, skipping tiles its causal mask
// hides; the head is padded with zeros to 32, 64 or 128 columns. Scores, P and dS stay in registers. The
// forward reads the K/V tiles of qkv (fp32 or bf16) into registers one tile ahead and needs no scratch;
// the backward converts qkv and dout once into bf16 copies in scratch (B*T*4C bf16 plus D, B*NH*T fp32)
// and streams tiles from them with cp.async, double-buffered. Variants awaiting a GPU run
// (kernel_variants.hpp): a backward converting dout alone and reading a bf16 qkv in place, and a wide
// forward (two groups of 16 rows per warp); the same bits.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/kernel_variants.hpp"

namespace perigee::kernels::cuda {

// Whether the bf16 kernels take this head size.
bool attention_bf16_supports(int C, int NH);

// lse [B, NH, T] as in attention.cuh.
Status attention_forward_bf16(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant = {},
                              KernelVariantRuns* runs = nullptr);

// `out` is the forward's output (D_i = dO_i . O_i, fp32). Uses `scratch` for D and the bf16 copies of
// qkv and dout (of dout alone where `variant` reads a bf16 qkv in place: not when dqkv overlaps qkv);
// dqkv is written. `runs`, when given, counts the launches that took a variant's path.
Status attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant = {},
                               KernelVariantRuns* runs = nullptr);
// The scratch bytes it takes: with in_place, the bf16 qkv is read as it is (its copy not made); the
// one-pass variant's accumulator where `variant` turns it on and the shape takes it.
size_t attention_backward_bf16_scratch_bytes(int B, int T, int C, int NH, bool in_place,
                                             const KernelVariants& variant);

// The same with bf16 storage (kernels/act.hpp) for the output `out` of the forward and, in the backward,
// for dqkv (written) and the forward's `out` (read); qkv fp32 or bf16 (its bits are the tiles' operands
// as they are); dout and lse stay fp32.
Status attention_forward_bf16(uint16_t* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant = {},
                              KernelVariantRuns* runs = nullptr);
Status attention_backward_bf16(uint16_t* dqkv, const float* dout, const float* qkv, const uint16_t* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant = {},
                               KernelVariantRuns* runs = nullptr);
Status attention_forward_bf16(uint16_t* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant = {},
                              KernelVariantRuns* runs = nullptr);
Status attention_backward_bf16(uint16_t* dqkv, const float* dout, const uint16_t* qkv, const uint16_t* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant = {},
                               KernelVariantRuns* runs = nullptr);

}  // namespace perigee::kernels::cuda
