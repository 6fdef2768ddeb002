// Causal multi-head self-attention on bf16 tensor cores (see attention_bf16.cuh for the semantics).
// Layout as attention.cuh: qkv [B, T, 3C] fp32, head h in columns [h*hs, (h+1)*hs) of each third.
// Precision: tiles are rounded to bf16 as they are staged into shared memory; products run as wmma
// 16x16x16 bf16 fragments with fp32 accumulators; softmax statistics, D and outputs are fp32.
// Tiling: blocks of 4 warps (128 threads) own 64 rows (query rows in the forward and the dQ pass, key
// rows in the dK/dV pass), each warp 16 of them, and walk the other side in tiles of 64. Shared tiles
// are [64][D + 8] bf16 (D = the head size padded with zeros to 32, 64 or 128; the 8-element pad keeps
// wmma row reads conflict-free). Element-wise work on accumulators (P, dS, the O rescale) runs in
// registers: each warp learns once which (row, column) every element of its accumulator fragments
// holds, by loading index matrices into a fragment (the wmma layout is unspecified but the same for all
// fragments of a type). Only the forward's row max and row sum go through a per-warp fp32 score buffer.
//   forward, one block per (b*NH + h, query tile): online softmax, lse in natural-log units;
//   backward pass 1, one block per (b*NH + h, query tile): D_i = sum_j P_ij dP_ij (to scratch), then dQ;
//   backward pass 2, one block per (b*NH + h, key tile), query tiles from the diagonal on: dK and dV.
// The backward first converts qkv and dout into head-major bf16 planes in scratch, so that both passes
// stream their tiles with cp.async, double-buffered.
// H100, B=16 T=1024 C=768 NH=12: forward 0.57 ms, backward 1.75 ms (fp32 kernel: 1.21 and 4.93 ms).
// Every loop runs in a fixed order and no atomics are used, so results are bit-reproducible.
#include "kernels/cuda/attention_bf16.cuh"

#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <cstdint>

namespace perigee::kernels::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;              // rows per block and rows per tile of the other side
constexpr int kWarps = 4;              // each warp owns 16 of the block's 64 rows
constexpr int kThreads = kWarps * 32;  // 128
constexpr int kRows = 16;              // rows per warp (one fragment high)
constexpr int kFrag = 16;              // wmma m = n = k
constexpr int kLdP = kTile + 8;        // row stride (bf16) of per-warp [16][64] P / dS strips
constexpr int kLdI = kFrag + 4;        // row stride (fp32) of the backward's per-warp [16][16] buffers
constexpr int kMaxHeadSize = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;
constexpr int kElems = FragC::num_elements;

// Shared-memory geometry for a compiled head width D (hs <= D, padded with zeros).
template <int D>
struct Geometry {
  static_assert(D == 32 || D == 64 || D == 128, "compiled head widths are 32, 64 and 128");
  static constexpr int kLdT = D + 8;                        // bf16 row stride of [kTile][D] tiles
  static constexpr int kTileElems = kTile * kLdT;           // one tile (bytes: multiple of 1 KiB)
  static constexpr int kLdF = (D > kTile ? D : kTile) + 4;  // fp32 row stride of per-warp buffers
  static constexpr int kWarpFloats = kRows * kLdF;          // one per-warp fp32 buffer
  static constexpr int kFrags = D / kFrag;                  // fragments across the head width
  static constexpr int kKSteps = D / kFrag;                 // k steps of a product over the head
};

// ---- CUDA kernels (device helpers first)

// The next `count` values of T from a shared-memory cursor (every piece's size keeps 32-byte alignment).
template <typename T>
__device__ __forceinline__ T* carve(unsigned char*& cursor, int count) {
  T* p = reinterpret_cast<T*>(cursor);
  cursor += count * sizeof(T);
  return p;
}

