// Causal multi-head self-attention on bf16 tensor cores (see attention_bf16.cuh for the semantics).
// Layout as attention.cuh: qkv [B, T, 3C] fp32 or bf16, head h in columns [h*hs, (h+1)*hs) of each third.
// Precision: fp32 tiles are rounded to bf16 as they are staged into shared memory (bf16 ones go as they
// are: the same bits their widened values would round to); products run as
// mma.sync m16n8k16 bf16 instructions with fp32 accumulators; softmax statistics, D and the outputs are
// fp32 until stored (a bf16 output, out or dqkv, is rounded once as it is written).
// Fragments follow the PTX ISA layouts of mma.m16n8k16 (lane = 4 g + t: accumulator elements (g, 2t),
// (g, 2t+1), (g+8, 2t), (g+8, 2t+1) of each 16x8 tile), operands come from shared memory through
// ldmatrix (.trans for row-major [k][n] operands), and the accumulator of a 16x64 product is re-packed
// in registers as the bf16 A operand of the next product (P V, P^T dO, dS K, dS^T Q): nothing but the
// staged tiles goes through shared memory.
// Tiling: blocks of kWarps warps own 16 kWarps rows (query rows in the forward and the dQ pass, key rows
// in the dK/dV pass), each warp 16 of them, and walk the other side in tiles of 64. Shared tiles are
// [rows][D + 8] bf16 (D = the head size padded with zeros to 32, 64 or 128; the 8-element pad keeps
// ldmatrix conflict-free). A warp skips the tiles its causal mask hides entirely.
//   forward, one block per (b*NH + h, query block): online softmax, lse in natural-log units; K and V
//     tiles are read from qkv (fp32 or bf16) into registers during the tile before, then stored (fp32
//     ones rounded to bf16 on the way);
//   backward: D_i = dO_i . O_i first (fp32, one warp per row; mathematically sum_j P_ij dP_ij, which a
//     separate walk over the keys would cost two more products per tile);
//   backward pass 1, one block per (b*NH + h, query block): dQ;
//   backward pass 2, one block per (b*NH + h, key block), query tiles from the diagonal on: dK and dV.
// The backward first converts qkv and dout into head-major bf16 planes in scratch, so that both passes
// stream their tiles with cp.async, double-buffered. With KernelVariants::attention_in_place_backward a
// 16-byte-aligned bf16 qkv is not copied: the tiles of q, k and v stream from its rows (HeadRows says
// where a head's rows lie either way), and dout alone is converted. With
// KernelVariants::attention_one_pass_backward (head sizes up to 64) one kernel replaces the two passes
// (attention_bf16_one_pass.cu).
// H100, B=16 T=1024 C=768 NH=12 (per layer): forward 0.197 ms, backward 1.080 ms (the wmma version
// before: 0.566 and 1.734 ms; fp32 kernel: 1.21 and 4.90 ms).
// Every loop runs in a fixed order and no atomics are used, so results are bit-reproducible.
#include "kernels/cuda/attention_bf16.cuh"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/attention_bf16_one_pass.cuh"
#include "kernels/cuda/attention_bf16_tiles.cuh"
#include "kernels/cuda/attention_bf16_wide.cuh"
#include "kernels/cuda/attention_tiles.hpp"

