// Fused softmax + cross-entropy, fp32 storage with a double softmax denominator. logits/probs/dlogits
// [N, Vp]; the first V columns are real, columns V..Vp-1 are padding and get probability 0 and gradient 0.
// Forward, one row per task: m = max, e_j = exp(x_j - m), probs = e / sum(e),
// losses[i] = log(sum(e)) - (x_target - m) (= -log probs[target], without rounding the probability).
// probs may alias logits. Backward writes dlogits = dloss * (probs - onehot(target)); may alias probs.
// forward_backward runs both per row (probabilities written to dlogits, then turned into the gradient).
// With bf16 logits or dlogits it widens one row at a time into a per-thread fp32 row and rounds the
// gradient row from there: the bits of the generic ActCast path (widen all, fp32 op, round all) without
// its two [N, Vp] fp32 temporaries (6.6 GB for GPT-2 124M at B 16, T 1024).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

Status check_targets(const char* op, const int32_t* targets, int N, int V) {
  int64_t bad = -1;
  for (int64_t i = 0; i < N && bad < 0; ++i) {
    if (targets[i] < 0 || targets[i] >= V) bad = i;
  }
  PERIGEE_REQUIRE(bad < 0, StatusCode::kInvalidArgument, op, ": target ", bad, " = ",
                  bad >= 0 ? targets[bad] : 0, " is outside [0, ", V, ")");
  return Status::ok();
}

Status check_shape(const char* op, int N, int V, int Vp) {
  PERIGEE_CHECK(check_dims(op, {N, V, Vp}));
  PERIGEE_REQUIRE(Vp >= V, StatusCode::kInvalidArgument, op, ": Vp = ", Vp, " is smaller than V = ", V);
  return Status::ok();
}

// One row; p may alias x. Returns the loss.
PERIGEE_CPU_CLONES
float softmax_row(float* p, const float* x, int32_t target, int64_t V, int64_t Vp) {
  float max_logit = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max_logit)
  for (int64_t j = 0; j < V; ++j) max_logit = x[j] > max_logit ? x[j] : max_logit;
  const float shifted_target = x[target] - max_logit;  // read before p (maybe x) is overwritten
#pragma omp simd
  for (int64_t j = 0; j < V; ++j) p[j] = exp_clamped(x[j] - max_logit);
  const double sum = lane_sum(V, [p](int64_t j) { return static_cast<double>(p[j]); });
  const float inv_sum = static_cast<float>(1.0 / sum);
#pragma omp simd
  for (int64_t j = 0; j < V; ++j) p[j] *= inv_sum;
#pragma omp simd
  for (int64_t j = V; j < Vp; ++j) p[j] = 0.0f;
  return static_cast<float>(std::log(sum) - static_cast<double>(shifted_target));
}

PERIGEE_CPU_CLONES
void softmax_grad_row(float* d, const float* p, int32_t target, float dloss, int64_t V, int64_t Vp) {
  const float p_target = p[target];  // read before d (maybe p) is overwritten
#pragma omp simd
  for (int64_t j = 0; j < V; ++j) d[j] = dloss * p[j];
  d[target] = dloss * (p_target - 1.0f);
#pragma omp simd
  for (int64_t j = V; j < Vp; ++j) d[j] = 0.0f;
}

}  // namespace

Status CpuBackend::crossentropy_forward(float* losses, float* probs, const float* logits,
                                        const int32_t* targets, int N, int V, int Vp) {
  PERIGEE_CHECK(check_pointers("crossentropy_forward", {losses, probs, logits, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward", N, V, Vp));
  PERIGEE_CHECK(check_targets("crossentropy_forward", targets, N, V));
#pragma omp parallel for schedule(static) num_threads(threads_) if (int64_t{N} * Vp >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    losses[i] = softmax_row(probs + i * Vp, logits + i * Vp, targets[i], V, Vp);
  }
  return Status::ok();
}

Status CpuBackend::crossentropy_backward(float* dlogits, const float* probs, const int32_t* targets,
                                         float dloss, int N, int V, int Vp) {
  PERIGEE_CHECK(check_pointers("crossentropy_backward", {dlogits, probs, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_backward", N, V, Vp));
  PERIGEE_CHECK(check_targets("crossentropy_backward", targets, N, V));
#pragma omp parallel for schedule(static) num_threads(threads_) if (int64_t{N} * Vp >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    softmax_grad_row(dlogits + i * Vp, probs + i * Vp, targets[i], dloss, V, Vp);
  }
  return Status::ok();
}

Status CpuBackend::crossentropy_forward_backward_f32(float* losses, float* dlogits, const float* logits,
                                                     const int32_t* targets, float dloss, int N, int V,
                                                     int Vp) {
  PERIGEE_CHECK(check_pointers("crossentropy_forward_backward", {losses, dlogits, logits, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward_backward", N, V, Vp));
  PERIGEE_CHECK(check_targets("crossentropy_forward_backward", targets, N, V));
  // Each row's probabilities go to its dlogits row and are turned into the gradient while still in cache.
#pragma omp parallel for schedule(static) num_threads(threads_) if (int64_t{N} * Vp >= kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    float* d = dlogits + i * Vp;
    losses[i] = softmax_row(d, logits + i * Vp, targets[i], V, Vp);
    softmax_grad_row(d, d, targets[i], dloss, V, Vp);
  }
  return Status::ok();
}

Status CpuBackend::crossentropy_forward_backward_rows(float* losses, Act dlogits, ConstAct logits,
                                                      const int32_t* targets, float dloss, int N, int V,
                                                      int Vp) {
  PERIGEE_CHECK(
      check_pointers("crossentropy_forward_backward", {losses, dlogits.data, logits.data, targets}));
  PERIGEE_CHECK(check_shape("crossentropy_forward_backward", N, V, Vp));
  PERIGEE_CHECK(check_targets("crossentropy_forward_backward", targets, N, V));
  const bool parallel = int64_t{N} * Vp >= kParallelMin;
#pragma omp parallel num_threads(threads_) if (parallel)
  {
    std::vector<float> row(static_cast<size_t>(Vp));  // this thread's fp32 row
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; ++i) {
      const int64_t at = i * Vp;
      const float* x = logits.is_f32() ? static_cast<const float*>(logits.data) + at : row.data();
      if (!logits.is_f32())
        from_bf16_chunk(row.data(), static_cast<const uint16_t*>(logits.data) + at, 1.0f, Vp);
      float* d = dlogits.is_f32() ? dlogits.f32() + at : row.data();  // x's row was read into row first
      losses[i] = softmax_row(d, x, targets[i], V, Vp);
      softmax_grad_row(d, d, targets[i], dloss, V, Vp);
      if (!dlogits.is_f32()) to_bf16_chunk(dlogits.bf16() + at, row.data(), Vp);
    }
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