// tile[r][d] = bf16(src[(row0 + r) * ld + d]) for rows < T and d < hs, else 0. Four columns per thread
// (hs is a multiple of 16); `vec`: src rows are 16-byte aligned, read as float4.
template <int D>
__device__ __forceinline__ void load_tile(bf16* tile, const float* src, int64_t ld, int row0, int T, int hs,
                                          bool vec) {
  constexpr int kQuads = D / 4;
  for (int idx = threadIdx.x; idx < kTile * kQuads; idx += kThreads) {
    const int r = idx / kQuads;
    const int c = (idx % kQuads) * 4;
    const int row = row0 + r;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (row < T && c < hs) {
      const float* p = src + static_cast<int64_t>(row) * ld + c;
      if (vec) {
        v = __ldg(reinterpret_cast<const float4*>(p));
      } else {
        v = make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
      }
    }
    __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(tile + r * Geometry<D>::kLdT + c);
    dst[0] = __floats2bfloat162_rn(v.x, v.y);
    dst[1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

// rows[e], cols[e]: the (row, column) of element e of every accumulator fragment, read by loading index
// matrices (buf: a per-warp fp32 buffer of 16 rows with stride ld, overwritten).
__device__ __forceinline__ void fragment_indices(float* buf, int ld, int lane, int (&rows)[kElems],
                                                 int (&cols)[kElems]) {
  FragC f;
#pragma unroll
  for (int pass = 0; pass < 2; ++pass) {
    for (int idx = lane; idx < kFrag * kFrag; idx += 32) {
      buf[(idx / kFrag) * ld + idx % kFrag] = static_cast<float>(pass == 0 ? idx / kFrag : idx % kFrag);
    }
    __syncwarp();
    wmma::load_matrix_sync(f, buf, ld, wmma::mem_row_major);
    __syncwarp();
#pragma unroll
    for (int e = 0; e < kElems; ++e) (pass == 0 ? rows : cols)[e] = static_cast<int>(f.x[e]);
  }
}

// acc = A[0..16)[0..D) * B[n0..n0+16)[0..D)^T: A and B are bf16 tiles with row stride kLdT (A already
// offset to the warp's 16 rows, B to its 16 rows n0).
template <int D>
__device__ __forceinline__ void product_nt(FragC& acc, const bf16* A, const bf16* B) {
  wmma::fill_fragment(acc, 0.0f);
#pragma unroll
  for (int k = 0; k < Geometry<D>::kKSteps; ++k) {
    FragA a;
    FragBCol b;
    wmma::load_matrix_sync(a, A + k * kFrag, Geometry<D>::kLdT);
    wmma::load_matrix_sync(b, B + k * kFrag, Geometry<D>::kLdT);
    wmma::mma_sync(acc, a, b, acc);
  }
}

// acc[f] += S[0..16)[0..64) * X[0..64)[16 f..16 f + 16): S a per-warp bf16 strip (stride kLdP), X a
// [kTile][D] bf16 tile.
template <int D>
__device__ __forceinline__ void accumulate_strip(FragC (&acc)[Geometry<D>::kFrags], const bf16* S,
                                                 const bf16* X) {
#pragma unroll
  for (int k = 0; k < kTile / kFrag; ++k) {
    FragA a;
    wmma::load_matrix_sync(a, S + k * kFrag, kLdP);
#pragma unroll
    for (int f = 0; f < Geometry<D>::kFrags; ++f) {
      FragBRow b;
      wmma::load_matrix_sync(b, X + k * kFrag * Geometry<D>::kLdT + f * kFrag, Geometry<D>::kLdT);
      wmma::mma_sync(acc[f], a, b, acc[f]);
    }
  }
}

// dst[(row0 + r) * ld + d] (+)= acc[r][d] for rows < T and d < hs: the fragments go through the warp's
// fp32 buffer (stride kLdF) so that the global accesses are coalesced.
template <int D, bool kAccumulate>
__device__ __forceinline__ void write_rows(float* dst, int64_t ld, int row0, int T, int hs,
                                           const FragC (&acc)[Geometry<D>::kFrags], float* buf, int lane) {
#pragma unroll
  for (int f = 0; f < Geometry<D>::kFrags; ++f) {
    wmma::store_matrix_sync(buf + f * kFrag, acc[f], Geometry<D>::kLdF, wmma::mem_row_major);
  }
  __syncwarp();
  for (int idx = lane; idx < kRows * hs; idx += 32) {
    const int r = idx / hs;
    const int d = idx % hs;
    if (row0 + r >= T) continue;
    float* p = dst + static_cast<int64_t>(row0 + r) * ld + d;
    const float v = buf[r * Geometry<D>::kLdF + d];
    *p = kAccumulate ? *p + v : v;
  }
  __syncwarp();
}

// One block per (b*NH + h = blockIdx.x, query tile). Per key tile each warp computes its 16 x 64 scores,
// the online softmax runs two lanes per row over the warp's fp32 score buffer, P goes to a bf16 strip
// and O (accumulator fragments, in registers) is rescaled and advanced by P V.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_forward_bf16_kernel(float* out, float* lse, const float* qkv, int T, int C, int NH, float scale,
                                  bool vec) {
  using G = Geometry<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  unsigned char* cursor = smem;
  bf16* q_s = carve<bf16>(cursor, G::kTileElems);
  bf16* k_s = carve<bf16>(cursor, G::kTileElems);
  bf16* v_s = carve<bf16>(cursor, G::kTileElems);
  float* f_s = carve<float>(cursor, kWarps * G::kWarpFloats) + warp * G::kWarpFloats;  // scores
  bf16* p_s = carve<bf16>(cursor, kWarps * kRows * kLdP) + warp * kRows * kLdP;        // P strip
  float* alpha_s = carve<float>(cursor, kWarps * kRows) + warp * kRows;                // per-row factor

  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q_tile = gridDim.y - 1 - blockIdx.y;  // the longest rows start first
  const int q0 = q_tile * kTile;
  const int w0 = q0 + warp * kRows;  // the warp's first query row
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;
  const float scale2 = scale * kLog2e;  // scores in log2 units: exp(x) = exp2(x log2 e)

  int e_row[kElems];
  int e_col[kElems];
  fragment_indices(f_s, G::kLdF, lane, e_row, e_col);
  load_tile<D>(q_s, q_g, ld, q0, T, hs, vec);

  FragC o[G::kFrags];
#pragma unroll
  for (int f = 0; f < G::kFrags; ++f) wmma::fill_fragment(o[f], 0.0f);
  // Softmax lanes: row r = lane / 2, columns c0 .. c0 + 32 of the key tile; both lanes of a row keep the
  // same m (running max, log2 units) and l (running sum).
  const int r = lane / 2;
  const int c0 = (lane % 2) * (kTile / 2);
  const int row = w0 + r;
  float m = -INFINITY;
  float l = 0.0f;

  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // every warp is done with the previous k_s, v_s (and q_s is loaded)
    load_tile<D>(k_s, k_g, ld, k0, T, hs, vec);
    load_tile<D>(v_s, v_g, ld, k0, T, hs, vec);
    __syncthreads();
#pragma unroll
    for (int n = 0; n < kTile / kFrag; ++n) {
      FragC s;
      product_nt<D>(s, q_s + warp * kRows * G::kLdT, k_s + n * kFrag * G::kLdT);
      wmma::store_matrix_sync(f_s + n * kFrag, s, G::kLdF, wmma::mem_row_major);
    }
    __syncwarp();
    // Key k0 is visible to every row of the tile (row >= q0 >= k0), so m_new is finite from the first
    // tile on: exp2(-inf) = 0 gives alpha = 0 on the first tile and p = 0 for masked scores.
    float x[kTile / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTile / 2; ++j) {
      const int col = k0 + c0 + j;
      x[j] = col <= row ? f_s[r * G::kLdF + c0 + j] * scale2 : -INFINITY;
      tile_max = fmaxf(tile_max, x[j]);
    }
    const float m_new = fmaxf(m, fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1)));
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kTile / 2; j += 2) {
      const float p0 = exp2f(x[j] - m_new);
      const float p1 = exp2f(x[j + 1] - m_new);
      sum += p0;
      sum += p1;
      *reinterpret_cast<__nv_bfloat162*>(p_s + r * kLdP + c0 + j) = __floats2bfloat162_rn(p0, p1);
    }
    const float alpha = exp2f(m - m_new);
    l = l * alpha + (sum + __shfl_xor_sync(kFullMask, sum, 1));  // a + b == b + a: both lanes agree
    m = m_new;
    if (lane % 2 == 0) alpha_s[r] = alpha;
    __syncwarp();
