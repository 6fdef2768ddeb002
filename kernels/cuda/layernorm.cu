// LayerNorm, fp32 storage with double reductions, the forward output fp32 or bf16 (see layernorm.cuh).
#include "kernels/cuda/layernorm.cuh"

#include <algorithm>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/device_probe.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kRowBlock = 256;  // 8 warps = 8 rows per block
constexpr int kRowsPerBlock = kRowBlock / kWarpSize;
constexpr float kEps = 1e-5f;    // fixed by the Backend interface
constexpr int kColumnTile = 32;  // columns per block in the dweight/dbias stage 1
constexpr int kRowThreads = 8;   // threads along the rows in stage 1
constexpr int kFinishBlock = 128;
// Largest dynamic shared memory of the fused backward (2 * 8 * C doubles: C <= 1600); wider rows
// take the two-kernel path. Hopper allows 227 KB per block; smaller devices (A100 163 KB, sm_86/89
// 99 KB) lower the limit to their own (fused_shared_limit).
constexpr size_t kFusedSharedLimit = 200 * 1024;
constexpr int kMaxVec = 8;  // float4 per lane of the vectorised backward: C <= 4 * 32 * 8 = 1024

// ---- CUDA kernels

// kAdd: the row is first formed as sum = inp + inp2 (the residual add, fp32), written to `sum` and
// normalised from there (each lane reads back only the columns it wrote); else the row is inp.
template <typename Out, bool kAdd>
__global__ void layernorm_forward_kernel(Out* out, float* mean, float* rstd, float* sum, const float* inp,
                                         const float* inp2, const float* weight, const float* bias, int N,
                                         int C) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= N) return;  // whole warps leave together
  const float* x = inp + row * C;
  double total = 0.0;
  if constexpr (kAdd) {
    const float* y = inp2 + row * C;
    float* r = sum + row * C;
    for (int c = lane; c < C; c += kWarpSize) {
      const float v = x[c] + y[c];
      r[c] = v;
      total += static_cast<double>(v);
    }
    x = r;
  } else {
    for (int c = lane; c < C; c += kWarpSize) total += static_cast<double>(x[c]);
  }
  const double m = group_sum(total) / C;
  double sq = 0.0;
  for (int c = lane; c < C; c += kWarpSize) {
    const double d = static_cast<double>(x[c]) - m;
    sq += d * d;
  }
  sq = group_sum(sq);
  const float mf = static_cast<float>(m);
  const float s = static_cast<float>(1.0 / sqrt(sq / C + static_cast<double>(kEps)));
  Out* o = out + row * C;
  for (int c = lane; c < C; c += kWarpSize) store_act(o, c, (x[c] - mf) * s * weight[c] + bias[c]);
  if (lane == 0) {
    mean[row] = mf;
    rstd[row] = s;
  }
}

// One warp over one row: mean(g) and mean(g * xhat), g = dout * weight, xhat = (x - mean) * rstd, summed
// in double per lane and across the lanes by butterfly (every lane gets the same values).
__device__ __forceinline__ void row_gradient_means(const float* d, const float* x, const float* weight,
                                                   float m, float s, int C, int lane, float* g_mean,
                                                   float* gx_mean) {
  double g_sum = 0.0;
  double gx_sum = 0.0;
  for (int c = lane; c < C; c += kWarpSize) {
    const float g = d[c] * weight[c];
    g_sum += static_cast<double>(g);
    gx_sum += static_cast<double>(g) * static_cast<double>((x[c] - m) * s);
  }
  *g_mean = static_cast<float>(group_sum(g_sum) / C);
  *gx_mean = static_cast<float>(group_sum(gx_sum) / C);
}

// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight, xhat = (x - mean) * rstd.
__global__ void layernorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                               const float* weight, const float* mean, const float* rstd,
                                               int N, int C) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= N) return;
  const float* x = inp + row * C;
  const float* d = dout + row * C;
  const float m = mean[row];
  const float s = rstd[row];
  float g_mean = 0.0f, gx_mean = 0.0f;
  row_gradient_means(d, x, weight, m, s, C, lane, &g_mean, &gx_mean);
  float* dx = dinp + row * C;
  for (int c = lane; c < C; c += kWarpSize) {
    // g rounded as in the sums above (__fmul_rn is never fused into the subtraction), so a row whose
    // g equals its mean (C = 1) gives exactly 0 instead of rstd times the product's rounding error.
    const float g = __fmul_rn(d[c], weight[c]);
    const float xhat = (x[c] - m) * s;
    dx[c] += s * (g - g_mean - xhat * gx_mean);
  }
}

