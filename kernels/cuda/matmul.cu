// Linear layer: cuBLAS fp32 GEMMs, bias add, deterministic bias gradient (see matmul.cuh).
#include "kernels/cuda/matmul.cuh"

#include <cuda_bf16.h>

#include "kernels/cuda/act_io.cuh"
#include "kernels/cuda/cublas_check.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kBiasBlock = 256;
constexpr int kColumnTile = 32;  // columns per block in the dbias stage 1
constexpr int kRowThreads = 8;   // threads along the rows in the dbias stage 1
constexpr int kFinishBlock = 128;

// ---- CUDA kernels

// out[n, o] += bias[o] for o < OC, rows `ld` apart, one block per row.
__global__ void add_bias_kernel(float* out, const float* bias, int OC, int ld) {
  float* row = out + static_cast<int64_t>(blockIdx.x) * ld;
  for (int o = threadIdx.x; o < OC; o += blockDim.x) row[o] += bias[o];
}

// Stage 1: block (row range bx, column tile by); thread (tx, ty) sums rows bx*R + ty, + kRowThreads, ...
// and the kRowThreads sums of a column are added in ty order. partial [P, OC]. With kConvert, each
// element read is also stored rounded to bf16 in dout16 (same layout): the bf16 GEMMs' operand for free.
template <bool kConvert, typename In>
__global__ void bias_grad_partial_kernel(double* partial, __nv_bfloat16* dout16, const In* dout, int N,
                                         int OC) {
  __shared__ double shared[kRowThreads][kColumnTile];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int o = blockIdx.y * kColumnTile + tx;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.x) * kMatmulRowsPerPartial;
  const int64_t row_end = min(static_cast<int64_t>(N), row_begin + kMatmulRowsPerPartial);
  double acc = 0.0;
  if (o < OC) {
    for (int64_t n = row_begin + ty; n < row_end; n += kRowThreads) {
      const float x = load_act(dout, n * OC + o);
      if constexpr (kConvert) dout16[n * OC + o] = __float2bfloat16_rn(x);
      acc += static_cast<double>(x);
    }
  }
  shared[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && o < OC) {
    for (int k = 1; k < kRowThreads; ++k) acc += shared[k][tx];
    partial[static_cast<int64_t>(blockIdx.x) * OC + o] = acc;
  }
}

// Stage 2: dbias[o] += sum_p partial[p, o] (p in order).
__global__ void bias_grad_finish_kernel(float* dbias, const double* partial, int P, int OC) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  double acc = 0.0;
  for (int p = 0; p < P; ++p) acc += partial[static_cast<int64_t>(p) * OC + o];
  dbias[o] += static_cast<float>(acc);
}

// Column-major C[m, n] = op(A) op(B) + beta C, fp32 in and out.
Status gemm(const GemmContext& ctx, cublasOperation_t trans_a, cublasOperation_t trans_b, int m, int n, int k,
            const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const float alpha = 1.0f;
  const cublasComputeType_t compute = ctx.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  PERIGEE_CHECK_CUBLAS(cublasGemmEx(ctx.handle, trans_a, trans_b, m, n, k, &alpha, A, CUDA_R_32F, lda, B,
                                    CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc, compute,
                                    CUBLAS_GEMM_DEFAULT));
  return Status::ok();
}

Status check_bias_grad_dims(int N, int OC) {
  PERIGEE_CHECK(check_dims("matmul_bias_grad", {N, OC}));
  PERIGEE_REQUIRE(ceil_div(OC, kColumnTile) <= 65535, StatusCode::kInvalidArgument,
                  "matmul_bias_grad: OC = ", OC, " is too large");
  return Status::ok();
}

Status finish_bias_grad(float* dbias, const double* partial, int P, int OC, cudaStream_t stream) {
  bias_grad_finish_kernel<<<ceil_div(OC, kFinishBlock), kFinishBlock, 0, stream>>>(dbias, partial, P, OC);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace

// ---- kernel launchers

Status matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC, const GemmContext& ctx, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_forward", {out, inp, weight, ctx.handle}));
  PERIGEE_CHECK(check_dims("matmul_forward", {N, C, OC}));
  // out^T [OC, N] = weight [OC, C] (stored as weight^T, col-major C x OC) . inp^T [C, N].
  PERIGEE_CHECK(gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, weight, C, inp, C, 0.0f, out, OC));
  if (bias != nullptr) PERIGEE_CHECK(matmul_add_bias(out, bias, N, OC, OC, stream));
  return Status::ok();
}

