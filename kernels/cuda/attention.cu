// Causal multi-head self-attention, fp32 flash-style forward and two-kernel backward (see attention.cuh).
#include "kernels/cuda/attention.cuh"

#include <cmath>

#include "kernels/cuda/attention_tiles.hpp"

namespace perigee::kernels::cuda {
namespace {

constexpr int kLanes = kAttentionFp32Lanes;  // threads sharing one row group (the tx of a ty)

// Shared-memory geometry for a compiled head width D (hs <= D, padded with zeros) and R query rows and
// key rows per tile. A block has 4 R threads: ty = threadIdx.x / 16 owns rows 4 ty .. 4 ty + 3.
template <int D, int R>
struct Geometry {
  static_assert(D == 32 || D == 64 || D == 128, "compiled head widths are 32, 64 and 128");
  static_assert(R == 32 || R == 64, "compiled tiles have 32 or 64 rows");
  static constexpr int kThreads = 4 * R;
  static constexpr int kScoreStride = R + 4;          // row stride of [R][R] score tiles
  static constexpr int kScoreCols = R / kLanes;       // score columns per thread: tx + 16 j
  static constexpr int kStride = D + 4;               // row stride of [R][D] tiles
  static constexpr int kTileFloats = R * kStride;     // one [R][D] tile
  static constexpr int kCols = D / kLanes;            // output columns per thread
  static constexpr int kVec = kCols < 4 ? kCols : 4;  // contiguous columns per vector read
  static constexpr int kGroups = kCols / kVec;        // vector reads per output row

  // Column of a thread's output element e: groups of kLanes * kVec columns, kVec per thread.
  __device__ static constexpr int column(int tx, int e) {
    return (e / kVec) * (kLanes * kVec) + tx * kVec + e % kVec;
  }
};

// ---- CUDA kernels (device helpers first)

__device__ __forceinline__ float component(const float4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

// dst[0..V) = src[0..V) with one vector read (src aligned to V floats).
template <int V>
__device__ __forceinline__ void load_vector(float* dst, const float* src) {
  static_assert(V == 2 || V == 4, "vector width 2 or 4");
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(src);
    dst[0] = t.x;
    dst[1] = t.y;
    dst[2] = t.z;
    dst[3] = t.w;
  } else {
    const float2 t = *reinterpret_cast<const float2*>(src);
    dst[0] = t.x;
    dst[1] = t.y;
  }
}

// tile[r][d] = src[(row0 + r) * ld + d] for rows < T and d < hs, else 0 (reads coalesced along d).
template <int D, int R>
__device__ __forceinline__ void load_tile(float* tile, const float* src, int64_t ld, int row0, int T,
                                          int hs) {
  for (int idx = threadIdx.x; idx < R * D; idx += Geometry<D, R>::kThreads) {
    const int r = idx / D;
    const int d = idx % D;
    const int row = row0 + r;
    tile[r * Geometry<D, R>::kStride + d] =
        (row < T && d < hs) ? src[static_cast<int64_t>(row) * ld + d] : 0.0f;
  }
}

// acc[a][j] = sum_d A[4 ty + a][d] * B[tx + 16 j][d], d ascending (A, B: [R][D] tiles).
template <int D, int R>
__device__ __forceinline__ void score_tile(float (&acc)[4][Geometry<D, R>::kScoreCols], const float* A,
                                           const float* B, int ty, int tx) {
  using G = Geometry<D, R>;
  constexpr int S = G::kStride;
#pragma unroll
  for (int a = 0; a < 4; ++a) {
#pragma unroll
    for (int j = 0; j < G::kScoreCols; ++j) acc[a][j] = 0.0f;
  }
#pragma unroll 4
  for (int d = 0; d < D; d += 4) {
    float4 av[4];
    float4 bv[G::kScoreCols];
#pragma unroll
    for (int a = 0; a < 4; ++a) av[a] = *reinterpret_cast<const float4*>(A + (4 * ty + a) * S + d);
#pragma unroll
    for (int j = 0; j < G::kScoreCols; ++j)
      bv[j] = *reinterpret_cast<const float4*>(B + (tx + kLanes * j) * S + d);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) {
        acc[a][j] += av[a].x * bv[j].x;
        acc[a][j] += av[a].y * bv[j].y;
        acc[a][j] += av[a].z * bv[j].z;
        acc[a][j] += av[a].w * bv[j].w;
      }
    }
  }
}

