// AdamW over flat fp32 buffers of n floats (params, grads, m, v), with bias correction and decoupled
// weight decay: g = grad_scale * grad, m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
// p -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p), mhat = m / (1-b1^step), vhat = v / (1-b2^step).
// Bias corrections are computed once in double; the update is fp32, elementwise.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel task

struct AdamWConstants {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  float inv_bias1;  // 1 / (1 - beta1^step)
  float inv_bias2;  // 1 / (1 - beta2^step)
};

PERIGEE_CPU_CLONES
void adamw_chunk(float* p, const float* grad, float* m, float* v, int64_t n, const AdamWConstants& k) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * k.grad_scale;
    const float mi = k.beta1 * m[i] + (1.0f - k.beta1) * g;
    const float vi = k.beta2 * v[i] + (1.0f - k.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi * k.inv_bias1;
    const float vhat = vi * k.inv_bias2;
    p[i] -= k.lr * (mhat / (std::sqrt(vhat) + k.eps) + k.weight_decay * p[i]);
  }
}

}  // namespace

Status CpuBackend::adamw_update(float* params, const float* grads, float* m, float* v, size_t n,
                                const AdamWParams& hp) {
  PERIGEE_CHECK(check_adamw_params("adamw_update", hp));
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("adamw_update", {params, grads, m, v}));
  const double step = static_cast<double>(hp.step);
  const AdamWConstants k{hp.lr,
                         hp.beta1,
                         hp.beta2,
                         hp.eps,
                         hp.weight_decay,
                         hp.grad_scale,
                         static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta1), step))),
                         static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(hp.beta2), step)))};
  const auto count = static_cast<int64_t>(n);
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    adamw_chunk(params + begin, grads + begin, m + begin, v + begin, std::min(kChunk, count - begin), k);
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
