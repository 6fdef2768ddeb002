// The wide bf16 attention forward (KernelVariants::attention_wide_forward; see attention_bf16_wide.cuh).
// Layout, precision and fragment layouts as the top of attention_bf16.cu says; the online softmax is that
// of attention_forward_bf16_kernel, step for step, so out and lse get its bits.
// Registers (ptxas, sm_90): 227 a thread and no spill at D = 64, 163 at D = 32.
#include "kernels/cuda/attention_bf16_wide.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention_bf16_tiles.cuh"

namespace perigee::kernels::cuda {
namespace {

using namespace attention_bf16_tiles;  // constants, mma and tile helpers (attention_bf16_tiles.cuh)

// 4 warps of 2 groups of 16 rows: 128 rows a block, as the default forward's 8 warps (not yet timed on a
// GPU).
constexpr int kWideWarps = 4;
constexpr int kWideGroups = 2;

// The wide forward (KernelVariants::attention_wide_forward), for a bf16 qkv on a 16-byte boundary: blocks of
// kWarps warps, each warp owning kM groups of 16 query rows whose Q fragments stay in registers, so that
// each K or V fragment read from shared memory feeds kM mma; the K and V tiles stream from qkv's rows with
// cp.async into two stages (no register staging). Per group the arithmetic is that of
// attention_forward_bf16_kernel: a group takes the key tiles its rows see (k0 <= its last row), in the
// same order, with the same operations, so out and lse get the same bits.
template <int D, int kWarps, int kM, typename Out>
__global__ void __launch_bounds__(kWarps * 32, D <= 32 ? 3 : 2)
    attention_forward_wide_kernel(Out* out, float* lse, const bf16* qkv, int T, int C, int NH, float scale) {
  constexpr int kThreads = kWarps * 32;
  constexpr int ld = ld_of<D>();
  constexpr int kTileElems = kTile * ld;
  constexpr int kWarpRows = kM * kRows;
  constexpr int kBlockRows = kWarps * kWarpRows;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kBlockRows][ld]
  bf16* kv_s = q_s + kBlockRows * ld;         // K stage 0, 1, V stage 0, 1: [64][ld] each
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kBlockRows;  // the longest rows start first
  const int w0 = q0 + warp * kWarpRows;                      // the warp's first query row
  const int hs = C / NH;
  const int64_t ld3 = 3 * static_cast<int64_t>(C);
  const bf16* q_g = qkv + static_cast<int64_t>(b) * T * ld3 + h * hs;
  const bf16* k_g = q_g + C;
  const bf16* v_g = q_g + 2 * C;
  const float scale2 = scale * kLog2e;
  const int tiles = (min(q0 + kBlockRows, T) - 1) / kTile + 1;
  auto prefetch = [&](int kt) {
    load_tile_async<D, kThreads>(kv_s + (kt % 2) * kTileElems, k_g, ld3, kTile, kt * kTile, T, hs);
    load_tile_async<D, kThreads>(kv_s + (2 + kt % 2) * kTileElems, v_g, ld3, kTile, kt * kTile, T, hs);
    async_commit();
  };

  load_tile_async<D, kThreads>(q_s, q_g, ld3, kBlockRows, q0, T, hs);
  prefetch(0);
  async_wait_all();
  __syncthreads();
  uint32_t qa[kM][D / 16][4];
  load_row_frags<D, kM>(qa, q_s + warp * kWarpRows * ld, lane);
  float o[kM][D / 8][4];
  float m[kM][2];  // per group, rows g0 + g and g0 + g + 8 (g = lane / 4): running max (log2 units)
  float l[kM][2];  // and this lane's partial sum
#pragma unroll
  for (int g = 0; g < kM; ++g) {
#pragma unroll
    for (int t = 0; t < D / 8; ++t) o[g][t][0] = o[g][t][1] = o[g][t][2] = o[g][t][3] = 0.0f;
    m[g][0] = m[g][1] = -INFINITY;
    l[g][0] = l[g][1] = 0.0f;
  }