// acc[a][e] += sum_j P[4 ty + a][j] * X[j][column(e)], j ascending (P: [R][R] scores,
// X: [R][D] tile).
template <int D, int R>
__device__ __forceinline__ void accumulate_rows(float (&acc)[4][Geometry<D, R>::kCols], const float* P,
                                                const float* X, int ty, int tx) {
  using G = Geometry<D, R>;
#pragma unroll 2
  for (int j = 0; j < R; j += 4) {
    float4 pv[4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
      pv[a] = *reinterpret_cast<const float4*>(P + (4 * ty + a) * G::kScoreStride + j);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      float x[G::kCols];
#pragma unroll
      for (int g = 0; g < G::kGroups; ++g) {
        load_vector<G::kVec>(x + g * G::kVec,
                             X + (j + jj) * G::kStride + g * kLanes * G::kVec + tx * G::kVec);
      }
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const float p = component(pv[a], jj);
#pragma unroll
        for (int e = 0; e < G::kCols; ++e) acc[a][e] += p * x[e];
      }
    }
  }
}

// acc[a][e] += sum_i P[i][4 ty + a] * X[i][column(e)], i ascending (P: [R][R] stored with the
// query index i as its row, X: [R][D] tile of query rows).
template <int D, int R>
__device__ __forceinline__ void accumulate_columns(float (&acc)[4][Geometry<D, R>::kCols], const float* P,
                                                   const float* X, int ty, int tx) {
  using G = Geometry<D, R>;
#pragma unroll 4
  for (int i = 0; i < R; ++i) {
    const float4 p = *reinterpret_cast<const float4*>(P + i * G::kScoreStride + 4 * ty);
    float x[G::kCols];
#pragma unroll
    for (int g = 0; g < G::kGroups; ++g) {
      load_vector<G::kVec>(x + g * G::kVec, X + i * G::kStride + g * kLanes * G::kVec + tx * G::kVec);
    }
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) {
      acc[0][e] += p.x * x[e];
      acc[1][e] += p.y * x[e];
      acc[2][e] += p.z * x[e];
      acc[3][e] += p.w * x[e];
    }
  }
}

// One block per (b*NH + h = blockIdx.x, query tile). Online softmax over key tiles 0..q_tile; saves
// lse = m + log(l) per row.
template <int D, int R>
__global__ void __launch_bounds__(4 * R)
    attention_forward_kernel(float* out, float* lse, const float* qkv, int T, int C, int NH, float scale) {
  using G = Geometry<D, R>;
  extern __shared__ __align__(16) float smem[];
  float* q_s = smem;
  float* k_s = q_s + G::kTileFloats;
  float* v_s = k_s + G::kTileFloats;
  float* p_s = v_s + G::kTileFloats;  // [R][kScoreStride]

  const int tx = threadIdx.x % kLanes;
  const int ty = threadIdx.x / kLanes;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q_tile = gridDim.y - 1 - blockIdx.y;  // the longest rows start first
  const int q0 = q_tile * R;
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;

  load_tile<D, R>(q_s, q_g, ld, q0, T, hs);
  float m[4];
  float l[4];
  float o[4][G::kCols];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    m[a] = -INFINITY;
    l[a] = 0.0f;
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) o[a][e] = 0.0f;
  }

  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * R;
    __syncthreads();  // every thread is done with the previous k_s, v_s, p_s
    load_tile<D, R>(k_s, k_g, ld, k0, T, hs);
    load_tile<D, R>(v_s, v_g, ld, k0, T, hs);
    __syncthreads();
    float s[4][G::kScoreCols];
    score_tile<D, R>(s, q_s, k_s, ty, tx);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int row = q0 + 4 * ty + a;
      float row_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) {
        const int col = k0 + tx + kLanes * j;
        s[a][j] = col <= row ? s[a][j] * scale : -INFINITY;  // causal (also hides keys >= T)
        row_max = fmaxf(row_max, s[a][j]);
      }
      // Key 0 is visible to every row, so m_new is finite from the first tile on; exp(-inf) = 0 gives
      // alpha = 0 on the first tile and p = 0 for masked scores.
      const float m_new = fmaxf(m[a], group_max<kLanes>(row_max));
      const float alpha = expf(m[a] - m_new);
      float row_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) {
        s[a][j] = expf(s[a][j] - m_new);
        row_sum += s[a][j];
      }
      l[a] = l[a] * alpha + group_sum<float, kLanes>(row_sum);
      m[a] = m_new;