namespace perigee::kernels::cuda {
namespace {

using namespace attention_bf16_tiles;  // constants, mma and tile helpers (attention_bf16_tiles.cuh)

// ---- CUDA kernels

// One block per (b*NH + h = blockIdx.x, query block of 16 kWarps rows). Per key tile each warp computes
// its 16 x 64 scores in registers, runs the online softmax on them (a row's 64 scores live in the four
// lanes of a quad: max and sum by two shuffles), rescales O and adds P V. The next K and V tiles are
// read into registers while the current ones are used (for D = 128 with 4 warps: after).
template <int D, int kWarps, typename Out, typename Q>
__global__ void __launch_bounds__(kWarps * 32, (D <= 64 ? 16 : 8) / kWarps)
    attention_forward_bf16_kernel(Out* out, float* lse, const Q* qkv, int T, int C, int NH, float scale,
                                  bool vec) {
  constexpr int kThreads = kWarps * 32;
  constexpr int ld = ld_of<D>();
  constexpr int kTileElems = kTile * ld;
  using Fetch = TileFetch<D, kThreads, Q>;
  constexpr bool kPrefetch = Fetch::kQuads <= 4;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [16 kWarps][ld]
  bf16* kv_s = q_s + kWarps * kRows * ld;     // K stage 0, 1, V stage 0, 1: [64][ld] each
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kWarps * kRows;  // the longest rows start first
  const int w0 = q0 + warp * kRows;                              // the warp's first query row
  const int hs = C / NH;
  const int64_t ld3 = 3 * static_cast<int64_t>(C);
  const Q* q_g = qkv + static_cast<int64_t>(b) * T * ld3 + h * hs;
  const Q* k_g = q_g + C;
  const Q* v_g = q_g + 2 * C;
  const float scale2 = scale * kLog2e;  // scores in log2 units: exp(x) = exp2(x log2 e)
  const int tiles = (min(q0 + kWarps * kRows, T) - 1) / kTile + 1;

  {
    Fetch f;
    for (int r = 0; r < kWarps * kRows; r += kTile) {
      f.fetch(q_g, ld3, q0 + r, T, hs, vec);
      f.store(q_s + r * ld);
    }
    f.fetch(k_g, ld3, 0, T, hs, vec);
    f.store(kv_s);
    f.fetch(v_g, ld3, 0, T, hs, vec);
    f.store(kv_s + 2 * kTileElems);
  }
  float o[D / 8][4];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.0f;
  // Rows w0 + g and w0 + g + 8 (g = lane / 4): running max (log2 units) and this lane's partial sum.
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  const bf16* q_w = q_s + warp * kRows * ld;

  for (int kt = 0; kt < tiles; ++kt) {
    const int k0 = kt * kTile;
    const bf16* k_s = kv_s + (kt % 2) * kTileElems;
    const bf16* v_s = kv_s + (2 + kt % 2) * kTileElems;
    __syncthreads();  // tile kt is stored; every warp is done with tile kt - 1 (the other stage)
    const bool more = kt + 1 < tiles;
    Fetch nk, nv;
    if (kPrefetch && more) {
      nk.fetch(k_g, ld3, k0 + kTile, T, hs, vec);
      nv.fetch(v_g, ld3, k0 + kTile, T, hs, vec);
    }
    if (k0 <= w0 + kRows - 1) {  // else every key of the tile is after every row of the warp
      float s[kNT][4];
      product_nt<D>(s, q_w, k_s, lane);
      // Key 0 is visible to every row, so m is finite from the first tile on: exp2(-inf) = 0 gives
      // alpha = 0 on the first tile and p = 0 for masked scores.
      const bool diagonal = k0 + kTile - 1 > w0;
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int t = 0; t < kNT; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          float x = s[t][i] * scale2;
          if (diagonal && k0 + 8 * t + (lane % 4) * 2 + (i % 2) > w0 + lane / 4 + 8 * (i / 2)) x = -INFINITY;
          s[t][i] = x;
          mx[i / 2] = fmaxf(mx[i / 2], x);
        }
      }
      float alpha[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(kFullMask, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(kFullMask, mx[r], 2));
        const float m_new = fmaxf(m[r], mx[r]);
        alpha[r] = exp2f(m[r] - m_new);
        m[r] = m_new;
        l[r] *= alpha[r];
      }
#pragma unroll
      for (int t = 0; t < kNT; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          s[t][i] = exp2f(s[t][i] - m[i / 2]);
          l[i / 2] += s[t][i];
        }
      }
#pragma unroll
      for (int t = 0; t < D / 8; ++t) {
#pragma unroll
        for (int i = 0; i < 4; ++i) o[t][i] *= alpha[i / 2];
      }
      product_pv<D>(o, s, v_s, lane);
    }
    if (more) {
      if (!kPrefetch) {
        nk.fetch(k_g, ld3, k0 + kTile, T, hs, vec);
        nv.fetch(v_g, ld3, k0 + kTile, T, hs, vec);
      }
      nk.store(kv_s + ((kt + 1) % 2) * kTileElems);
      nv.store(kv_s + (2 + (kt + 1) % 2) * kTileElems);
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(kFullMask, l[r], 1);  // a + b == b + a: the quad's lanes agree
    l[r] += __shfl_xor_sync(kFullMask, l[r], 2);
    const int row = w0 + lane / 4 + 8 * r;
    if (lane % 4 == 0 && row < T) lse[static_cast<int64_t>(bh) * T + row] = (m[r] + log2f(l[r])) * kLn2;
    l[r] = 1.0f / l[r];  // l >= 1: the row maximum contributes exp2(0)
  }
#pragma unroll
  for (int t = 0; t < D / 8; ++t) {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[t][i] *= l[i / 2];
  }
  store_rows<D, false>(out + static_cast<int64_t>(b) * T * C + h * hs, C, w0, T, hs, o, lane);
}