#pragma unroll
    for (int e = 0; e < kElems; ++e) {
      const float a = alpha_s[e_row[e]];
#pragma unroll
      for (int f = 0; f < G::kFrags; ++f) o[f].x[e] *= a;
    }
    accumulate_strip<D>(o, p_s, v_s);
  }

  __syncwarp();
  if (lane % 2 == 0) {
    alpha_s[r] = 1.0f / l;  // l >= 1: the row maximum contributes exp2(0)
    if (row < T) lse[static_cast<int64_t>(bh) * T + row] = (m + log2f(l)) * kLn2;
  }
  __syncwarp();
#pragma unroll
  for (int e = 0; e < kElems; ++e) {
    const float inv_l = alpha_s[e_row[e]];
#pragma unroll
    for (int f = 0; f < G::kFrags; ++f) o[f].x[e] *= inv_l;
  }
  write_rows<D, false>(out + static_cast<int64_t>(b) * T * C + h * hs, C, w0, T, hs, o, f_s, lane);
}

// The backward reads bf16 copies of qkv and dout made once per call, head-major [which][B*NH][T][hs]
// (which: q, k, v, then dout), so that tiles stream into shared memory with cp.async (16 bytes a copy,
// zero-filled past T and past hs) while the previous tile is being used.
__global__ void convert_bf16_kernel(bf16* dst, const float* qkv, const float* dout, int B, int T, int C,
                                    int NH, bool vec) {
  const int hs = C / NH;
  const int64_t quads = static_cast<int64_t>(B) * T * (4 * C) / 4;  // 3C of qkv and C of dout per row
  const int64_t plane = static_cast<int64_t>(B) * T * C;            // elements per `which`
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < quads;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bt = idx / C;  // (4C / 4) quads per row
    const int col = static_cast<int>(idx % C) * 4;
    const int which = col / C;
    const int h = (col % C) / hs;
    const int d = col % hs;
    const float* src = which < 3 ? qkv + bt * 3 * C + col : dout + bt * C + (col - 3 * C);
    const float4 v = vec ? __ldg(reinterpret_cast<const float4*>(src))
                         : make_float4(__ldg(src), __ldg(src + 1), __ldg(src + 2), __ldg(src + 3));
    const int64_t b = bt / T;
    const int64_t t = bt % T;
    __nv_bfloat162* out =
        reinterpret_cast<__nv_bfloat162*>(dst + which * plane + ((b * NH + h) * T + t) * hs + d);
    out[0] = __floats2bfloat162_rn(v.x, v.y);
    out[1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

// Asynchronous copy of `bytes` (<= size, the rest zero-filled) from global to shared memory.
template <int kSize>
__device__ __forceinline__ void copy_async(void* dst, const void* src, int bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (kSize == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(s), "l"(src), "n"(kSize),
                 "r"(bytes));
  }
}
__device__ __forceinline__ void async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// tile[r][d] = src[(row0 + r) * hs + d] (a head-major bf16 plane), zero past T and past hs.
template <int D>
__device__ __forceinline__ void load_tile_async(bf16* tile, const bf16* src, int row0, int T, int hs) {
  constexpr int kChunks = D / 8;  // 16-byte pieces of a row
  for (int idx = threadIdx.x; idx < kTile * kChunks; idx += kThreads) {
    const int r = idx / kChunks;
    const int c = (idx % kChunks) * 8;
    const bool in = row0 + r < T && c < hs;
    copy_async<16>(tile + r * Geometry<D>::kLdT + c, in ? src + static_cast<int64_t>(row0 + r) * hs + c : src,
                   in ? 16 : 0);
  }
}

// Backward pass 1, one block per (b*NH + h, query tile): D_i = sum_j P_ij dP_ij (saved to dsum), then
// dQ_i += scale * sum_j P_ij (dP_ij - D_i) K_j: 2 (q_tile + 1) steps over the key tiles, each tile
// prefetched (double-buffered) during the step before. P and dP stay in accumulator fragments; dS goes
// to the warp's bf16 strip as the operand of dS K.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_bf16_kernel(float* dqkv, float* dsum, const bf16* planes, const float* lse, int T,
                                      int C, int NH, float scale) {
  using G = Geometry<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  unsigned char* cursor = smem;
  bf16* q_s = carve<bf16>(cursor, G::kTileElems);
  bf16* do_s = carve<bf16>(cursor, G::kTileElems);
  bf16* kv_s = carve<bf16>(cursor, 4 * G::kTileElems);  // K stage 0, 1, V stage 0, 1
  float* i_s = carve<float>(cursor, kWarps * kRows * kLdI) + warp * kRows * kLdI;
  bf16* ds_s = carve<bf16>(cursor, kWarps * kRows * kLdP) + warp * kRows * kLdP;
  float* stat_s = carve<float>(cursor, kWarps * kRows) + warp * kRows;  // lse (log2 units), then D

  const int bh = blockIdx.x;
  const int q_tile = gridDim.y - 1 - blockIdx.y;
  const int q0 = q_tile * kTile;
  const int w0 = q0 + warp * kRows;
  const int hs = C / NH;
  const int64_t plane = static_cast<int64_t>(gridDim.x) * T * hs;
  const bf16* q_g = planes + static_cast<int64_t>(bh) * T * hs;
  const float scale2 = scale * kLog2e;
  const int steps = 2 * (q_tile + 1);
  auto prefetch = [&](int step) {
    const int k0 = (step % (q_tile + 1)) * kTile;
    load_tile_async<D>(kv_s + (step % 2) * G::kTileElems, q_g + plane, k0, T, hs);
    load_tile_async<D>(kv_s + (2 + step % 2) * G::kTileElems, q_g + 2 * plane, k0, T, hs);
    async_commit();
  };

  load_tile_async<D>(q_s, q_g, q0, T, hs);
  load_tile_async<D>(do_s, q_g + 3 * plane, q0, T, hs);
  prefetch(0);
  int e_row[kElems];
  int e_col[kElems];
  fragment_indices(i_s, kLdI, lane, e_row, e_col);
  if (lane < kRows) {
    const int row = w0 + lane;
    stat_s[lane] = row < T ? lse[static_cast<int64_t>(bh) * T + row] * kLog2e : 0.0f;
  }
  __syncwarp();
  float e_lse[kElems];  // log2 units
  float e_d[kElems];
#pragma unroll
  for (int e = 0; e < kElems; ++e) e_lse[e] = stat_s[e_row[e]];
  const bf16* q_w = q_s + warp * kRows * G::kLdT;
  const bf16* do_w = do_s + warp * kRows * G::kLdT;

  FragC d_acc;  // element-wise products summed over all keys (fixed order), then along rows
  wmma::fill_fragment(d_acc, 0.0f);
  FragC dq[G::kFrags];
#pragma unroll
  for (int f = 0; f < G::kFrags; ++f) wmma::fill_fragment(dq[f], 0.0f);
  for (int step = 0; step < steps; ++step) {
    const bool d_pass = step <= q_tile;
    const int k0 = (step % (q_tile + 1)) * kTile;
    const bf16* k_s = kv_s + (step % 2) * G::kTileElems;
    const bf16* v_s = kv_s + (2 + step % 2) * G::kTileElems;
    async_wait_all();
    __syncthreads();  // this step's tiles landed; every warp is done with the other stage
    if (step + 1 < steps) prefetch(step + 1);
    if (step == q_tile + 1) {  // D complete: reduce its rows
      wmma::store_matrix_sync(i_s, d_acc, kLdI, wmma::mem_row_major);
      __syncwarp();
      if (lane < kRows) {
        float d = 0.0f;
#pragma unroll
        for (int c = 0; c < kFrag; ++c) d += i_s[lane * kLdI + c];
        stat_s[lane] = d;
        if (w0 + lane < T) dsum[static_cast<int64_t>(bh) * T + w0 + lane] = d;
      }
      __syncwarp();
#pragma unroll
      for (int e = 0; e < kElems; ++e) e_d[e] = stat_s[e_row[e]];
    }
#pragma unroll
    for (int n = 0; n < kTile / kFrag; ++n) {
      FragC s;
      FragC dp;
      product_nt<D>(s, q_w, k_s + n * kFrag * G::kLdT);
      product_nt<D>(dp, do_w, v_s + n * kFrag * G::kLdT);
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        const int col = k0 + n * kFrag + e_col[e];
        const float p = col <= w0 + e_row[e] ? exp2f(s.x[e] * scale2 - e_lse[e]) : 0.0f;
        if (d_pass) {
          d_acc.x[e] += p * dp.x[e];
        } else {
          ds_s[e_row[e] * kLdP + n * kFrag + e_col[e]] = __float2bfloat16_rn(p * (dp.x[e] - e_d[e]) * scale);
        }
      }
    }
    if (!d_pass) {
      __syncwarp();
      accumulate_strip<D>(dq, ds_s, k_s);
    }
  }
  __syncthreads();  // the K/V stages become the warps' output buffers
  float* out_s = reinterpret_cast<float*>(kv_s) + warp * G::kWarpFloats;
  write_rows<D, true>(dqkv + static_cast<int64_t>(bh / NH) * T * 3 * C + (bh % NH) * hs, 3 * C, w0, T, hs, dq,
                      out_s, lane);
}

