// HostChecksumKernels: the memory-touching half of ABFT (fault/abft_gemm.hpp) on host memory, for the
// CPU backend. OpenMP, deterministic: every sum has a fixed order whatever the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/status.hpp"
#include "fault/abft_gemm.hpp"

namespace perigee::fault {

class HostChecksumKernels final : public ChecksumKernels {
 public:
  explicit HostChecksumKernels(int threads = 0);
  int threads() const { return threads_; }

  Status encode(const GemmProblem& p, const float* before, GemmEncoding* out) override;
  Status encode_weighted(const GemmProblem& p, const float* before, GemmEncoding* out) override;
  Status measure(const GemmProblem& p, const float* c, bool weighted, LineSums* out) override;
  Status reference(const GemmProblem& p, const float* before, int64_t row, int64_t col,
                   ElementReference* out) override;
  Status read(const float* c, size_t index, float* value) override;
  Status write(float* c, size_t index, float value) override;
  Status copy(float* dst, const float* src, size_t n) override;
  Status all_zero(const float* x, size_t n, bool* zero) override;

 private:
  const double* ones(int64_t n);     // 1, 1, ..., 1
  const double* weights(int64_t n);  // 1, 2, ..., n
  int threads_;
  std::vector<double> ones_, weights_;
  std::vector<double> a0_, a1_, b0_, b1_;  // operand-side vectors of length K
  std::vector<double> scratch_;            // tile partial sums of the passes
};

}  // namespace perigee::fault