  for (int kt = 0; kt < tiles; ++kt) {
    const int k0 = kt * kTile;
    const bf16* k_s = kv_s + (kt % 2) * kTileElems;
    const bf16* v_s = kv_s + (2 + kt % 2) * kTileElems;
    async_wait_all();
    __syncthreads();  // tile kt landed; every warp is done with tile kt - 1 (the other stage)
    if (kt + 1 < tiles) prefetch(kt + 1);
    bool active[kM];
#pragma unroll
    for (int g = 0; g < kM; ++g) active[g] = k0 <= w0 + kRows * g + kRows - 1;
    if (!active[kM - 1]) continue;  // the last group holds the warp's latest rows
    float s[kM][kNT][4];
    product_nt_groups<D, kM>(s, qa, k_s, active, lane);
#pragma unroll
    for (int g = 0; g < kM; ++g) {
      if (!active[g]) continue;
      const int g0 = w0 + kRows * g;
      // As attention_forward_bf16_kernel: m is finite from the first tile on (key 0 is visible to every
      // row), so exp2(-inf) = 0 gives alpha = 0 on the first tile and p = 0 for masked scores.
      const bool diagonal = k0 + kTile - 1 > g0;
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int t = 0; t < kNT; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float x = s[g][t][i] * scale2;
          if (diagonal && k0 + 8 * t + (lane % 4) * 2 + (i % 2) > g0 + lane / 4 + 8 * (i / 2)) x = -INFINITY;
          s[g][t][i] = x;
          mx[i / 2] = fmaxf(mx[i / 2], x);
        }
      }
      float alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(kFullMask, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(kFullMask, mx[r], 2));
        const float m_new = fmaxf(m[g][r], mx[r]);
        alpha[r] = exp2f(m[g][r] - m_new);
        m[g][r] = m_new;
        l[g][r] *= alpha[r];
      }
#pragma unroll
      for (int t = 0; t < kNT; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          s[g][t][i] = exp2f(s[g][t][i] - m[g][i / 2]);
          l[g][i / 2] += s[g][t][i];
        }
      }
#pragma unroll
      for (int t = 0; t < D / 8; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) o[g][t][i] *= alpha[i / 2];
      }
    }
    product_pv_groups<D, kM>(o, s, v_s, active, lane);
  }

#pragma unroll
  for (int g = 0; g < kM; ++g) {
    const int g0 = w0 + kRows * g;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[g][r] += __shfl_xor_sync(kFullMask, l[g][r], 1);
      l[g][r] += __shfl_xor_sync(kFullMask, l[g][r], 2);
      const int row = g0 + lane / 4 + 8 * r;
      if (lane % 4 == 0 && row < T) {
        lse[static_cast<int64_t>(bh) * T + row] = (m[g][r] + log2f(l[g][r])) * kLn2;
      }
      l[g][r] = 1.0f / l[g][r];
    }
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
#pragma unroll
      for (int i = 0; i < 4; ++i) o[g][t][i] *= l[g][i / 2];
    }
    store_rows<D, false>(out + static_cast<int64_t>(b) * T * C + h * hs, C, g0, T, hs, o[g], lane);
  }
}

// Q rows of a block, then two stages of K and V tiles.
template <int D>
constexpr size_t wide_shared_bytes() {
  return static_cast<size_t>(kWideWarps * kWideGroups * kRows + 4 * kTile) * ld_of<D>() * sizeof(bf16);
}

template <int D, typename Out>
Status launch_wide(Out* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH, float scale,
                   cudaStream_t stream) {
  constexpr int kBlockRows = kWideWarps * kWideGroups * kRows;
  constexpr size_t smem = wide_shared_bytes<D>();
  const auto kernel = attention_forward_wide_kernel<D, kWideWarps, kWideGroups, Out>;
  PERIGEE_CHECK(allow_shared_memory(kernel, smem));
  const dim3 grid(static_cast<unsigned>(B * NH), static_cast<unsigned>(ceil_div(T, kBlockRows)));
  kernel<<<grid, kWideWarps * 32, smem, stream>>>(out, lse, reinterpret_cast<const bf16*>(qkv), T, C, NH,
                                                  scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out>
Status wide_impl(Out* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH, float scale,
                 cudaStream_t stream) {
  const int hs = C / NH;
  PERIGEE_REQUIRE(hs <= kWideMaxHeadSize && reinterpret_cast<uintptr_t>(qkv) % 16 == 0, StatusCode::kInternal,
                  "attention_forward_wide_bf16: head size ", hs, " or an unaligned qkv (callers check both)");
  if (hs <= 32) return launch_wide<32>(out, lse, qkv, B, T, C, NH, scale, stream);
  return launch_wide<64>(out, lse, qkv, B, T, C, NH, scale, stream);
}

}  // namespace

size_t attention_wide_shared_bytes(int head_size) {
  if (head_size <= 32) return wide_shared_bytes<32>();
  if (head_size <= kWideMaxHeadSize) return wide_shared_bytes<64>();
  return 0;
}

Status attention_forward_wide_bf16(float* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH,
                                   float scale, cudaStream_t stream) {
  return wide_impl(out, lse, qkv, B, T, C, NH, scale, stream);
}

Status attention_forward_wide_bf16(uint16_t* out, float* lse, const uint16_t* qkv, int B, int T, int C,
                                   int NH, float scale, cudaStream_t stream) {
  return wide_impl(out, lse, qkv, B, T, C, NH, scale, stream);
}

}  // namespace perigee::kernels::cuda