#pragma unroll
      for (int e = 0; e < G::kCols; ++e) o[a][e] *= alpha;
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) p_s[(4 * ty + a) * G::kScoreStride + tx + kLanes * j] = s[a][j];
    }
    __syncthreads();
    accumulate_rows<D, R>(o, p_s, v_s, ty, tx);
  }

#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int row = q0 + 4 * ty + a;
    if (row >= T) continue;
    const float inv_l = 1.0f / l[a];
    float* o_g = out + (static_cast<int64_t>(b) * T + row) * C + h * hs;
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) {
      const int d = G::column(tx, e);
      if (d < hs) o_g[d] = o[a][e] * inv_l;
    }
    if (tx == 0) lse[static_cast<int64_t>(bh) * T + row] = m[a] + logf(l[a]);
  }
}

// P of a score s (unscaled) in row `row` and key column `col`: exp(s * scale - lse), 0 above the diagonal.
__device__ __forceinline__ float probability(float s, int row, int col, float scale, float row_lse) {
  return col <= row ? expf(s * scale - row_lse) : 0.0f;
}

// Backward pass 1, one block per (b*NH + h, query tile): D_i = sum_j P_ij dP_ij (saved to dsum), then
// dQ_i = sum_j dS_ij K_j with dS = P (dP - D) scale.
template <int D, int R>
__global__ void __launch_bounds__(4 * R)
    attention_backward_dq_kernel(float* dqkv, float* dsum, const float* dout, const float* qkv,
                                 const float* lse, int T, int C, int NH, float scale) {
  using G = Geometry<D, R>;
  extern __shared__ __align__(16) float smem[];
  float* q_s = smem;
  float* do_s = q_s + G::kTileFloats;
  float* k_s = do_s + G::kTileFloats;
  float* v_s = k_s + G::kTileFloats;
  float* ds_s = v_s + G::kTileFloats;  // [R][kScoreStride]

  const int tx = threadIdx.x % kLanes;
  const int ty = threadIdx.x / kLanes;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int q_tile = gridDim.y - 1 - blockIdx.y;
  const int q0 = q_tile * R;
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;
  const float* do_g = dout + static_cast<int64_t>(b) * T * C + h * hs;

  load_tile<D, R>(q_s, q_g, ld, q0, T, hs);
  load_tile<D, R>(do_s, do_g, C, q0, T, hs);
  float row_lse[4];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int row = q0 + 4 * ty + a;
    row_lse[a] = row < T ? lse[static_cast<int64_t>(bh) * T + row] : 0.0f;
  }

  // D_i: each thread sums its R/16 columns of every key tile in double, then the 16 lanes of a row combine.
  double d_acc[4] = {0.0, 0.0, 0.0, 0.0};
  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * R;
    __syncthreads();
    load_tile<D, R>(k_s, k_g, ld, k0, T, hs);
    load_tile<D, R>(v_s, v_g, ld, k0, T, hs);
    __syncthreads();
    float s[4][G::kScoreCols];
    float dp[4][G::kScoreCols];
    score_tile<D, R>(s, q_s, k_s, ty, tx);
    score_tile<D, R>(dp, do_s, v_s, ty, tx);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int row = q0 + 4 * ty + a;
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) {
        const float p = probability(s[a][j], row, k0 + tx + kLanes * j, scale, row_lse[a]);
        d_acc[a] += static_cast<double>(p * dp[a][j]);
      }
    }
  }
  float row_d[4];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
    row_d[a] = static_cast<float>(group_sum<double, kLanes>(d_acc[a]));
    const int row = q0 + 4 * ty + a;
    if (tx == 0 && row < T) dsum[static_cast<int64_t>(bh) * T + row] = row_d[a];
  }

  float dq[4][G::kCols];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) dq[a][e] = 0.0f;
  }
  for (int kt = 0; kt <= q_tile; ++kt) {
    const int k0 = kt * R;
    __syncthreads();  // every thread is done with the previous k_s, v_s, ds_s
    load_tile<D, R>(k_s, k_g, ld, k0, T, hs);
    load_tile<D, R>(v_s, v_g, ld, k0, T, hs);
    __syncthreads();
    float s[4][G::kScoreCols];
    float dp[4][G::kScoreCols];
    score_tile<D, R>(s, q_s, k_s, ty, tx);
    score_tile<D, R>(dp, do_s, v_s, ty, tx);
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int row = q0 + 4 * ty + a;
#pragma unroll
      for (int j = 0; j < G::kScoreCols; ++j) {
        const float p = probability(s[a][j], row, k0 + tx + kLanes * j, scale, row_lse[a]);
        ds_s[(4 * ty + a) * G::kScoreStride + tx + kLanes * j] = p * (dp[a][j] - row_d[a]) * scale;
      }
    }
    __syncthreads();
    accumulate_rows<D, R>(dq, ds_s, k_s, ty, tx);
  }