// Stage 1: block (row range bx, column tile by); thread (tx, ty) sums rows bx*R + ty, + kRowThreads, ...
// then the kRowThreads partial sums of a column are added in ty order. partial_dw/partial_db [P, C].
__global__ void layernorm_backward_partial_kernel(double* partial_dw, double* partial_db, const float* dout,
                                                  const float* inp, const float* mean, const float* rstd,
                                                  int N, int C) {
  __shared__ double s_dw[kRowThreads][kColumnTile];
  __shared__ double s_db[kRowThreads][kColumnTile];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int c = blockIdx.y * kColumnTile + tx;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.x) * kLayerNormRowsPerPartial;
  const int64_t row_end = min(static_cast<int64_t>(N), row_begin + kLayerNormRowsPerPartial);
  double dw = 0.0;
  double db = 0.0;
  if (c < C) {
    for (int64_t n = row_begin + ty; n < row_end; n += kRowThreads) {
      const float d = dout[n * C + c];
      dw += static_cast<double>(d * ((inp[n * C + c] - mean[n]) * rstd[n]));
      db += static_cast<double>(d);
    }
  }
  s_dw[ty][tx] = dw;
  s_db[ty][tx] = db;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int k = 1; k < kRowThreads; ++k) {
      dw += s_dw[k][tx];
      db += s_db[k][tx];
    }
    partial_dw[static_cast<int64_t>(blockIdx.x) * C + c] = dw;
    partial_db[static_cast<int64_t>(blockIdx.x) * C + c] = db;
  }
}

// The end of both fused stage-1 kernels: the kRowsPerBlock warp rows of s_acc ([kRowsPerBlock][C] dw,
// then [kRowsPerBlock][C] db, complete after a __syncthreads) added in warp order into the block's
// partial row.
__device__ __forceinline__ void write_block_partials(double* partial_dw, double* partial_db,
                                                     const double* s_acc, int C) {
  for (int c = threadIdx.x; c < C; c += kRowBlock) {
    double dw = s_acc[c];
    double db = s_acc[static_cast<size_t>(kRowsPerBlock) * C + c];
    for (int w = 1; w < kRowsPerBlock; ++w) {
      dw += s_acc[static_cast<size_t>(w) * C + c];
      db += s_acc[static_cast<size_t>(kRowsPerBlock + w) * C + c];
    }
    partial_dw[static_cast<int64_t>(blockIdx.x) * C + c] = dw;
    partial_db[static_cast<int64_t>(blockIdx.x) * C + c] = db;
  }
}

// Fused stage 1: block bx owns rows [bx * kLayerNormRowsPerPartial, ...); warp w takes rows w, w + 8, ...
// of them, writes dinp as layernorm_backward_dinp_kernel does and adds d * xhat and d per column into
// its own shared row (double); the 8 warp rows are then added in warp order: the sums and the order
// of the dinp kernel plus layernorm_backward_partial_kernel, with one read of dout and inp less.
// Dynamic shared memory: 2 * kRowsPerBlock * C doubles.
__global__ void __launch_bounds__(kRowBlock)
    layernorm_backward_fused_kernel(float* dinp, double* partial_dw, double* partial_db, const float* dout,
                                    const float* inp, const float* weight, const float* mean,
                                    const float* rstd, int N, int C) {
  extern __shared__ double s_acc[];  // [kRowsPerBlock][C] dw, then [kRowsPerBlock][C] db
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  double* s_dw = s_acc + static_cast<size_t>(warp) * C;
  double* s_db = s_acc + static_cast<size_t>(kRowsPerBlock + warp) * C;
  for (int c = lane; c < C; c += kWarpSize) {
    s_dw[c] = 0.0;
    s_db[c] = 0.0;
  }
  const int64_t row_begin = static_cast<int64_t>(blockIdx.x) * kLayerNormRowsPerPartial;
  const int64_t row_end = min(static_cast<int64_t>(N), row_begin + kLayerNormRowsPerPartial);
  for (int64_t row = row_begin + warp; row < row_end; row += kRowsPerBlock) {
    const float* x = inp + row * C;
    const float* d = dout + row * C;
    const float m = mean[row];
    const float s = rstd[row];
    float g_mean = 0.0f, gx_mean = 0.0f;
    row_gradient_means(d, x, weight, m, s, C, lane, &g_mean, &gx_mean);
    float* dx = dinp + row * C;
    for (int c = lane; c < C; c += kWarpSize) {
      const float dc = d[c];
      const float g = __fmul_rn(dc, weight[c]);
      const float xhat = (x[c] - m) * s;
      dx[c] += s * (g - g_mean - xhat * gx_mean);
      s_dw[c] += static_cast<double>(dc * xhat);
      s_db[c] += static_cast<double>(dc);
    }
  }
  __syncthreads();
  write_block_partials(partial_dw, partial_db, s_acc, C);
}