// Backward pass 2, one block per (b*NH + h, key tile): over query tiles from the diagonal on (each
// prefetched during the one before), dV_j += sum_i P_ij dO_i and dK_j += scale * sum_i dS_ij Q_i. Each
// warp owns 16 keys; its fragments hold P^T and dS^T (rows keys, columns queries), written as bf16
// strips for the two products.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_bf16_kernel(float* dqkv, const bf16* planes, const float* lse, const float* dsum,
                                       int T, int C, int NH, float scale) {
  using G = Geometry<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  unsigned char* cursor = smem;
  bf16* k_s = carve<bf16>(cursor, G::kTileElems);
  bf16* v_s = carve<bf16>(cursor, G::kTileElems);
  bf16* qd_s = carve<bf16>(cursor, 4 * G::kTileElems);  // Q stage 0, 1, dO stage 0, 1
  float* i_s = carve<float>(cursor, kWarps * kRows * kLdI) + warp * kRows * kLdI;
  bf16* p_s = carve<bf16>(cursor, kWarps * 2 * kRows * kLdP) + warp * 2 * kRows * kLdP;  // P^T strip
  bf16* ds_s = p_s + kRows * kLdP;                                                       // dS^T strip
  float* stat_s = carve<float>(cursor, 4 * kTile);  // lse stage 0, 1, D stage 0, 1 of the query tiles

  const int bh = blockIdx.x;
  const int k_tile = blockIdx.y;  // the first key tiles see the most queries and start first
  const int k0 = k_tile * kTile;
  const int w0 = k0 + warp * kRows;  // the warp's first key
  const int hs = C / NH;
  const int64_t plane = static_cast<int64_t>(gridDim.x) * T * hs;
  const bf16* q_g = planes + static_cast<int64_t>(bh) * T * hs;
  const float* lse_g = lse + static_cast<int64_t>(bh) * T;
  const float* d_g = dsum + static_cast<int64_t>(bh) * T;
  const float scale2 = scale * kLog2e;
  auto prefetch = [&](int qt) {
    const int q0 = qt * kTile;
    const int stage = (qt - k_tile) % 2;
    load_tile_async<D>(qd_s + stage * G::kTileElems, q_g, q0, T, hs);
    load_tile_async<D>(qd_s + (2 + stage) * G::kTileElems, q_g + 3 * plane, q0, T, hs);
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      copy_async<4>(stat_s + stage * kTile + threadIdx.x, i < T ? lse_g + i : lse_g, i < T ? 4 : 0);
      copy_async<4>(stat_s + (2 + stage) * kTile + threadIdx.x, i < T ? d_g + i : d_g, i < T ? 4 : 0);
    }
    async_commit();
  };

  load_tile_async<D>(k_s, q_g + plane, k0, T, hs);
  load_tile_async<D>(v_s, q_g + 2 * plane, k0, T, hs);
  prefetch(k_tile);
  int e_row[kElems];
  int e_col[kElems];
  fragment_indices(i_s, kLdI, lane, e_row, e_col);
  const bf16* k_w = k_s + warp * kRows * G::kLdT;
  const bf16* v_w = v_s + warp * kRows * G::kLdT;
  FragC dk[G::kFrags];
  FragC dv[G::kFrags];