#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int row = q0 + 4 * ty + a;
    if (row >= T) continue;
    float* dq_g = dqkv + (static_cast<int64_t>(b) * T + row) * ld + h * hs;
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) {
      const int d = G::column(tx, e);
      if (d < hs) dq_g[d] = dq[a][e];
    }
  }
}

// Backward pass 2, one block per (b*NH + h, key tile): over query tiles from the diagonal on,
// dV_j = sum_i P_ij dO_i and dK_j = sum_i dS_ij Q_i. Thread rows are keys, columns queries.
template <int D, int R>
__global__ void __launch_bounds__(4 * R)
    attention_backward_dkv_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                                  const float* dsum, int T, int C, int NH, float scale) {
  using G = Geometry<D, R>;
  extern __shared__ __align__(16) float smem[];
  float* k_s = smem;
  float* v_s = k_s + G::kTileFloats;
  float* q_s = v_s + G::kTileFloats;
  float* do_s = q_s + G::kTileFloats;
  float* p_s = do_s + G::kTileFloats;       // [R queries][kScoreStride]: P[i][j]
  float* ds_s = p_s + R * G::kScoreStride;  // dS[i][j]
  float* lse_s = ds_s + R * G::kScoreStride;
  float* d_s = lse_s + R;

  const int tx = threadIdx.x % kLanes;
  const int ty = threadIdx.x / kLanes;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int k_tile = blockIdx.y;  // the first key tiles see the most queries and start first
  const int k0 = k_tile * R;
  const int hs = C / NH;
  const int64_t ld = 3 * static_cast<int64_t>(C);
  const float* q_g = qkv + static_cast<int64_t>(b) * T * ld + h * hs;
  const float* k_g = q_g + C;
  const float* v_g = q_g + 2 * C;
  const float* do_g = dout + static_cast<int64_t>(b) * T * C + h * hs;

  load_tile<D, R>(k_s, k_g, ld, k0, T, hs);
  load_tile<D, R>(v_s, v_g, ld, k0, T, hs);
  float dk[4][G::kCols];
  float dv[4][G::kCols];
#pragma unroll
  for (int a = 0; a < 4; ++a) {
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) {
      dk[a][e] = 0.0f;
      dv[a][e] = 0.0f;
    }
  }

  for (int qt = k_tile; qt < static_cast<int>(gridDim.y); ++qt) {
    const int q0 = qt * R;
    __syncthreads();  // every thread is done with the previous query tile
    load_tile<D, R>(q_s, q_g, ld, q0, T, hs);
    load_tile<D, R>(do_s, do_g, C, q0, T, hs);
    if (threadIdx.x < R) {
      const int row = q0 + threadIdx.x;
      lse_s[threadIdx.x] = row < T ? lse[static_cast<int64_t>(bh) * T + row] : 0.0f;
      d_s[threadIdx.x] = row < T ? dsum[static_cast<int64_t>(bh) * T + row] : 0.0f;
    }
    __syncthreads();
    float s[4]
           [G::kScoreCols];  // s[a][j]: key 4 ty + a, query tx + 16 j (bit-identical to the forward's score)
    float dp[4][G::kScoreCols];  // dP likewise
    score_tile<D, R>(s, k_s, q_s, ty, tx);
    score_tile<D, R>(dp, v_s, do_s, ty, tx);
#pragma unroll
    for (int j = 0; j < G::kScoreCols; ++j) {
      const int i_local = tx + kLanes * j;
      const int i = q0 + i_local;
      float p[4];
      float ds[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const int key = k0 + 4 * ty + a;
        p[a] = i < T ? probability(s[a][j], i, key, scale, lse_s[i_local]) : 0.0f;
        ds[a] = p[a] * (dp[a][j] - d_s[i_local]) * scale;
      }
      *reinterpret_cast<float4*>(p_s + i_local * G::kScoreStride + 4 * ty) =
          make_float4(p[0], p[1], p[2], p[3]);
      *reinterpret_cast<float4*>(ds_s + i_local * G::kScoreStride + 4 * ty) =
          make_float4(ds[0], ds[1], ds[2], ds[3]);
    }
    __syncthreads();
    accumulate_columns<D, R>(dv, p_s, do_s, ty, tx);
    accumulate_columns<D, R>(dk, ds_s, q_s, ty, tx);
  }