// Fused stage 1 for rows of float4 (C % 4 == 0, 16-byte aligned rows, C <= 128 kVec): the blocks and
// rows of layernorm_backward_fused_kernel, but each lane loads its columns 4 lane + 128 k (+0..3) of a
// row once into registers (dout, inp, dinp and, for all rows, weight), and since a lane owns the same
// columns in every row, it adds d * xhat and d into its own double registers; the warp's sums go to
// shared memory once at the end and are added in warp order as before. Every sum has a fixed order.
template <int kVec>
__global__ void __launch_bounds__(kRowBlock)
    layernorm_backward_vec_kernel(float* dinp, double* partial_dw, double* partial_db, const float* dout,
                                  const float* inp, const float* weight, const float* mean, const float* rstd,
                                  int N, int C) {
  extern __shared__ double s_acc[];  // [kRowsPerBlock][C] dw, then [kRowsPerBlock][C] db
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int C4 = C / 4;
  float w[kVec][4];
  double dw[kVec][4];
  double db[kVec][4];
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int q = lane + k * kWarpSize;
    const float4 v =
        q < C4 ? reinterpret_cast<const float4*>(weight)[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    w[k][0] = v.x, w[k][1] = v.y, w[k][2] = v.z, w[k][3] = v.w;
#pragma unroll
    for (int i = 0; i < 4; ++i) dw[k][i] = db[k][i] = 0.0;
  }
  const int64_t row_begin = static_cast<int64_t>(blockIdx.x) * kLayerNormRowsPerPartial;
  const int64_t row_end = min(static_cast<int64_t>(N), row_begin + kLayerNormRowsPerPartial);
  for (int64_t row = row_begin + warp; row < row_end; row += kRowsPerBlock) {
    const float4* d4 = reinterpret_cast<const float4*>(dout + row * C);
    const float4* x4 = reinterpret_cast<const float4*>(inp + row * C);
    float4* dx4 = reinterpret_cast<float4*>(dinp + row * C);
    // dinp is read with dout and inp, before the reductions, while registers allow (C <= 768); wider
    // rows read it where it is updated (the 32 more registers would spill at C = 1024).
    constexpr bool kEarlyDinp = kVec <= 6;
    float d[kVec][4], x[kVec][4];
    float4 dx[kEarlyDinp ? kVec : 1];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int q = lane + k * kWarpSize;
      const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const float4 dv = q < C4 ? d4[q] : zero;
      const float4 xv = q < C4 ? x4[q] : zero;
      if constexpr (kEarlyDinp) dx[k] = q < C4 ? dx4[q] : zero;
      d[k][0] = dv.x, d[k][1] = dv.y, d[k][2] = dv.z, d[k][3] = dv.w;
      x[k][0] = xv.x, x[k][1] = xv.y, x[k][2] = xv.z, x[k][3] = xv.w;
    }
    const float m = mean[row];
    const float s = rstd[row];
    double g_sum = 0.0;
    double gx_sum = 0.0;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // columns past C hold d = 0: g = 0 adds nothing
        const float g = __fmul_rn(d[k][i], w[k][i]);
        g_sum += static_cast<double>(g);
        gx_sum += static_cast<double>(g) * static_cast<double>((x[k][i] - m) * s);
      }
    }
    const float g_mean = static_cast<float>(group_sum(g_sum) / C);
    const float gx_mean = static_cast<float>(group_sum(gx_sum) / C);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const int q = lane + k * kWarpSize;
      if (q >= C4) continue;
      float4 before;
      if constexpr (kEarlyDinp) {
        before = dx[k];
      } else {
        before = dx4[q];
      }
      float out[4] = {before.x, before.y, before.z, before.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float g = __fmul_rn(d[k][i], w[k][i]);
        const float xhat = (x[k][i] - m) * s;
        out[i] += s * (g - g_mean - xhat * gx_mean);
        dw[k][i] += static_cast<double>(d[k][i] * xhat);
        db[k][i] += static_cast<double>(d[k][i]);
      }
      dx4[q] = make_float4(out[0], out[1], out[2], out[3]);
    }
  }
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    const int q = lane + k * kWarpSize;
    if (q >= C4) continue;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s_acc[static_cast<size_t>(warp) * C + 4 * q + i] = dw[k][i];
      s_acc[static_cast<size_t>(kRowsPerBlock + warp) * C + 4 * q + i] = db[k][i];
    }
  }
  __syncthreads();
  write_block_partials(partial_dw, partial_db, s_acc, C);
}

