// Activation recomputation ([train] recompute) in GptModel on the CPU backend: the backward re-runs
// each block's forward from the kept residual stream, so the loss and every gradient are the same
// bits as without it (fp32 and bf16 storage, one pass and accumulated passes, and over AdamW steps),
// and the recomputed tensors take one layer's memory instead of n_layer. The CUDA backend is held
// the same way in test_cuda_training.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

using testing::micro_batch_pass;
using testing::random_tokens;
using testing::seeded_parameters;

constexpr int kB = 4, kT = 16;
const GptShape kShape{3, 2, 32, 16, 256, 256};

TEST(GptModelRecompute, SameLossAndGradientsBitForBit) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 31);
  const auto x = random_tokens(kB * kT, 256, 3), y = random_tokens(kB * kT, 256, 4);
  using kernels::DType;
  for (const auto& [acts, logits] :
       {std::pair{DType::kF32, DType::kF32}, std::pair{DType::kBF16, DType::kBF16},
        std::pair{DType::kBF16, DType::kF32}}) {
    for (int micro : {kB, 2}) {
      const auto kept = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, micro, acts, logits, false);
      const auto again = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, micro, acts, logits, true);
      const char* what = kernels::dtype_name(acts);
      EXPECT_EQ(again.loss, kept.loss) << what << ", micro " << micro;
      ASSERT_EQ(again.grads.size(), kept.grads.size());
      EXPECT_EQ(std::memcmp(again.grads.data(), kept.grads.data(), kept.grads.size() * sizeof(float)), 0)
          << what << ", micro " << micro;
    }
  }
}

// Several AdamW steps: the recomputing model keeps the same parameters bit for bit, so nothing a step
// leaves behind (statistics, the shared layer buffers) leaks into the next.
TEST(GptModelRecompute, TrainsTheSameParametersOverSteps) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 31);
  TrainConfig tc;
  tc.steps = 5;
  tc.warmup_steps = 1;
  std::vector<float> result[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    GptModel m;
    ASSERT_TRUE(m.init(kShape, &cpu, kB, kT, kernels::DType::kF32, kernels::DType::kF32, recompute).is_ok());
    EXPECT_EQ(m.recomputes(), recompute == 1);
    ASSERT_TRUE(m.set_parameters(init).is_ok());
    for (int step = 0; step < tc.steps; ++step) {
      const auto x = random_tokens(kB * kT, 256, 100 + step), y = random_tokens(kB * kT, 256, 200 + step);
      double loss = 0.0;
      ASSERT_TRUE(m.zero_grad().is_ok());
      ASSERT_TRUE(m.forward_backward(x.data(), y.data(), kB, kT, kB, &loss).is_ok());
      ASSERT_TRUE(optimizer_step(m, tc, step, nullptr).is_ok());
    }
    ASSERT_TRUE(m.get_parameters(&result[recompute]).is_ok());
  }
  EXPECT_EQ(std::memcmp(result[0].data(), result[1].data(), result[0].size() * sizeof(float)), 0);
}

// The seven recomputed tensors (ln_1 and ln_2 outputs, qkv, the attention output and its saved state,
// the c_fc output and GELU's) take one layer instead of n_layer; nothing else changes size.
TEST(GptModelRecompute, KeepsOneLayerOfTheRecomputedTensors) {
  kernels::cpu::CpuBackend cpu(2);
  using kernels::DType;
  for (DType acts : {DType::kF32, DType::kBF16}) {
    GptModel kept, recomputed;
    ASSERT_TRUE(kept.init(kShape, &cpu, kB, kT, acts, DType::kF32, false).is_ok());
    ASSERT_TRUE(recomputed.init(kShape, &cpu, kB, kT, acts, DType::kF32, true).is_ok());
    const size_t nc = static_cast<size_t>(kB) * kT * kShape.n_embd;
    auto bytes = [](size_t n, size_t elem) { return (n * elem + 255) / 256 * 256; };
    const size_t op = kernels::dtype_size(acts);
    const size_t per_layer = bytes(nc, op) * 3 + bytes(3 * nc, op) + bytes(4 * nc, op) * 2 +
                             bytes(cpu.attention_state_size(kB, kT, kShape.n_embd, kShape.n_head), 4);
    EXPECT_EQ(kept.activation_bytes() - recomputed.activation_bytes(), (kShape.n_layer - 1) * per_layer)
        << kernels::dtype_name(acts);
  }
}

}  // namespace
}  // namespace perigee::runtime