#pragma unroll
  for (int f = 0; f < G::kFrags; ++f) {
    wmma::fill_fragment(dk[f], 0.0f);
    wmma::fill_fragment(dv[f], 0.0f);
  }

  for (int qt = k_tile; qt < static_cast<int>(gridDim.y); ++qt) {
    const int q0 = qt * kTile;
    const int stage = (qt - k_tile) % 2;
    const bf16* q_s = qd_s + stage * G::kTileElems;
    const bf16* do_s = qd_s + (2 + stage) * G::kTileElems;
    const float* lse_s = stat_s + stage * kTile;
    const float* d_s = stat_s + (2 + stage) * kTile;
    async_wait_all();
    __syncthreads();  // this tile landed; every warp is done with the other stage
    if (qt + 1 < static_cast<int>(gridDim.y)) prefetch(qt + 1);
#pragma unroll
    for (int n = 0; n < kTile / kFrag; ++n) {
      FragC s;   // S^T: key rows, query columns
      FragC dp;  // dP^T
      product_nt<D>(s, k_w, q_s + n * kFrag * G::kLdT);
      product_nt<D>(dp, v_w, do_s + n * kFrag * G::kLdT);
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        const int il = n * kFrag + e_col[e];
        const int i = q0 + il;
        const float p = (i < T && w0 + e_row[e] <= i) ? exp2f(s.x[e] * scale2 - lse_s[il] * kLog2e) : 0.0f;
        p_s[e_row[e] * kLdP + il] = __float2bfloat16_rn(p);
        ds_s[e_row[e] * kLdP + il] = __float2bfloat16_rn(p * (dp.x[e] - d_s[il]) * scale);
      }
    }
    __syncwarp();
    accumulate_strip<D>(dv, p_s, do_s);
    accumulate_strip<D>(dk, ds_s, q_s);
  }

  __syncthreads();  // the Q/dO stages become the warps' output buffers
  float* out_s = reinterpret_cast<float*>(qd_s) + warp * G::kWarpFloats;
  float* base = dqkv + static_cast<int64_t>(bh / NH) * T * 3 * C + (bh % NH) * hs;
  write_rows<D, true>(base + C, 3 * C, w0, T, hs, dk, out_s, lane);
  write_rows<D, true>(base + 2 * C, 3 * C, w0, T, hs, dv, out_s, lane);
}