Status matmul_add_bias(float* out, const float* bias, int N, int OC, int ld, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_add_bias", {out, bias}));
  PERIGEE_CHECK(check_dims("matmul_add_bias", {N, OC}));
  PERIGEE_REQUIRE(ld >= OC, StatusCode::kInvalidArgument, "matmul_add_bias: row stride ", ld,
                  " is below the row length ", OC);
  add_bias_kernel<<<N, kBiasBlock, 0, stream>>>(out, bias, OC, ld);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

size_t matmul_bias_grad_partials(int N, int OC) {
  return static_cast<size_t>(ceil_div(N, kMatmulRowsPerPartial)) * static_cast<size_t>(OC);
}

Status matmul_bias_grad(float* dbias, const float* dout, int N, int OC, DeviceScratch& scratch,
                        cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_bias_grad", {dbias}));
  PERIGEE_CHECK(check_dims("matmul_bias_grad", {N, OC}));
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(scratch_bytes<double>(matmul_bias_grad_partials(N, OC)), stream, &base));
  double* partial = static_cast<double*>(base);
  PERIGEE_CHECK(matmul_bias_grad_stage1(partial, nullptr, dout, N, OC, stream));
  return matmul_bias_grad_stage2(dbias, partial, N, OC, stream);
}

Status matmul_bias_grad_stage1(double* partial, __nv_bfloat16* dout16, const float* dout, int N, int OC,
                               cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_bias_grad", {dout, partial}));
  PERIGEE_CHECK(check_bias_grad_dims(N, OC));
  const dim3 grid(ceil_div(N, kMatmulRowsPerPartial), ceil_div(OC, kColumnTile));
  const dim3 block(kColumnTile, kRowThreads);
  if (dout16 != nullptr) {
    bias_grad_partial_kernel<true><<<grid, block, 0, stream>>>(partial, dout16, dout, N, OC);
  } else {
    bias_grad_partial_kernel<false><<<grid, block, 0, stream>>>(partial, nullptr, dout, N, OC);
  }
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

Status matmul_bias_grad_stage1(double* partial, const uint16_t* dout, int N, int OC, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_bias_grad", {dout, partial}));
  PERIGEE_CHECK(check_bias_grad_dims(N, OC));
  bias_grad_partial_kernel<false>
      <<<dim3(ceil_div(N, kMatmulRowsPerPartial), ceil_div(OC, kColumnTile)), dim3(kColumnTile, kRowThreads),
         0, stream>>>(partial, nullptr, dout, N, OC);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

Status matmul_bias_grad_stage2(float* dbias, const double* partial, int N, int OC, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_bias_grad", {dbias, partial}));
  PERIGEE_CHECK(check_bias_grad_dims(N, OC));
  return finish_bias_grad(dbias, partial, ceil_div(N, kMatmulRowsPerPartial), OC, stream);
}

Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                       const float* weight, int N, int C, int OC, const GemmContext& ctx,
                       DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("matmul_backward", {dout, ctx.handle}));
  PERIGEE_CHECK(check_dims("matmul_backward", {N, C, OC}));
  if (dinp != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dinp needs weight)", {weight}));
  }
  if (dweight != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dweight needs inp)", {inp}));
  }
  if (dbias != nullptr) PERIGEE_CHECK(matmul_bias_grad(dbias, dout, N, OC, scratch, stream));
  if (dinp != nullptr) {
    // dinp^T [C, N] = weight^T [C, OC] (col-major view of weight) . dout^T [OC, N].
    PERIGEE_CHECK(gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, weight, C, dout, OC, 0.0f, dinp, C));
  }
  if (dweight != nullptr) {
    // dweight^T [C, OC] += inp^T [C, N] . dout [N, OC] (dout^T in col-major, transposed back).
    PERIGEE_CHECK(gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, 1.0f, dweight, C));
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
