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

// Backward pass 1, one block per (b*NH + h, query tile): D_i = sum_j P_ij dP_ij (saved to dsum), then
// dQ_i += scale * sum_j P_ij (dP_ij - D_i) K_j. P and dP stay in accumulator fragments; dS goes to the
// warp's bf16 strip as the operand of dS K.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_bf16_kernel(float* dqkv, float* dsum, const float* dout, const float* qkv,
                                      const float* lse, int T, int C, int NH, float scale, bool vec) {
  using G = Geometry<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  unsigned char* cursor = smem;
  bf16* q_s = carve<bf16>(cursor, G::kTileElems);
  bf16* do_s = carve<bf16>(cursor, G::kTileElems);
  bf16* k_s = carve<bf16>(cursor, G::kTileElems);
  bf16* v_s = carve<bf16>(cursor, G::kTileElems);
  float* f_s = carve<float>(cursor, kWarps * G::kWarpFloats) + warp * G::kWarpFloats;
  bf16* ds_s = carve<bf16>(cursor, kWarps * kRows * kLdP) + warp * kRows * kLdP;
  float* stat_s = carve<float>(cursor, kWarps * kRows) + warp * kRows;  // lse (log2 units), then D

  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q_tile = gridDim.y - 1 - blockIdx.y;
  const int q0 = q_tile * kTile;
  const int w0 = q0 + warp * kRows;
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;
  const float* do_g = dout + static_cast<int64_t>(b) * T * C + h * hs;
  const float scale2 = scale * kLog2e;

  int e_row[kElems];
  int e_col[kElems];
  fragment_indices(f_s, G::kLdF, lane, e_row, e_col);
  load_tile<D>(q_s, q_g, ld, q0, T, hs, vec);
  load_tile<D>(do_s, do_g, C, q0, T, hs, vec);
  if (lane < kRows) {
    const int row = w0 + lane;
    stat_s[lane] = row < T ? lse[static_cast<int64_t>(bh) * T + row] * kLog2e : 0.0f;
  }
  __syncwarp();
  float e_lse[kElems];  // log2 units
#pragma unroll
  for (int e = 0; e < kElems; ++e) e_lse[e] = stat_s[e_row[e]];
  const bf16* q_w = q_s + warp * kRows * G::kLdT;
  const bf16* do_w = do_s + warp * kRows * G::kLdT;

  // P of accumulator element e of key fragment n (0 above the diagonal).
  auto probability = [&](const FragC& s, int e, int k0, int n) {
    const int col = k0 + n * kFrag + e_col[e];
    return col <= w0 + e_row[e] ? exp2f(s.x[e] * scale2 - e_lse[e]) : 0.0f;
  };

  // D: element-wise products summed into one fragment over all keys (fixed order), then along rows.
  FragC d_acc;
  wmma::fill_fragment(d_acc, 0.0f);
  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();
    load_tile<D>(k_s, k_g, ld, k0, T, hs, vec);
    load_tile<D>(v_s, v_g, ld, k0, T, hs, vec);
    __syncthreads();
#pragma unroll
    for (int n = 0; n < kTile / kFrag; ++n) {
      FragC s;
      FragC dp;
      product_nt<D>(s, q_w, k_s + n * kFrag * G::kLdT);
      product_nt<D>(dp, do_w, v_s + n * kFrag * G::kLdT);
#pragma unroll
      for (int e = 0; e < kElems; ++e) d_acc.x[e] += probability(s, e, k0, n) * dp.x[e];
    }
  }
  wmma::store_matrix_sync(f_s, d_acc, G::kLdF, wmma::mem_row_major);
  __syncwarp();
  if (lane < kRows) {
    float d = 0.0f;
#pragma unroll
    for (int c = 0; c < kFrag; ++c) d += f_s[lane * G::kLdF + c];
    stat_s[lane] = d;
    if (w0 + lane < T) dsum[static_cast<int64_t>(bh) * T + w0 + lane] = d;
  }
  __syncwarp();
  float e_d[kElems];
#pragma unroll
  for (int e = 0; e < kElems; ++e) e_d[e] = stat_s[e_row[e]];

  FragC dq[G::kFrags];
#pragma unroll
  for (int f = 0; f < G::kFrags; ++f) wmma::fill_fragment(dq[f], 0.0f);
  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // every warp is done with the previous k_s, v_s
    load_tile<D>(k_s, k_g, ld, k0, T, hs, vec);
    load_tile<D>(v_s, v_g, ld, k0, T, hs, vec);
    __syncthreads();
#pragma unroll
    for (int n = 0; n < kTile / kFrag; ++n) {
      FragC s;
      FragC dp;
      product_nt<D>(s, q_w, k_s + n * kFrag * G::kLdT);
      product_nt<D>(dp, do_w, v_s + n * kFrag * G::kLdT);
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        const float ds = probability(s, e, k0, n) * (dp.x[e] - e_d[e]) * scale;
        ds_s[e_row[e] * kLdP + n * kFrag + e_col[e]] = __float2bfloat16_rn(ds);
      }
    }
    __syncwarp();
    accumulate_strip<D>(dq, ds_s, k_s);
  }
  write_rows<D, true>(dqkv + static_cast<int64_t>(b) * T * ld + h * hs, ld, w0, T, hs, dq, f_s, lane);
}

