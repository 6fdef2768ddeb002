// Token + position embedding, fp32. out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] with wte [V, C],
// wpe [maxT, C], out [B, T, C]; a token outside [0, V) is refused. The backward accumulates into dwte and
// dwpe; each thread owns a cache-line-aligned column range and walks every (b, t) row in order, so every
// element gets its contributions in the same order whatever the thread count.
#include <omp.h>

#include <cstdint>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

Status check_tokens(const char* op, const int32_t* tokens, int64_t n, int V) {
  int64_t bad = -1;
  for (int64_t i = 0; i < n && bad < 0; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) bad = i;
  }
  PERIGEE_REQUIRE(bad < 0, StatusCode::kInvalidArgument, op, ": token ", bad >= 0 ? tokens[bad] : 0,
                  " at position ", bad, " is outside the vocabulary [0, ", V, ")");
  return Status::ok();
}

}  // namespace

Status CpuBackend::encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                                   int B, int T, int C, int V) {
  PERIGEE_CHECK(check_pointers("encoder_forward", {out, tokens, wte, wpe}));
  PERIGEE_CHECK(check_dims("encoder_forward", {B, T, C, V}));
  const int64_t rows = int64_t{B} * T;
  PERIGEE_CHECK(check_tokens("encoder_forward", tokens, rows, V));
#pragma omp parallel for schedule(static) num_threads(threads_) if (rows * C >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % T;
    const float* w = wte + int64_t{tokens[r]} * C;
    const float* p = wpe + t * C;
    float* o = out + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = w[c] + p[c];
  }
  return Status::ok();
}

Status CpuBackend::encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                                    int T, int C, int V) {
  PERIGEE_CHECK(check_pointers("encoder_backward", {dwte, dwpe, dout, tokens}));
  PERIGEE_CHECK(check_dims("encoder_backward", {B, T, C, V}));
  const int64_t rows = int64_t{B} * T;
  PERIGEE_CHECK(check_tokens("encoder_backward", tokens, rows, V));
#pragma omp parallel num_threads(threads_) if (rows * C >= kParallelMin)
  {
    const ColumnRange cols = column_range(C, omp_get_thread_num(), omp_get_num_threads());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = r % T;
      const float* d = dout + r * C;
      float* gw = dwte + int64_t{tokens[r]} * C;
      float* gp = dwpe + t * C;
#pragma omp simd
      for (int64_t c = cols.begin; c < cols.end; ++c) {
        gw[c] += d[c];
        gp[c] += d[c];
      }
    }
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