// The backward reads bf16 copies of qkv and dout made once per call, head-major [which][B*NH][T][hs]
// (which: q, k, v, then dout), so that tiles stream into shared memory with cp.async (16 bytes a copy,
// zero-filled past T and past hs) while the previous tile is being used. `first` = 3 converts dout alone
// (into one plane at dst), for a bf16 qkv whose tiles are read in place.
template <typename Q>
__global__ void convert_bf16_kernel(bf16* dst, const Q* qkv, const float* dout, int B, int T, int C, int NH,
                                    int first, bool vec) {
  const int hs = C / NH;
  const int row_quads = (4 - first) * C / 4;  // of 3C qkv and C dout elements per row, from `first` on
  const int64_t quads = static_cast<int64_t>(B) * T * row_quads;
  const int64_t plane = static_cast<int64_t>(B) * T * C;  // elements per `which`
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < quads;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bt = idx / row_quads;
    const int col = first * C + static_cast<int>(idx % row_quads) * 4;
    const int which = col / C;
    const int h = (col % C) / hs;
    const int d = col % hs;
    const uint2 packed = which < 3 ? load_quad_bf16(qkv + bt * 3 * C + col, vec)
                                   : load_quad_bf16(dout + bt * C + (col - 3 * C), vec);
    const int64_t b = bt / T;
    const int64_t t = bt % T;
    *reinterpret_cast<uint2*>(dst + (which - first) * plane + ((b * NH + h) * T + t) * hs + d) = packed;
  }
}

// D_i = dO_i . O_i (= sum_j P_ij dP_ij) in fp32 from dout (fp32) and out as stored (fp32, or bf16
// widened): one warp per row (b, t) of the BT = B*T rows (int64_t: B*T may pass INT32_MAX), heads in
// turn, each a fixed-order warp sum (lanes over columns, then xor shuffles): deterministic.
template <typename O>
__global__ void attention_dsum_kernel(float* dsum, const float* dout, const O* out, int64_t BT, int T, int C,
                                      int NH) {
  const int64_t bt = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (bt >= BT) return;
  const int hs = C / NH;
  const float* d_row = dout + bt * C;
  const O* o_row = out + bt * C;
  const int64_t b = bt / T;
  const int64_t t = bt % T;
  for (int h = 0; h < NH; ++h) {
    float acc = 0.0f;
    for (int d = lane; d < hs; d += 32) acc += __ldg(d_row + h * hs + d) * load_act(o_row, h * hs + d);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(kFullMask, acc, off);
    if (lane == 0) dsum[(b * NH + h) * T + t] = acc;
  }
}