// Stage 2: dweight[c] += sum_p partial_dw[p, c] (p in order); dbias likewise.
__global__ void layernorm_backward_finish_kernel(float* dweight, float* dbias, const double* partial_dw,
                                                 const double* partial_db, int P, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double dw = 0.0;
  double db = 0.0;
  for (int p = 0; p < P; ++p) {
    dw += partial_dw[static_cast<int64_t>(p) * C + c];
    db += partial_db[static_cast<int64_t>(p) * C + c];
  }
  dweight[c] += static_cast<float>(dw);
  dbias[c] += static_cast<float>(db);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// The float4 kernel compiled for kVec float4 per lane, the smallest kVec >= vec (1 <= vec <= kMaxVec).
template <int kVec>
Status launch_backward_vec(int vec, float* dinp, double* partial_dw, double* partial_db, const float* dout,
                           const float* inp, const float* weight, const float* mean, const float* rstd, int N,
                           int C, int P, size_t shared, cudaStream_t stream) {
  if constexpr (kVec < kMaxVec) {
    if (kVec < vec)
      return launch_backward_vec<kVec + 1>(vec, dinp, partial_dw, partial_db, dout, inp, weight, mean, rstd,
                                           N, C, P, shared, stream);
  }
  PERIGEE_CHECK(allow_shared_memory(layernorm_backward_vec_kernel<kVec>, shared));
  layernorm_backward_vec_kernel<kVec>
      <<<P, kRowBlock, shared, stream>>>(dinp, partial_dw, partial_db, dout, inp, weight, mean, rstd, N, C);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

// The fused kernels' shared-memory ceiling on the current device: kFusedSharedLimit, or less where
// the device's opt-in limit per block is smaller.
Status fused_shared_limit(size_t* limit) {
  size_t optin = 0;
  PERIGEE_CHECK(current_device_shared_memory_optin(&optin));
  *limit = std::min(kFusedSharedLimit, optin);
  return Status::ok();
}

// The float4 kernel for C % 4 == 0, C <= 1024 and 16-byte aligned operands; *done false otherwise.
Status try_backward_vec(float* dinp, double* partial_dw, double* partial_db, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd, int N,
                        int C, int P, size_t shared, cudaStream_t stream, bool* done) {
  *done = C % 4 == 0 && C <= 4 * kWarpSize * kMaxVec && aligned16(dinp) && aligned16(dout) &&
          aligned16(inp) && aligned16(weight);
  if (!*done) return Status::ok();
  return launch_backward_vec<1>(ceil_div(C / 4, kWarpSize), dinp, partial_dw, partial_db, dout, inp, weight,
                                mean, rstd, N, C, P, shared, stream);
}

template <typename Out>
Status launch_layernorm_forward(Out* out, float* mean, float* rstd, const float* inp, const float* weight,
                                const float* bias, int N, int C, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("layernorm_forward", {out, mean, rstd, inp, weight, bias}));
  PERIGEE_CHECK(check_dims("layernorm_forward", {N, C}));
  layernorm_forward_kernel<Out, false><<<ceil_div(N, kRowsPerBlock), kRowBlock, 0, stream>>>(
      out, mean, rstd, nullptr, inp, nullptr, weight, bias, N, C);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

template <typename Out>
Status launch_residual_layernorm_forward(float* residual, Out* out, float* mean, float* rstd, const float* a,
                                         const float* b, const float* weight, const float* bias, int N, int C,
                                         cudaStream_t stream) {
  PERIGEE_CHECK(
      check_pointers("residual_layernorm_forward", {residual, out, mean, rstd, a, b, weight, bias}));
  PERIGEE_CHECK(check_dims("residual_layernorm_forward", {N, C}));
  layernorm_forward_kernel<Out, true><<<ceil_div(N, kRowsPerBlock), kRowBlock, 0, stream>>>(
      out, mean, rstd, residual, a, b, weight, bias, N, C);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace

// ---- kernel launchers

Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C, cudaStream_t stream) {
  return launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream);
}

Status layernorm_forward(uint16_t* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C, cudaStream_t stream) {
  return launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream);
}

