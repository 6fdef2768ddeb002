// LayerNorm over the last dimension, fp32 storage with double accumulation of the row statistics
// (lane_sum) and of dweight/dbias.
// inp/out/dout/dinp [N, C], weight/bias [C], mean/rstd [N]; eps = 1e-5, biased variance.
// Forward and dinp run one row per iteration; dweight/dbias give each thread a cache-line-aligned
// column range and sum every row in order (double accumulators), so results are thread-count free.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {

Status CpuBackend::layernorm_forward_f32(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C) {
  PERIGEE_CHECK(check_pointers("layernorm_forward", {out, mean, rstd, inp, weight, bias}));
  PERIGEE_CHECK(check_dims("layernorm_forward", {N, C}));
#pragma omp parallel for schedule(static) num_threads(threads_) if (int64_t{N} * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const double m = lane_sum(C, [x](int64_t c) { return static_cast<double>(x[c]); }) / C;
    const double sq = lane_sum(C, [x, m](int64_t c) {
      const double d = x[c] - m;
      return d * d;
    });
    const float mf = static_cast<float>(m);
    const float s = static_cast<float>(1.0 / std::sqrt(sq / C + kLayerNormEps));
    float* o = out + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = (x[c] - mf) * s * weight[c] + bias[c];
    mean[n] = mf;
    rstd[n] = s;
  }
  return Status::ok();
}

Status CpuBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                      const float* inp, const float* weight, const float* mean,
                                      const float* rstd, int N, int C) {
  PERIGEE_CHECK(check_pointers("layernorm_backward", {dinp, dweight, dbias, dout, inp, weight, mean, rstd}));
  PERIGEE_CHECK(check_dims("layernorm_backward", {N, C}));
#pragma omp parallel num_threads(threads_) if (int64_t{N} * C >= kParallelMin)
  {
    // dinp: with xhat = (x - mean) * rstd and g = dout * weight,
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
#pragma omp for schedule(static) nowait
    for (int64_t n = 0; n < N; ++n) {
      const float* x = inp + n * C;
      const float* d = dout + n * C;
      const float m = mean[n];
      const float s = rstd[n];
      const double g_sum =
          lane_sum(C, [d, weight](int64_t c) { return static_cast<double>(d[c] * weight[c]); });
      const double gx_sum = lane_sum(C, [=](int64_t c) {
        return static_cast<double>(d[c] * weight[c]) * static_cast<double>((x[c] - m) * s);
      });
      const float g_mean = static_cast<float>(g_sum / C);
      const float gx_mean = static_cast<float>(gx_sum / C);
      float* dx = dinp + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * s;
        dx[c] += s * (d[c] * weight[c] - g_mean - xhat * gx_mean);
      }
    }

    // dweight, dbias: column ranges, rows in order.
    const ColumnRange cols = column_range(C, omp_get_thread_num(), omp_get_num_threads());
    const int64_t width = cols.end - cols.begin;
    if (width > 0) {
      std::vector<double> acc(2 * width, 0.0);
      double* dw = acc.data();
      double* db = acc.data() + width;
      for (int64_t n = 0; n < N; ++n) {
        const float* x = inp + n * C + cols.begin;
        const float* d = dout + n * C + cols.begin;
        const float m = mean[n];
        const float s = rstd[n];
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) {
          dw[c] += d[c] * ((x[c] - m) * s);
          db[c] += d[c];
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        dweight[cols.begin + c] += static_cast<float>(dw[c]);
        dbias[cols.begin + c] += static_cast<float>(db[c]);
      }
    }
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