// ---- host helpers

template <int D>
constexpr size_t forward_smem() {
  using G = Geometry<D>;
  return 3 * G::kTileElems * sizeof(bf16) +
         kWarps * (G::kWarpFloats * sizeof(float) + kRows * kLdP * sizeof(bf16) + kRows * sizeof(float));
}
template <int D>
constexpr size_t dq_smem() {
  return 6 * Geometry<D>::kTileElems * sizeof(bf16) +
         kWarps * (kRows * kLdI * sizeof(float) + kRows * kLdP * sizeof(bf16) + kRows * sizeof(float));
}
template <int D>
constexpr size_t dkv_smem() {
  return 6 * Geometry<D>::kTileElems * sizeof(bf16) +
         kWarps * (kRows * kLdI * sizeof(float) + 2 * kRows * kLdP * sizeof(bf16)) +
         4 * kTile * sizeof(float);
}

struct Problem {
  int B, T, C, NH, hs;
  float scale;
  dim3 grid;
};

Status make_problem(const char* op, int B, int T, int C, int NH, Problem* p) {
  PERIGEE_CHECK(check_dims(op, {B, T, C, NH}));
  PERIGEE_REQUIRE(attention_bf16_supports(C, NH), StatusCode::kInvalidArgument, op, ": C = ", C,
                  ", NH = ", NH, " is unsupported (C must be a multiple of NH and the head size C/NH ",
                  "a multiple of 16 of at most ", kMaxHeadSize, ")");
  const int tiles = ceil_div(T, kTile);
  PERIGEE_REQUIRE(tiles <= 65535, StatusCode::kInvalidArgument, op, ": T = ", T, " is too long");
  PERIGEE_REQUIRE(static_cast<int64_t>(B) * NH <= INT32_MAX, StatusCode::kInvalidArgument, op,
                  ": B*NH = ", static_cast<int64_t>(B) * NH, " is too large");
  const int hs = C / NH;
  *p = Problem{B,
               T,
               C,
               NH,
               hs,
               1.0f / std::sqrt(static_cast<float>(hs)),
               dim3(static_cast<unsigned>(B * NH), static_cast<unsigned>(tiles))};
  return Status::ok();
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Raises the dynamic shared-memory limit of `kernel` to `bytes` (above the default 48 KiB).
template <typename Kernel>
Status allow_shared_memory(Kernel kernel, size_t bytes) {
  PERIGEE_CHECK_CUDA(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return Status::ok();
}

template <int D>
Status launch_forward(float* out, float* lse, const float* qkv, const Problem& p, cudaStream_t stream) {
  constexpr size_t smem = forward_smem<D>();
  PERIGEE_CHECK(allow_shared_memory(attention_forward_bf16_kernel<D>, smem));
  attention_forward_bf16_kernel<D>
      <<<p.grid, kThreads, smem, stream>>>(out, lse, qkv, p.T, p.C, p.NH, p.scale, aligned16(qkv));
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <int D>
Status launch_backward(float* dqkv, float* dsum, const bf16* planes, const float* lse, const Problem& p,
                       cudaStream_t stream) {
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dq_bf16_kernel<D>, dq_smem<D>()));
  attention_backward_dq_bf16_kernel<D>
      <<<p.grid, kThreads, dq_smem<D>(), stream>>>(dqkv, dsum, planes, lse, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dkv_bf16_kernel<D>, dkv_smem<D>()));
  attention_backward_dkv_bf16_kernel<D>
      <<<p.grid, kThreads, dkv_smem<D>(), stream>>>(dqkv, planes, lse, dsum, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace

// ---- kernel launchers

bool attention_bf16_supports(int C, int NH) {
  if (C <= 0 || NH <= 0 || C % NH != 0) return false;
  const int hs = C / NH;
  return hs % 16 == 0 && hs <= kMaxHeadSize;
}

Status attention_forward_bf16(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("attention_forward_bf16", {out, lse, qkv}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_forward_bf16", B, T, C, NH, &p));
  if (p.hs <= 32) return launch_forward<32>(out, lse, qkv, p, stream);
  if (p.hs <= 64) return launch_forward<64>(out, lse, qkv, p, stream);
  return launch_forward<128>(out, lse, qkv, p, stream);
}

Status attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* lse, int B,
                               int T, int C, int NH, DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("attention_backward_bf16", {dqkv, dout, qkv, lse}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_backward_bf16", B, T, C, NH, &p));
  // Scratch: D [B, NH, T] fp32, then the bf16 planes of q, k, v and dout.
  const size_t rows = static_cast<size_t>(B) * NH * T;
  const size_t elems = static_cast<size_t>(B) * T * C;
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(scratch_bytes<float>(rows) + scratch_bytes<bf16>(4 * elems), stream, &base));
  ScratchCarver carver(base);
  float* dsum = carver.take<float>(rows);
  bf16* planes = carver.take<bf16>(4 * elems);
  convert_bf16_kernel<<<flat_grid(elems, 256), 256, 0, stream>>>(planes, qkv, dout, B, T, C, NH,
                                                                 aligned16(qkv) && aligned16(dout));
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  if (p.hs <= 32) return launch_backward<32>(dqkv, dsum, planes, lse, p, stream);
  if (p.hs <= 64) return launch_backward<64>(dqkv, dsum, planes, lse, p, stream);
  return launch_backward<128>(dqkv, dsum, planes, lse, p, stream);
}

}  // namespace perigee::kernels::cuda
