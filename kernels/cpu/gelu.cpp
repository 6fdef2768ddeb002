// GELU, tanh approximation (GPT-2), elementwise fp32 over flat buffers of n floats:
// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x * sigmoid(2u)
// (the same function: 0.5 (1 + tanh(u)) = sigmoid(2u)), which keeps full relative precision and
// vectorises with exp_clamped. The backward writes dinp = gelu'(x) dout with
// gelu'(x) = s + 2 x s (1 - s) du/dx, s = sigmoid(2u); the expressions and their saturation for
// |x| > 10 are in kernels/gelu_math.hpp, shared with the CUDA kernels.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/gelu_math.hpp"

namespace perigee::kernels::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel task

struct ExpClamped {
  float operator()(float x) const { return exp_clamped(x); }
};

PERIGEE_CPU_CLONES
void gelu_forward_chunk(float* out, const float* inp, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_value(inp[i], ExpClamped{});
}

PERIGEE_CPU_CLONES
void gelu_backward_chunk(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dinp[i] = gelu_derivative(inp[i], ExpClamped{}) * dout[i];
}

}  // namespace

Status CpuBackend::gelu_forward_f32(float* out, const float* inp, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_forward", {out, inp}));
  const auto count = static_cast<int64_t>(n);
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    gelu_forward_chunk(out + begin, inp + begin, std::min(kChunk, count - begin));
  }
  return Status::ok();
}

Status CpuBackend::gelu_backward_f32(float* dinp, const float* inp, const float* dout, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("gelu_backward", {dinp, inp, dout}));
  const auto count = static_cast<int64_t>(n);
  const int64_t chunks = (count + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    gelu_backward_chunk(dinp + begin, inp + begin, dout + begin, std::min(kChunk, count - begin));
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
