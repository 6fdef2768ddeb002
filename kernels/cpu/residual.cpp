// Residual add, elementwise fp32 over flat buffers of n floats: out = a + b (out may alias a or b).
#include <cstdint>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {

Status CpuBackend::residual_forward(float* out, const float* a, const float* b, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("residual_forward", {out, a, b}));
  const auto count = static_cast<int64_t>(n);
#pragma omp parallel for simd schedule(static) num_threads(threads_) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
