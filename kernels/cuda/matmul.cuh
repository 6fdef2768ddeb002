// Linear layer, fp32 GEMMs through cuBLAS (cublasGemmEx, CUBLAS_COMPUTE_32F: no TF32 unless the caller
// allows it, so results stay close to the CPU backend). Row-major inp [N, C], weight [OC, C],
// bias [OC], out [N, OC]; out = inp @ weight^T + bias. Row-major matrices are handed to column-major
// cuBLAS as their transposes, so out^T = weight . inp^T is one GEMM.
// Backward: dinp = dout @ weight (written, cuBLAS beta = 0), dweight += dout^T @ inp (beta = 1), and
// dbias += column sums of dout, a deterministic two-stage reduction without atomics (fixed ranges of
// kMatmulRowsPerPartial rows give double partial sums, added in range order). cuBLAS is run with atomics
// disallowed (its default) on one stream, so its results are reproducible too.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/status.hpp"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {

inline constexpr int kMatmulRowsPerPartial = 64;

// The cuBLAS handle (bound to `stream`) and whether GEMMs may use TF32 tensor cores.
struct GemmContext {
  cublasHandle_t handle = nullptr;
  bool allow_tf32 = false;
};

Status matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC, const GemmContext& gemm, cudaStream_t stream);

// out[n, o] += bias[o] (n < N, o < OC) with rows `ld` floats apart: the bias pass of matmul_forward,
// and of a cuBLASLt GEMM that has no bias epilogue for its operands.
Status matmul_add_bias(float* out, const float* bias, int N, int OC, int ld, cudaStream_t stream);

// dbias[OC] += column sums of dout [N, OC]: the deterministic two-stage reduction (double partials).
Status matmul_bias_grad(float* dbias, const float* dout, int N, int OC, DeviceScratch& scratch,
                        cudaStream_t stream);
// The two stages apart, the partial sums in `partial` (matmul_bias_grad_partials(N, OC) doubles), so
// that a caller can add them into dbias only once the rest of its op has succeeded. Stage 1: the
// partial column sums of dout; when dout16 is set, dout is also written to it rounded to bf16 (one
// read of dout for both). Stage 2: dbias[OC] += the partials, summed in a fixed order.
size_t matmul_bias_grad_partials(int N, int OC);
Status matmul_bias_grad_stage1(double* partial, __nv_bfloat16* dout16, const float* dout, int N, int OC,
                               cudaStream_t stream);
// Stage 1 from a dout stored as bf16 bits (kernels/act.hpp), widened exactly.
Status matmul_bias_grad_stage1(double* partial, const uint16_t* dout, int N, int OC, cudaStream_t stream);
Status matmul_bias_grad_stage2(float* dbias, const double* partial, int N, int OC, cudaStream_t stream);

// dinp, dweight, dbias may each be null (not needed).
Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                       const float* weight, int N, int C, int OC, const GemmContext& gemm,
                       DeviceScratch& scratch, cudaStream_t stream);

}  // namespace perigee::kernels::cuda