// Backward pass 2, one block per (b*NH + h, key tile): over query tiles from the diagonal on,
// dV_j += sum_i P_ij dO_i and dK_j += scale * sum_i dS_ij Q_i. Each warp owns 16 keys; its fragments
// hold P^T and dS^T (rows keys, columns queries), written as bf16 strips for the two products.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_bf16_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                                       const float* dsum, int T, int C, int NH, float scale, bool vec) {
  using G = Geometry<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  unsigned char* cursor = smem;
  bf16* k_s = carve<bf16>(cursor, G::kTileElems);
  bf16* v_s = carve<bf16>(cursor, G::kTileElems);
  bf16* q_s = carve<bf16>(cursor, G::kTileElems);
  bf16* do_s = carve<bf16>(cursor, G::kTileElems);
  float* f_s = carve<float>(cursor, kWarps * G::kWarpFloats) + warp * G::kWarpFloats;
  bf16* p_s = carve<bf16>(cursor, kWarps * 2 * kRows * kLdP) + warp * 2 * kRows * kLdP;  // P^T strip
  bf16* ds_s = p_s + kRows * kLdP;                                                       // dS^T strip
  float* lse_s = carve<float>(cursor, kTile);  // the query tile's lse (log2 units)
  float* d_s = carve<float>(cursor, kTile);    // and D

  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int k_tile = blockIdx.y;  // the first key tiles see the most queries and start first
  const int k0 = k_tile * kTile;
  const int w0 = k0 + warp * kRows;  // the warp's first key
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;
  const float* do_g = dout + static_cast<int64_t>(b) * T * C + h * hs;
  const float scale2 = scale * kLog2e;

  int e_row[kElems];
  int e_col[kElems];
  fragment_indices(f_s, G::kLdF, lane, e_row, e_col);
  load_tile<D>(k_s, k_g, ld, k0, T, hs, vec);
  load_tile<D>(v_s, v_g, ld, k0, T, hs, vec);
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
    __syncthreads();  // every warp is done with the previous query tile
    load_tile<D>(q_s, q_g, ld, q0, T, hs, vec);
    load_tile<D>(do_s, do_g, C, q0, T, hs, vec);
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      lse_s[threadIdx.x] = i < T ? lse[static_cast<int64_t>(bh) * T + i] * kLog2e : 0.0f;
      d_s[threadIdx.x] = i < T ? dsum[static_cast<int64_t>(bh) * T + i] : 0.0f;
    }
    __syncthreads();
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
        const float p = (i < T && w0 + e_row[e] <= i) ? exp2f(s.x[e] * scale2 - lse_s[il]) : 0.0f;
        const float ds = p * (dp.x[e] - d_s[il]) * scale;
        p_s[e_row[e] * kLdP + il] = __float2bfloat16_rn(p);
        ds_s[e_row[e] * kLdP + il] = __float2bfloat16_rn(ds);
      }
    }
    __syncwarp();
    accumulate_strip<D>(dv, p_s, do_s);
    accumulate_strip<D>(dk, ds_s, q_s);
  }

  float* base = dqkv + static_cast<int64_t>(b) * T * ld + h * hs;
  write_rows<D, true>(base + C, ld, w0, T, hs, dk, f_s, lane);
  write_rows<D, true>(base + 2 * C, ld, w0, T, hs, dv, f_s, lane);
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
  using G = Geometry<D>;
  return 4 * G::kTileElems * sizeof(bf16) +
         kWarps * (G::kWarpFloats * sizeof(float) + kRows * kLdP * sizeof(bf16) + kRows * sizeof(float));
}
template <int D>
constexpr size_t dkv_smem() {
  using G = Geometry<D>;
  return 4 * G::kTileElems * sizeof(bf16) +
         kWarps * (G::kWarpFloats * sizeof(float) + 2 * kRows * kLdP * sizeof(bf16)) +
         2 * kTile * sizeof(float);
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
Status launch_backward(float* dqkv, float* dsum, const float* dout, const float* qkv, const float* lse,
                       const Problem& p, cudaStream_t stream) {
  const bool vec = aligned16(qkv) && aligned16(dout);
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dq_bf16_kernel<D>, dq_smem<D>()));
  attention_backward_dq_bf16_kernel<D>
      <<<p.grid, kThreads, dq_smem<D>(), stream>>>(dqkv, dsum, dout, qkv, lse, p.T, p.C, p.NH, p.scale, vec);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dkv_bf16_kernel<D>, dkv_smem<D>()));
  attention_backward_dkv_bf16_kernel<D>
      <<<p.grid, kThreads, dkv_smem<D>(), stream>>>(dqkv, dout, qkv, lse, dsum, p.T, p.C, p.NH, p.scale, vec);
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
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(scratch_bytes<float>(static_cast<size_t>(B) * NH * T), stream, &base));
  float* dsum = static_cast<float*>(base);
  if (p.hs <= 32) return launch_backward<32>(dqkv, dsum, dout, qkv, lse, p, stream);
  if (p.hs <= 64) return launch_backward<64>(dqkv, dsum, dout, qkv, lse, p, stream);
  return launch_backward<128>(dqkv, dsum, dout, qkv, lse, p, stream);
}

}  // namespace perigee::kernels::cuda