#pragma unroll
  for (int a = 0; a < 4; ++a) {
    const int key = k0 + 4 * ty + a;
    if (key >= T) continue;
    float* base = dqkv + (static_cast<int64_t>(b) * T + key) * ld + h * hs;
#pragma unroll
    for (int e = 0; e < G::kCols; ++e) {
      const int d = G::column(tx, e);
      if (d < hs) {
        base[C + d] = dk[a][e];
        base[2 * C + d] = dv[a][e];
      }
    }
  }
}

// ---- host helpers

struct Problem {
  int B, T, C, NH, hs;
  int rows;  // rows per tile: 64, or 32 where the device's shared memory is too small for 64
  float scale;
  dim3 grid;
};

// Rows per tile of `pass` for head size hs where a block may have `shared_limit` bytes.
Status choose_rows(const char* op, AttentionPass pass, int hs, size_t shared_limit, int* rows) {
  *rows = attention_fp32_rows(pass, hs, shared_limit);
  PERIGEE_REQUIRE(*rows != 0, StatusCode::kUnavailable, op, ": the fp32 kernels for head size ", hs, " need ",
                  attention_fp32_pass_bytes(pass, attention_fp32_width(hs), 32),
                  " bytes of shared memory per block even with 32-row tiles, and a block may have ",
                  shared_limit, " on this device");
  return Status::ok();
}

Status make_problem(const char* op, AttentionPass pass, int B, int T, int C, int NH, size_t shared_limit,
                    Problem* p) {
  PERIGEE_CHECK(check_dims(op, {B, T, C, NH}));
  PERIGEE_REQUIRE(C % NH == 0, StatusCode::kInvalidArgument, op, ": C = ", C,
                  " is not a multiple of NH = ", NH);
  const int hs = C / NH;
  PERIGEE_REQUIRE(hs <= kAttentionMaxHeadSize, StatusCode::kInvalidArgument, op, ": head size ", hs,
                  " exceeds the CUDA backend's maximum of ", kAttentionMaxHeadSize);
  PERIGEE_REQUIRE(static_cast<int64_t>(B) * NH <= INT32_MAX, StatusCode::kInvalidArgument, op,
                  ": B*NH = ", static_cast<int64_t>(B) * NH, " is too large");
  int rows = 0;
  PERIGEE_CHECK(choose_rows(op, pass, hs, shared_limit, &rows));
  const int tiles = ceil_div(T, rows);
  PERIGEE_REQUIRE(tiles <= 65535, StatusCode::kInvalidArgument, op, ": T = ", T, " is too long");
  *p = Problem{B,
               T,
               C,
               NH,
               hs,
               rows,
               1.0f / std::sqrt(static_cast<float>(hs)),
               dim3(static_cast<unsigned>(B * NH), static_cast<unsigned>(tiles))};
  return Status::ok();
}