// Backward pass 1, one block per (b*NH + h, query block of 16 kWarps rows):
// dQ_i = scale * sum_j P_ij (dP_ij - D_i) K_j in one walk over the key tiles, each tile prefetched
// (double-buffered) during the step before. P, dP and dS stay in registers.
template <int D, int kWarps, typename Out>
__global__ void __launch_bounds__(kWarps * 32)
    attention_backward_dq_bf16_kernel(Out* dqkv, const float* dsum, BackwardRows src, const float* lse, int T,
                                      int C, int NH, float scale) {
  constexpr int kThreads = kWarps * 32;
  constexpr int ld = ld_of<D>();
  constexpr int kTileElems = kTile * ld;
  constexpr int kBlockRows = kWarps * kRows;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kBlockRows][ld]
  bf16* do_s = q_s + kBlockRows * ld;         // [kBlockRows][ld]
  bf16* kv_s = do_s + kBlockRows * ld;        // K stage 0, 1, V stage 0, 1: [64][ld] each
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kBlockRows;
  const int w0 = q0 + warp * kRows;
  const int hs = C / NH;
  const bf16* k_g = src.k.head(b, h);
  const bf16* v_g = src.v.head(b, h);
  const float scale2 = scale * kLog2e;
  const int tiles = (min(q0 + kBlockRows, T) - 1) / kTile + 1;
  auto prefetch = [&](int step) {
    const int k0 = step * kTile;
    load_tile_async<D, kThreads>(kv_s + (step % 2) * kTileElems, k_g, src.k.ld, kTile, k0, T, hs);
    load_tile_async<D, kThreads>(kv_s + (2 + step % 2) * kTileElems, v_g, src.v.ld, kTile, k0, T, hs);
    async_commit();
  };

  load_tile_async<D, kThreads>(q_s, src.q.head(b, h), src.q.ld, kBlockRows, q0, T, hs);
  load_tile_async<D, kThreads>(do_s, src.dout.head(b, h), src.dout.ld, kBlockRows, q0, T, hs);
  prefetch(0);
  float row_lse[2];  // rows w0 + g and w0 + g + 8 (g = lane / 4), log2 units
  float row_d[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = w0 + lane / 4 + 8 * r;
    row_lse[r] = row < T ? lse[static_cast<int64_t>(bh) * T + row] * kLog2e : 0.0f;
    row_d[r] = row < T ? dsum[static_cast<int64_t>(bh) * T + row] : 0.0f;
  }
  const bf16* q_w = q_s + warp * kRows * ld;
  const bf16* do_w = do_s + warp * kRows * ld;
  float dq[D / 8][4];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) dq[t][0] = dq[t][1] = dq[t][2] = dq[t][3] = 0.0f;

  for (int step = 0; step < tiles; ++step) {
    const int k0 = step * kTile;
    const bf16* k_s = kv_s + (step % 2) * kTileElems;
    const bf16* v_s = kv_s + (2 + step % 2) * kTileElems;
    async_wait_all();
    __syncthreads();  // this step's tiles landed; every warp is done with the other stage
    if (step + 1 < tiles) prefetch(step + 1);
    if (k0 > w0 + kRows - 1) continue;  // every key of the tile is after every row of the warp
    float s[kNT][4];
    float dp[kNT][4];
    product_nt<D>(s, q_w, k_s, lane);
    product_nt<D>(dp, do_w, v_s, lane);
#pragma unroll
    for (int t = 0; t < kNT; ++t) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = k0 + 8 * t + (lane % 4) * 2 + (i % 2);
        const int row = w0 + lane / 4 + 8 * (i / 2);
        const float p = col <= row ? exp2f(s[t][i] * scale2 - row_lse[i / 2]) : 0.0f;
        s[t][i] = p * (dp[t][i] - row_d[i / 2]) * scale;  // dS
      }
    }
    product_pv<D>(dq, s, k_s, lane);
  }
  store_rows<D, false>(dqkv + static_cast<int64_t>(b) * T * 3 * C + h * hs, 3 * C, w0, T, hs, dq, lane);
}

