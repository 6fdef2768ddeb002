// Reductions and scaling over flat fp32 buffers of n floats.
// sum_squares: double result; x is cut into fixed blocks of kSumSquaresBlock elements, each block is
// summed in double (lane_sum: one fixed order), and the block sums are added in block order, so the
// result depends neither on the thread count nor on the instruction set. scale: x *= s in fp32.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {
namespace {

PERIGEE_CPU_CLONES
double block_sum_squares(const float* x, int64_t n) {
  return lane_sum(n, [x](int64_t i) {
    const double xi = x[i];
    return xi * xi;  // exact: a float squared fits in a double
  });
}

PERIGEE_CPU_CLONES
void scale_chunk(float* x, float s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace

Status CpuBackend::sum_squares(const float* x, size_t n, double* out) {
  PERIGEE_CHECK(check_pointers("sum_squares", {out}));
  *out = 0.0;
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("sum_squares", {x}));
  const auto count = static_cast<int64_t>(n);
  const auto block = static_cast<int64_t>(kSumSquaresBlock);
  const int64_t blocks = (count + block - 1) / block;
  std::vector<double> partial(blocks);
#pragma omp parallel for schedule(static) num_threads(threads_) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * block;
    partial[b] = block_sum_squares(x + begin, std::min(block, count - begin));
  }
  double total = 0.0;
  for (double p : partial) total += p;
  *out = total;
  return Status::ok();
}

Status CpuBackend::scale(float* x, float s, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("scale", {x}));
  const auto count = static_cast<int64_t>(n);
  const int64_t chunk = int64_t{kSumSquaresBlock} * 4;
  const int64_t chunks = (count + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(threads_) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * chunk;
    scale_chunk(x + begin, s, std::min(chunk, count - begin));
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