Status residual_layernorm_forward(float* residual, float* out, float* mean, float* rstd, const float* a,
                                  const float* b, const float* weight, const float* bias, int N, int C,
                                  cudaStream_t stream) {
  return launch_residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

Status residual_layernorm_forward(float* residual, uint16_t* out, float* mean, float* rstd, const float* a,
                                  const float* b, const float* weight, const float* bias, int N, int C,
                                  cudaStream_t stream) {
  return launch_residual_layernorm_forward(residual, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

size_t layernorm_backward_scratch_bytes(int N, int C) {
  return 2 * scratch_bytes<double>(static_cast<size_t>(ceil_div(N, kLayerNormRowsPerPartial)) * C);
}

Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* mean, const float* rstd, int N, int C,
                          DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("layernorm_backward", {dinp, dweight, dbias, dout, inp, weight, mean, rstd}));
  PERIGEE_CHECK(check_dims("layernorm_backward", {N, C}));
  const int P = ceil_div(N, kLayerNormRowsPerPartial);
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(layernorm_backward_scratch_bytes(N, C), stream, &base));
  ScratchCarver carve(base);
  double* partial_dw = carve.take<double>(static_cast<size_t>(P) * C);
  double* partial_db = carve.take<double>(static_cast<size_t>(P) * C);

  const size_t fused_shared = 2 * kRowsPerBlock * static_cast<size_t>(C) * sizeof(double);
  size_t limit = 0;
  PERIGEE_CHECK(fused_shared_limit(&limit));
  bool vec = false;
  if (fused_shared <= limit) {
    PERIGEE_CHECK(try_backward_vec(dinp, partial_dw, partial_db, dout, inp, weight, mean, rstd, N, C, P,
                                   fused_shared, stream, &vec));
  }
  if (vec) {
    // done: the float4 kernel
  } else if (fused_shared <= limit) {
    PERIGEE_CHECK(allow_shared_memory(layernorm_backward_fused_kernel, fused_shared));
    layernorm_backward_fused_kernel<<<P, kRowBlock, fused_shared, stream>>>(
        dinp, partial_dw, partial_db, dout, inp, weight, mean, rstd, N, C);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  } else {
    PERIGEE_REQUIRE(ceil_div(C, kColumnTile) <= 65535, StatusCode::kInvalidArgument,
                    "layernorm_backward: C = ", C, " is too large");  // before anything is written
    layernorm_backward_dinp_kernel<<<ceil_div(N, kRowsPerBlock), kRowBlock, 0, stream>>>(
        dinp, dout, inp, weight, mean, rstd, N, C);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    const dim3 grid(P, ceil_div(C, kColumnTile));
    layernorm_backward_partial_kernel<<<grid, dim3(kColumnTile, kRowThreads), 0, stream>>>(
        partial_dw, partial_db, dout, inp, mean, rstd, N, C);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  layernorm_backward_finish_kernel<<<ceil_div(C, kFinishBlock), kFinishBlock, 0, stream>>>(
      dweight, dbias, partial_dw, partial_db, P, C);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