// Backward pass 2, one block per (b*NH + h, key block of 16 kWarps keys): over query tiles from the
// diagonal on (each prefetched during the one before), dV_j += sum_i P_ij dO_i and
// dK_j += scale * sum_i dS_ij Q_i. Each warp owns 16 keys; its accumulators hold P^T and dS^T (rows
// keys, columns queries), re-packed in registers as the A operands of the two products.
template <int D, int kWarps, typename Out>
__global__ void __launch_bounds__(kWarps * 32)
    attention_backward_dkv_bf16_kernel(Out* dqkv, BackwardRows src, const float* lse, const float* dsum,
                                       int T, int C, int NH, float scale) {
  constexpr int kThreads = kWarps * 32;
  constexpr int ld = ld_of<D>();
  constexpr int kTileElems = kTile * ld;
  constexpr int kBlockRows = kWarps * kRows;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* k_s = reinterpret_cast<bf16*>(smem);  // [kBlockRows][ld]
  bf16* v_s = k_s + kBlockRows * ld;          // [kBlockRows][ld]
  bf16* qd_s = v_s + kBlockRows * ld;         // Q stage 0, 1, dO stage 0, 1: [64][ld] each
  float* stat_s = reinterpret_cast<float*>(qd_s + 4 * kTileElems);  // lse stage 0, 1, D stage 0, 1
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int k0 = blockIdx.y * kBlockRows;  // the first key blocks see the most queries and start first
  const int w0 = k0 + warp * kRows;        // the warp's first key
  const int hs = C / NH;
  const bf16* q_g = src.q.head(b, h);
  const bf16* do_g = src.dout.head(b, h);
  const float* lse_g = lse + static_cast<int64_t>(bh) * T;
  const float* d_g = dsum + static_cast<int64_t>(bh) * T;
  const int qt0 = k0 / kTile;
  const int qtiles = (T - 1) / kTile + 1;
  auto prefetch = [&](int qt) {
    prefetch_query_tile<D, kThreads>(qd_s, stat_s, (qt - qt0) % 2, src, q_g, do_g, lse_g, d_g, qt * kTile, T,
                                     hs);
  };

  load_tile_async<D, kThreads>(k_s, src.k.head(b, h), src.k.ld, kBlockRows, k0, T, hs);
  load_tile_async<D, kThreads>(v_s, src.v.head(b, h), src.v.ld, kBlockRows, k0, T, hs);
  prefetch(qt0);
  const bf16* k_w = k_s + warp * kRows * ld;
  const bf16* v_w = v_s + warp * kRows * ld;
  float dk[D / 8][4];
  float dv[D / 8][4];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) {
    dk[t][0] = dk[t][1] = dk[t][2] = dk[t][3] = 0.0f;
    dv[t][0] = dv[t][1] = dv[t][2] = dv[t][3] = 0.0f;
  }

  for (int qt = qt0; qt < qtiles; ++qt) {
    const int q0 = qt * kTile;
    const int stage = (qt - qt0) % 2;
    const bf16* q_s = qd_s + stage * kTileElems;
    const bf16* do_s = qd_s + (2 + stage) * kTileElems;
    const float* lse_s = stat_s + stage * kTile;
    const float* d_s = stat_s + (2 + stage) * kTile;
    async_wait_all();
    __syncthreads();  // this tile landed; every warp is done with the other stage
    if (qt + 1 < qtiles) prefetch(qt + 1);
    if (q0 + kTile - 1 < w0) continue;  // every query of the tile is before every key of the warp
    float ds[kNT][4];
    dkv_tile_step<D>(dk, dv, ds, k_w, v_w, q_s, do_s, lse_s, d_s, q0, w0, T, scale, lane);
  }

  Out* base = dqkv + static_cast<int64_t>(b) * T * 3 * C + h * hs;
  store_rows<D, false>(base + C, 3 * C, w0, T, hs, dk, lane);
  store_rows<D, false>(base + 2 * C, 3 * C, w0, T, hs, dv, lane);
}

// ---- host helpers

template <int D>
constexpr size_t tile_bytes(int rows) {
  return static_cast<size_t>(rows) * ld_of<D>() * sizeof(bf16);
}

struct Problem {
  int B, T, C, NH, hs;
  float scale;
};

