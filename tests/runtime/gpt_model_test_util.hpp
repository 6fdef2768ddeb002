// Helpers of the GptModel tests on the CPU backend: random tokens, one forward + backward pass from a
// seeded initialisation (its mean loss and whole gradient), and a small model overfitting one batch.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
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

// The parameters GptModel::init_parameters(seed) gives `shape`, made on `backend` (any batch size).
inline std::vector<float> seeded_parameters(kernels::Backend& backend, const GptShape& shape, uint64_t seed) {
  GptModel m;
  PERIGEE_CHECK_OR_DIE(m.init(shape, &backend, 1, 1));
  PERIGEE_CHECK_OR_DIE(m.init_parameters(seed));
  std::vector<float> p;
  PERIGEE_CHECK_OR_DIE(m.get_parameters(&p));
  return p;
}

// One step's gradient by GptModel::forward_backward in passes of `micro` sequences (activations
// allocated for `micro` only; `recompute`: GptModel::init's) from the parameters `init`, on any backend.
inline Pass micro_batch_pass(kernels::Backend& backend, const GptShape& shape, const std::vector<float>& init,
                             const std::vector<int32_t>& x, const std::vector<int32_t>& y, int B, int T,
                             int micro, kernels::DType acts = kernels::DType::kF32,
                             kernels::DType logits = kernels::DType::kF32, bool recompute = false) {
  GptModel m;
  PERIGEE_CHECK_OR_DIE(m.init(shape, &backend, micro, T, acts, logits, recompute));
  PERIGEE_CHECK_OR_DIE(m.set_parameters(init));
  Pass p;
  PERIGEE_CHECK_OR_DIE(m.zero_grad());
  PERIGEE_CHECK_OR_DIE(m.forward_backward(x.data(), y.data(), B, T, micro, &p.loss));
  p.grads.resize(m.num_parameters());
  PERIGEE_CHECK_OR_DIE(backend.copy_to_host(p.grads.data(), m.grads(), p.grads.size() * sizeof(float)));
  return p;
}

// Bytes of GptModel's activation buffer that its backward scratch shares with the logits, for `shape` at
// (max_batch, max_seq) on `backend` (GptModel::init's arguments): 0 when the scratch has memory of its
// own. Read off GptModel::activation_bytes() alone: the same model with a one-column vocabulary (logits
// far too small to hold the scratch) grows by exactly the larger logits (and a separate logits'
// gradient, when its type differs from the logits': bf16 activations, fp32 logits) unless scratch
// moved into them; every tensor is padded to 256 bytes as GptModel pads it. The attention state,
// whose size is the backend's, is the same in both models and cancels.
inline size_t scratch_bytes_in_logits(kernels::Backend& backend, const GptShape& shape, int max_batch,
                                      int max_seq, kernels::DType acts, kernels::DType logits,
                                      bool recompute = false) {
  GptShape narrow = shape;
  narrow.vocab = narrow.padded_vocab = 1;
  GptModel wide_model, narrow_model;
  PERIGEE_CHECK_OR_DIE(wide_model.init(shape, &backend, max_batch, max_seq, acts, logits, recompute));
  PERIGEE_CHECK_OR_DIE(narrow_model.init(narrow, &backend, max_batch, max_seq, acts, logits, recompute));
  const size_t N = static_cast<size_t>(max_batch) * max_seq;
  auto padded = [N](int columns, kernels::DType t) {
    return (N * columns * kernels::dtype_size(t) + 255) / 256 * 256;
  };
  size_t growth = padded(shape.padded_vocab, logits) - padded(1, logits);
  if (acts != logits) growth += padded(shape.padded_vocab, acts) - padded(1, acts);
  return narrow_model.activation_bytes() + growth - wide_model.activation_bytes();
}

// A 2-layer model (4 heads, C 64, vocabulary 256, `acts` storage, parameters from seed 5) trained on
// one batch of 4 x 16 random tokens (seeds 8 and 9) for `steps` AdamW steps: lr 3e-3 after
// `warmup_steps` of warmup and constant after, no weight decay. The first step's loss and the last's.
inline std::pair<double, double> overfit_one_batch(kernels::DType acts, int64_t steps, int64_t warmup_steps) {
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  const GptShape shape{2, 4, 64, 16, 256, 256};
  const int B = 4, T = 16;
  PERIGEE_CHECK_OR_DIE(m.init(shape, &cpu, B, T, acts));
  PERIGEE_CHECK_OR_DIE(m.init_parameters(5));
  auto x = random_tokens(B * T, 256, 8), y = random_tokens(B * T, 256, 9);
  TrainConfig tc;
  tc.steps = steps;
  tc.lr = 3e-3;
  tc.warmup_steps = warmup_steps;
  tc.min_lr_ratio = 1.0;
  tc.weight_decay = 0.0;
  double first = 0.0, last = 0.0;
  for (int64_t s = 0; s < tc.steps; ++s) {
    double loss = 0.0;
    PERIGEE_CHECK_OR_DIE(m.zero_grad());
    PERIGEE_CHECK_OR_DIE(m.forward(x.data(), y.data(), B, T, &loss));
    PERIGEE_CHECK_OR_DIE(m.backward());
    PERIGEE_CHECK_OR_DIE(optimizer_step(m, tc, s, nullptr));
    if (s == 0) first = loss;
    last = loss;
  }
  return {first, last};
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

// The parameter tensor whose gradient differs most, relatively (relative_l2 over its elements; an
// all-zero reference tensor counts by its absolute L2 difference; a non-finite one is infinitely far):
// its name and that difference.
inline std::pair<std::string, double> worst_tensor(const ParameterTable& table, const std::vector<float>& a,
                                                   const std::vector<float>& b) {
  std::pair<std::string, double> worst{"", 0.0};
  for (const TensorView& v : table.views()) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = v.offset; i < v.offset + v.size; ++i) {
      diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
      norm += static_cast<double>(b[i]) * b[i];
    }
    double d = norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (!std::isfinite(d)) d = INFINITY;  // a NaN gradient is the worst tensor, never skipped
    if (d >= worst.second) worst = {v.name, d};
  }
  return worst;
}

}  // namespace perigee::runtime::testing