template <int D, int R>
Status launch_forward(float* out, float* lse, const float* qkv, const Problem& p, cudaStream_t stream) {
  using G = Geometry<D, R>;
  constexpr size_t smem = attention_fp32_forward_bytes(D, R);
  static_assert(smem == (3 * G::kTileFloats + R * G::kScoreStride) * sizeof(float));
  PERIGEE_CHECK(allow_shared_memory(attention_forward_kernel<D, R>, smem));
  attention_forward_kernel<D, R>
      <<<p.grid, G::kThreads, smem, stream>>>(out, lse, qkv, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <int D, int R>
Status launch_backward(float* dqkv, float* dsum, const float* dout, const float* qkv, const float* lse,
                       const Problem& p, cudaStream_t stream) {
  using G = Geometry<D, R>;
  constexpr size_t dq_smem = attention_fp32_dq_bytes(D, R);
  static_assert(dq_smem == (4 * G::kTileFloats + R * G::kScoreStride) * sizeof(float));
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dq_kernel<D, R>, dq_smem));
  attention_backward_dq_kernel<D, R>
      <<<p.grid, G::kThreads, dq_smem, stream>>>(dqkv, dsum, dout, qkv, lse, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  constexpr size_t dkv_smem = attention_fp32_dkv_bytes(D, R);
  static_assert(dkv_smem == (4 * G::kTileFloats + 2 * R * G::kScoreStride + 2 * R) * sizeof(float));
  PERIGEE_CHECK(allow_shared_memory(attention_backward_dkv_kernel<D, R>, dkv_smem));
  attention_backward_dkv_kernel<D, R>
      <<<p.grid, G::kThreads, dkv_smem, stream>>>(dqkv, dout, qkv, lse, dsum, p.T, p.C, p.NH, p.scale);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <int R>
Status forward_with_rows(float* out, float* lse, const float* qkv, const Problem& p, cudaStream_t stream) {
  if (p.hs <= 32) return launch_forward<32, R>(out, lse, qkv, p, stream);
  if (p.hs <= 64) return launch_forward<64, R>(out, lse, qkv, p, stream);
  return launch_forward<128, R>(out, lse, qkv, p, stream);
}

template <int R>
Status backward_with_rows(float* dqkv, float* dsum, const float* dout, const float* qkv, const float* lse,
                          const Problem& p, cudaStream_t stream) {
  if (p.hs <= 32) return launch_backward<32, R>(dqkv, dsum, dout, qkv, lse, p, stream);
  if (p.hs <= 64) return launch_backward<64, R>(dqkv, dsum, dout, qkv, lse, p, stream);
  return launch_backward<128, R>(dqkv, dsum, dout, qkv, lse, p, stream);
}

void count_pass(const Problem& p, KernelVariantRuns* runs) {
  if (runs == nullptr) return;
  ++runs->attention_fp32_passes;
  if (p.rows == 32) ++runs->attention_fp32_32_row_passes;
}

}  // namespace

// ---- kernel launchers

Status attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                         size_t shared_limit, cudaStream_t stream, KernelVariantRuns* runs) {
  PERIGEE_CHECK(check_pointers("attention_forward", {out, lse, qkv}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_forward", AttentionPass::kForward, B, T, C, NH, shared_limit, &p));
  count_pass(p, runs);
  if (p.rows == 64) return forward_with_rows<64>(out, lse, qkv, p, stream);
  return forward_with_rows<32>(out, lse, qkv, p, stream);
}

Status attention_backward(float* dqkv, const float* dout, const float* qkv, const float* lse, int B, int T,
                          int C, int NH, size_t shared_limit, DeviceScratch& scratch, cudaStream_t stream,
                          KernelVariantRuns* runs) {
  PERIGEE_CHECK(check_pointers("attention_backward", {dqkv, dout, qkv, lse}));
  Problem p{};
  PERIGEE_CHECK(make_problem("attention_backward", AttentionPass::kBackward, B, T, C, NH, shared_limit, &p));
  count_pass(p, runs);
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(scratch_bytes<float>(attention_state_floats(B, T, NH)), stream, &base));
  float* dsum = static_cast<float*>(base);
  if (p.rows == 64) return backward_with_rows<64>(dqkv, dsum, dout, qkv, lse, p, stream);
  return backward_with_rows<32>(dqkv, dsum, dout, qkv, lse, p, stream);
}

}  // namespace perigee::kernels::cuda
