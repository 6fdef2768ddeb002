// Helpers shared by the fault tests: a pool of deterministic normal deviates, bf16 rounding, GEMM
// operand sets of the Backend's matmul shapes, and the clean result of each GEMM kind on a Backend.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/bf16.hpp"
#include "fault/abft_gemm.hpp"
#include "fault/injector.hpp"
#include "kernels/backend.hpp"

namespace perigee::fault::fault_test {

// Round to the nearest bf16 (core/bf16.hpp: ties to even), kept in fp32.
inline float bf16_round(float x) {
  return bf16_to_float(float_to_bf16(x));
}

// Standard normal deviates (Box-Muller on FaultRng), generated once and reused at random offsets.
class NormalPool {
 public:
  explicit NormalPool(uint64_t seed, size_t n = size_t{1} << 20) : values_(n) {
    FaultRng rng(seed);
    for (size_t i = 0; i + 1 < n; i += 2) {
      double u1 = rng.uniform();
      while (u1 <= 0.0) u1 = rng.uniform();
      const double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * rng.uniform();
      values_[i] = static_cast<float>(r * std::cos(t));
      values_[i + 1] = static_cast<float>(r * std::sin(t));
    }
  }
  float operator[](size_t i) const { return values_[i % values_.size()]; }
  size_t size() const { return values_.size(); }

 private:
  std::vector<float> values_;
};

// Operands of one matmul call: inp [N, C], weight [OC, C], bias [OC], dout [N, OC].
struct GemmData {
  int N = 0, C = 0, OC = 0;
  std::vector<float> inp, weight, bias, dout;
};

inline void fill(std::vector<float>* v, size_t n, const NormalPool& pool, FaultRng& rng, float scale) {
  v->resize(n);
  const size_t offset = rng.below(pool.size());
  for (size_t i = 0; i < n; ++i) (*v)[i] = scale * pool[offset + i];
}

inline GemmData make_data(int N, int C, int OC, const NormalPool& pool, FaultRng& rng) {
  GemmData d;
  d.N = N;
  d.C = C;
  d.OC = OC;
  fill(&d.inp, static_cast<size_t>(N) * C, pool, rng, 1.0f);
  fill(&d.weight, static_cast<size_t>(OC) * C, pool, rng, 0.02f);
  fill(&d.bias, static_cast<size_t>(OC), pool, rng, 0.02f);
  fill(&d.dout, static_cast<size_t>(N) * OC, pool, rng, 1e-2f);
  return d;
}

inline GemmProblem problem_of(GemmKind kind, const GemmData& d) {
  switch (kind) {
    case GemmKind::kForward:
      return GemmProblem::forward(d.inp.data(), d.weight.data(), d.bias.data(), d.N, d.C, d.OC);
    case GemmKind::kBackwardInput:
      return GemmProblem::backward_input(d.dout.data(), d.weight.data(), d.N, d.C, d.OC);
    case GemmKind::kBackwardWeight:
      return GemmProblem::backward_weight(d.dout.data(), d.inp.data(), d.N, d.C, d.OC);
    case GemmKind::kBackwardBias:
      return GemmProblem::backward_bias(d.dout.data(), d.N, d.OC);
  }
  return {};
}

// Runs the Backend op that produces `kind` into out (which holds the prior content for the
// accumulating kinds).
inline Status run_kind(kernels::Backend& be, GemmKind kind, const GemmData& d, float* out) {
  switch (kind) {
    case GemmKind::kForward:
      return be.matmul_forward(out, d.inp.data(), d.weight.data(), d.bias.data(), d.N, d.C, d.OC);
    case GemmKind::kBackwardInput:
      return be.matmul_backward(out, nullptr, nullptr, d.dout.data(), d.inp.data(), d.weight.data(), d.N, d.C,
                                d.OC);
    case GemmKind::kBackwardWeight:
      return be.matmul_backward(nullptr, out, nullptr, d.dout.data(), d.inp.data(), d.weight.data(), d.N, d.C,
                                d.OC);
    case GemmKind::kBackwardBias:
      return be.matmul_backward(nullptr, nullptr, out, d.dout.data(), d.inp.data(), d.weight.data(), d.N, d.C,
                                d.OC);
  }
  return Status::ok();
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) return false;
  }
  return true;
}

inline float flip(float x, uint32_t mask) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(x) ^ mask);
}

inline constexpr GemmKind kAllKinds[] = {GemmKind::kForward, GemmKind::kBackwardInput,
                                         GemmKind::kBackwardWeight, GemmKind::kBackwardBias};

}  // namespace perigee::fault::fault_test