Status make_problem(const char* op, int B, int T, int C, int NH, Problem* p) {
  PERIGEE_CHECK(check_dims(op, {B, T, C, NH}));
  PERIGEE_REQUIRE(attention_bf16_supports(C, NH), StatusCode::kInvalidArgument, op, ": C = ", C,
                  ", NH = ", NH, " is unsupported (C must be a multiple of NH and the head size C/NH ",
                  "a multiple of 16 of at most ", kMaxHeadSize, ")");
  PERIGEE_REQUIRE(ceil_div(T, kTile) <= 65535, StatusCode::kInvalidArgument, op, ": T = ", T, " is too long");
  PERIGEE_REQUIRE(static_cast<int64_t>(B) * NH <= INT32_MAX, StatusCode::kInvalidArgument, op,
                  ": B*NH = ", static_cast<int64_t>(B) * NH, " is too large");
  const int hs = C / NH;
  *p = Problem{B, T, C, NH, hs, 1.0f / std::sqrt(static_cast<float>(hs))};
  return Status::ok();
}

// (b*NH + h, blocks of `rows` rows).
dim3 grid_of(const Problem& p, int rows) {
  return dim3(static_cast<unsigned>(p.B * p.NH), static_cast<unsigned>(ceil_div(p.T, rows)));
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

bool bytes_overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + b_bytes && y < x + a_bytes;
}

// Rows of qkv can be read four elements at a time (C is a multiple of 16: every row and head is too).
template <typename Q>
bool quad_aligned(const Q* qkv) {
  return reinterpret_cast<uintptr_t>(qkv) % (4 * sizeof(Q)) == 0;
}

// Dynamic shared memory of the kernels: the block's rows (twice, Q and dO, in the backward), two stages
// of K and V tiles, and in the dK/dV pass the lse and D rows of two query tiles.
template <int D, int kWarps>
constexpr size_t forward_shared_bytes() {
  return tile_bytes<D>(kWarps * kRows + 4 * kTile);
}
template <int D, int kWarps>
constexpr size_t dq_shared_bytes() {
  return tile_bytes<D>(2 * kWarps * kRows + 4 * kTile);
}
template <int D, int kWarps>
constexpr size_t dkv_shared_bytes() {
  return dq_shared_bytes<D, kWarps>() + 4 * kTile * sizeof(float);
}
template <int D>
constexpr size_t most_shared_bytes() {
  return std::max({forward_shared_bytes<D, kFwdWarps>(), dq_shared_bytes<D, kBwdWarps>(),
                   dkv_shared_bytes<D, kBwdWarps>()});
}

