// Linear layer, fp32 with OpenBLAS GEMMs. inp [N, C], weight [OC, C] (row-major, out = inp @ W^T),
// bias [OC], out [N, OC]. Backward accumulates: dinp += dout @ W, dweight += dout^T @ inp (both GEMMs
// with beta = 1), dbias += column sums of dout (double accumulators, rows in order, each thread owning
// a cache-line-aligned column range, so dbias does not depend on the thread count).
#include <cblas.h>
#include <omp.h>

#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

// OpenBLAS keeps one process-wide thread count; put this backend's back in case another changed it.
void use_blas_threads(int threads) {
  if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
}

}  // namespace

Status CpuBackend::matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                                  int C, int OC) {
  PERIGEE_CHECK(check_pointers("matmul_forward", {out, inp, weight}));
  PERIGEE_CHECK(check_dims("matmul_forward", {N, C, OC}));
  use_blas_threads(threads_);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
  if (bias != nullptr) {
#pragma omp parallel for schedule(static) num_threads(threads_) if (int64_t{N} * OC >= kParallelMin)
    for (int64_t n = 0; n < N; ++n) {
      float* o = out + n * OC;
#pragma omp simd
      for (int64_t j = 0; j < OC; ++j) o[j] += bias[j];
    }
  }
  return Status::ok();
}

Status CpuBackend::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                   const float* inp, const float* weight, int N, int C, int OC) {
  PERIGEE_CHECK(check_pointers("matmul_backward", {dout}));
  PERIGEE_CHECK(check_dims("matmul_backward", {N, C, OC}));
  if (dinp != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dinp needs weight)", {weight}));
  }
  if (dweight != nullptr) {
    PERIGEE_CHECK(check_pointers("matmul_backward (dweight needs inp)", {inp}));
  }
  if (dbias != nullptr) {
#pragma omp parallel num_threads(threads_) if (int64_t{N} * OC >= kParallelMin)
    {
      const ColumnRange cols = column_range(OC, omp_get_thread_num(), omp_get_num_threads());
      const int64_t width = cols.end - cols.begin;
      if (width > 0) {
        std::vector<double> acc(width, 0.0);
        double* a = acc.data();
        for (int64_t n = 0; n < N; ++n) {
          const float* d = dout + n * OC + cols.begin;
#pragma omp simd
          for (int64_t j = 0; j < width; ++j) a[j] += d[j];
        }
        for (int64_t j = 0; j < width; ++j) dbias[cols.begin + j] += static_cast<float>(a[j]);
      }
    }
  }
  use_blas_threads(threads_);
  if (dinp != nullptr) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp,
                C);
  }
  if (dweight != nullptr) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
