// Helpers of the GptModel tests on the CPU backend: random tokens, and one forward + backward pass
// from a seeded initialisation (its mean loss and whole gradient).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/random.hpp"

namespace perigee::runtime::testing {

inline std::vector<int32_t> random_tokens(size_t n, int vocab, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.next() % vocab);
  return t;
}

struct Pass {
  double loss = 0.0;
  std::vector<float> grads;
};

// Inputs and targets come from seed + 1 and seed + 2, the parameters from seed.
inline Pass forward_backward(kernels::DType acts, const GptShape& shape, int B, int T, uint64_t seed,
                             kernels::DType logits = kernels::DType::kF32) {
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  PERIGEE_CHECK_OR_DIE(m.init(shape, &cpu, B, T, acts, logits));
  PERIGEE_CHECK_OR_DIE(m.init_parameters(seed));
  auto x = random_tokens(static_cast<size_t>(B) * T, shape.vocab, seed + 1);
  auto y = random_tokens(static_cast<size_t>(B) * T, shape.vocab, seed + 2);
  Pass p;
  PERIGEE_CHECK_OR_DIE(m.forward(x.data(), y.data(), B, T, &p.loss));
  PERIGEE_CHECK_OR_DIE(m.zero_grad());
  PERIGEE_CHECK_OR_DIE(m.backward());
  p.grads.resize(m.num_parameters());
  PERIGEE_CHECK_OR_DIE(cpu.copy_to_host(p.grads.data(), m.grads(), p.grads.size() * sizeof(float)));
  return p;
}

// sqrt(sum (a - b)^2 / sum b^2).
inline double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace perigee::runtime::testing