template <int D, int kWarps, typename Out, typename Q>
Status launch_forward(Out* out, float* lse, const Q* qkv, const Problem& p, cudaStream_t stream) {
  constexpr size_t smem = forward_shared_bytes<D, kWarps>();
  PERIGEE_CHECK(allow_shared_memory(attention_forward_bf16_kernel<D, kWarps, Out, Q>, smem));
  attention_forward_bf16_kernel<D, kWarps, Out, Q><<<grid_of(p, kWarps * kRows), kWarps * 32, smem, stream>>>(
      out, lse, qkv, p.T, p.C, p.NH, p.scale, quad_aligned(qkv));
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <int D, int kWarps, typename Out>
Status launch_backward(Out* dqkv, const float* dsum, const BackwardRows& src, const float* lse,
                       const Problem& p, cudaStream_t stream) {
  constexpr size_t smem = dq_shared_bytes<D, kWarps>();
  const dim3 grid = grid_of(p, kWarps * kRows);
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dq_bf16_kernel<D, kWarps, Out>, smem));
  attention_backward_dq_bf16_kernel<D, kWarps, Out>
      <<<grid, kWarps * 32, smem, stream>>>(dqkv, dsum, src, lse, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  constexpr size_t smem_kv = dkv_shared_bytes<D, kWarps>();
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dkv_bf16_kernel<D, kWarps, Out>, smem_kv));
  attention_backward_dkv_bf16_kernel<D, kWarps, Out>
      <<<grid, kWarps * 32, smem_kv, stream>>>(dqkv, src, lse, dsum, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out, typename Q>
Status forward_impl(Out* out, float* lse, const Q* qkv, int B, int T, int C, int NH, cudaStream_t stream,
                    const KernelVariants& variant, KernelVariantRuns* runs) {
  PERIGEE_CHECK(check_pointers("attention_forward_bf16", {out, lse, qkv}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_forward_bf16", B, T, C, NH, &p));
  if constexpr (std::is_same_v<Q, uint16_t>) {
    // The wide kernel streams its tiles with cp.async from a 16-byte-aligned bf16 qkv; its registers
    // (two groups of accumulators and Q fragments) leave no room for D = 128.
    if (variant.attention_wide_forward && aligned16(qkv) && p.hs <= kWideMaxHeadSize) {
      if (runs != nullptr) ++runs->attention_wide_forward;
      return attention_forward_wide_bf16(out, lse, qkv, B, T, C, NH, p.scale, stream);
    }
  }
  if (p.hs <= 32) return launch_forward<32, kFwdWarps>(out, lse, qkv, p, stream);
  if (p.hs <= 64) return launch_forward<64, kFwdWarps>(out, lse, qkv, p, stream);
  return launch_forward<128, kFwdWarps>(out, lse, qkv, p, stream);
}

}  // namespace

// Scratch: D [B, NH, T] fp32, the bf16 planes (q, k, v and dout, or dout alone in place), then the
// one-pass kernel's accumulator and counters.
size_t attention_backward_bf16_scratch_bytes(int B, int T, int C, int NH, bool in_place,
                                             const KernelVariants& variant) {
  const size_t rows = static_cast<size_t>(B) * NH * T;
  const size_t elems = static_cast<size_t>(B) * T * C;
  const size_t bytes = scratch_bytes<float>(rows) + scratch_bytes<bf16>((in_place ? 1 : 4) * elems);
  const bool one_pass =
      variant.attention_one_pass_backward && NH > 0 && attention_one_pass_supports(B, NH, C / NH);
  return bytes + (one_pass ? attention_one_pass_scratch_bytes(B, T, C, NH) : 0);
}

namespace {

template <typename Out, typename Q>
Status backward_impl(Out* dqkv, const float* dout, const Q* qkv, const Out* out, const float* lse, int B,
                     int T, int C, int NH, DeviceScratch& scratch, cudaStream_t stream,
                     const KernelVariants& variant, KernelVariantRuns* runs) {
  PERIGEE_CHECK(check_pointers("attention_backward_bf16", {dqkv, dout, qkv, out, lse}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_backward_bf16", B, T, C, NH, &p));
  // A bf16 qkv on a 16-byte boundary can be read in place (every row and head of it starts on one too: C
  // and hs are multiples of 16 elements), unless dqkv overlaps it: the dK/dV pass reads q after the dQ
  // pass has written dq.
  const size_t n3 = 3 * static_cast<size_t>(B) * T * C;
  const bool in_place = variant.attention_in_place_backward && std::is_same_v<Q, uint16_t> &&
                        aligned16(qkv) && !bytes_overlap(dqkv, n3 * sizeof(Out), qkv, n3 * sizeof(Q));
  if (in_place && runs != nullptr) ++runs->attention_in_place_backward;
  const int first = in_place ? 3 : 0;  // the planes made: q, k, v and dout, or dout alone
  const size_t n_planes = static_cast<size_t>(4 - first);
  const bool one_pass = variant.attention_one_pass_backward && attention_one_pass_supports(B, NH, p.hs);
  if (one_pass && runs != nullptr) ++runs->attention_one_pass_backward;
  const size_t rows = static_cast<size_t>(B) * NH * T;
  const size_t elems = static_cast<size_t>(B) * T * C;
  void* base = nullptr;
  PERIGEE_CHECK(
      scratch.get(attention_backward_bf16_scratch_bytes(B, T, C, NH, in_place, variant), stream, &base));
  ScratchCarver carver(base);
  float* dsum = carver.take<float>(rows);
  bf16* planes = carver.take<bf16>(n_planes * elems);
  char* rest = carver.take<char>(0);  // the one-pass kernel's part
  convert_bf16_kernel<<<flat_grid(n_planes * elems / 4, 256), 256, 0, stream>>>(
      planes, qkv, dout, B, T, C, NH, first, quad_aligned(qkv) && aligned16(dout));
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  const int64_t hs = p.hs;
  const auto plane_rows = [&](size_t k) {
    return HeadRows{planes + k * elems, static_cast<int64_t>(NH) * T * hs, T * hs, hs};
  };
  const auto qkv_rows = [&](int which) {  // in place: the q, k or v third of each row of qkv
    return HeadRows{reinterpret_cast<const bf16*>(qkv) + static_cast<int64_t>(which) * C,
                    3 * static_cast<int64_t>(T) * C, hs, 3 * static_cast<int64_t>(C)};
  };
  const BackwardRows src = in_place
                               ? BackwardRows{qkv_rows(0), qkv_rows(1), qkv_rows(2), plane_rows(0)}
                               : BackwardRows{plane_rows(0), plane_rows(1), plane_rows(2), plane_rows(3)};
  constexpr int kDsumWarps = 8;
  const int64_t BT = static_cast<int64_t>(B) * T;  // rows: B*T may pass INT32_MAX
  const int64_t dsum_blocks = ceil_div(BT, int64_t{kDsumWarps});
  PERIGEE_REQUIRE(dsum_blocks <= INT32_MAX, StatusCode::kInvalidArgument,
                  "attention_backward_bf16: B*T = ", BT, " rows is too many");
  attention_dsum_kernel<<<static_cast<unsigned>(dsum_blocks), kDsumWarps * 32, 0, stream>>>(dsum, dout, out,
                                                                                            BT, T, C, NH);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  if (one_pass) {
    return attention_backward_one_pass_bf16(dqkv, dsum, src, lse, B, T, C, NH, p.scale, rest, stream);
  }
  if (p.hs <= 32) return launch_backward<32, kBwdWarps>(dqkv, dsum, src, lse, p, stream);
  if (p.hs <= 64) return launch_backward<64, kBwdWarps>(dqkv, dsum, src, lse, p, stream);
  return launch_backward<128, kBwdWarps>(dqkv, dsum, src, lse, p, stream);
}

}  // namespace

// ---- kernel launchers

size_t attention_bf16_shared_bytes(int head_size) {
  const size_t wide =
      std::max(attention_wide_shared_bytes(head_size), attention_one_pass_shared_bytes(head_size));
  if (head_size <= 32) return std::max(most_shared_bytes<32>(), wide);
  if (head_size <= 64) return std::max(most_shared_bytes<64>(), wide);
  return most_shared_bytes<128>();
}

bool attention_bf16_supports(int C, int NH) {
  if (C <= 0 || NH <= 0 || C % NH != 0) return false;
  const int hs = C / NH;
  return hs % 16 == 0 && hs <= kMaxHeadSize;
}

Status attention_forward_bf16(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return forward_impl(out, lse, qkv, B, T, C, NH, stream, variant, runs);
}

Status attention_forward_bf16(uint16_t* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return forward_impl(out, lse, qkv, B, T, C, NH, stream, variant, runs);
}

Status attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return backward_impl(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, stream, variant, runs);
}

Status attention_backward_bf16(uint16_t* dqkv, const float* dout, const float* qkv, const uint16_t* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return backward_impl(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, stream, variant, runs);
}

Status attention_forward_bf16(uint16_t* out, float* lse, const uint16_t* qkv, int B, int T, int C, int NH,
                              cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return forward_impl(out, lse, qkv, B, T, C, NH, stream, variant, runs);
}

Status attention_backward_bf16(uint16_t* dqkv, const float* dout, const uint16_t* qkv, const uint16_t* out,
                               const float* lse, int B, int T, int C, int NH, DeviceScratch& scratch,
                               cudaStream_t stream, const KernelVariants& variant, KernelVariantRuns* runs) {
  return backward_impl(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch, stream, variant, runs);
}

}  // namespace perigee::kernels::cuda
