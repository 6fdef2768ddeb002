// Gradient accumulation in GptModel (forward_backward in passes of micro-batches, on the CPU backend):
// the passes' gradients add up to the whole batch's gradient of its mean loss, tensor by tensor
// (only the order of the fp32 sums differs), one pass is forward() then backward() bit for bit,
// the gradient-ready callback fires only in the last pass with final values, and bad micro-batch
// sizes are refused. The CUDA backend's accumulation is held the same way in test_cuda_training.cpp.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/profiling_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

using testing::micro_batch_pass;
using testing::random_tokens;
using testing::seeded_parameters;
using testing::worst_tensor;

constexpr int kB = 4, kT = 16;
const GptShape kShape{2, 2, 32, 16, 256, 256};

TEST(GptModelMicroBatch, PassesAddUpToTheWholeBatchGradient) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 21);
  const auto x = random_tokens(kB * kT, 256, 5), y = random_tokens(kB * kT, 256, 6);
  const auto whole = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, kB);
  for (int micro : {2, 1}) {
    const auto parts = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, micro);
    EXPECT_NEAR(parts.loss, whole.loss, 1e-6 * whole.loss) << "micro " << micro;
    const auto [name, diff] = worst_tensor(ParameterTable::for_shape(kShape), parts.grads, whole.grads);
    EXPECT_LE(diff, 1e-5) << "micro " << micro << ": " << name;
    std::printf("micro-batch %d x %d passes vs one pass of %d: loss %.9f vs %.9f, worst tensor %s %.2e\n",
                micro, kB / micro, kB, parts.loss, whole.loss, name.c_str(), diff);
  }
}

// bf16 logits: every pass overwrites the logits with their gradient in place; the passes still add up.
TEST(GptModelMicroBatch, Bf16LogitsPassesAddUp) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 21);
  const auto x = random_tokens(kB * kT, 256, 7), y = random_tokens(kB * kT, 256, 8);
  const auto bf16 = kernels::DType::kBF16;
  const auto whole = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, kB, bf16, bf16);
  const auto parts = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, 1, bf16, bf16);
  EXPECT_NEAR(parts.loss, whole.loss, 1e-6 * whole.loss);
  const auto [name, diff] = worst_tensor(ParameterTable::for_shape(kShape), parts.grads, whole.grads);
  // A GEMM tile's fp32 bits may depend on the pass's row count, and a last-bit difference can move a bf16
  // rounding by one bf16 step (2^-8): far below the O(1) of a pass whose gradient was overwritten.
  std::printf("bf16 activations and logits: 4 passes of 1 vs one pass of 4: worst tensor %s %.2e\n",
              name.c_str(), diff);
  EXPECT_LE(diff, 5e-3) << name;
}

TEST(GptModelMicroBatch, OnePassIsForwardThenBackwardBitForBit) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 21);
  const auto x = random_tokens(kB * kT, 256, 9), y = random_tokens(kB * kT, 256, 10);
  GptModel m;
  ASSERT_TRUE(m.init(kShape, &cpu, kB, kT).is_ok());
  ASSERT_TRUE(m.set_parameters(init).is_ok());
  double loss = 0.0;
  ASSERT_TRUE(m.forward(x.data(), y.data(), kB, kT, &loss).is_ok());
  ASSERT_TRUE(m.zero_grad().is_ok());
  ASSERT_TRUE(m.backward().is_ok());
  std::vector<float> g(m.num_parameters());
  ASSERT_TRUE(cpu.copy_to_host(g.data(), m.grads(), g.size() * sizeof(float)).is_ok());
  const auto one = micro_batch_pass(cpu, kShape, init, x, y, kB, kT, kB);
  EXPECT_EQ(one.loss, loss);
  EXPECT_EQ(std::memcmp(one.grads.data(), g.data(), g.size() * sizeof(float)), 0);
}

// Gradient buckets start all-reducing a range when the callback says it is final: with several passes
// that may only happen in the last one, and the range must then hold its final values.
TEST(GptModelMicroBatch, GradientReadyFiresOnlyInTheLastPassWithFinalValues) {
  kernels::cpu::CpuBackend cpu(2);
  const auto init = seeded_parameters(cpu, kShape, 21);
  const auto x = random_tokens(kB * kT, 256, 11), y = random_tokens(kB * kT, 256, 12);
  GptModel m;
  ASSERT_TRUE(m.init(kShape, &cpu, 1, kT).is_ok());
  ASSERT_TRUE(m.set_parameters(init).is_ok());
  const size_t n = m.num_parameters();
  std::vector<size_t> firsts;
  std::vector<std::vector<float>> seen;  // grads[first, n) at each call
  m.set_gradient_ready([&](size_t first) {
    std::vector<float> tail(n - first);
    PERIGEE_CHECK(cpu.copy_to_host(tail.data(), m.grads() + first, tail.size() * sizeof(float)));
    firsts.push_back(first);
    seen.push_back(std::move(tail));
    return Status::ok();
  });
  ASSERT_TRUE(m.zero_grad().is_ok());
  double loss = 0.0;
  ASSERT_TRUE(m.forward_backward(x.data(), y.data(), kB, kT, 1, &loss).is_ok());
  std::vector<float> g(n);
  ASSERT_TRUE(cpu.copy_to_host(g.data(), m.grads(), n * sizeof(float)).is_ok());
  // ln_f, each block (top first), then the embeddings: once each, as in a single pass.
  ASSERT_EQ(firsts.size(), static_cast<size_t>(kShape.n_layer + 2));
  EXPECT_EQ(firsts.back(), 0u);
  for (size_t c = 0; c < firsts.size(); ++c) {
    if (c > 0) {
      EXPECT_LT(firsts[c], firsts[c - 1]);
    }
    EXPECT_EQ(std::memcmp(seen[c].data(), g.data() + firsts[c], seen[c].size() * sizeof(float)), 0)
        << "call " << c << " (from element " << firsts[c] << ") saw values that later passes changed";
  }
  // Plain backward() calls still report (the last pass restored the callback).
  firsts.clear();
  ASSERT_TRUE(m.forward(x.data(), y.data(), 1, kT, &loss).is_ok());
  ASSERT_TRUE(m.backward().is_ok());
  EXPECT_EQ(firsts.size(), static_cast<size_t>(kShape.n_layer + 2));
}

// The backend's weight cache (Backend::refresh_weight_cache; the CUDA backend's bf16 copy) must be made
// again whenever the parameters may have changed: at the start of every forward(), and once per
// forward_backward() (its passes share the weights), for the whole parameter buffer; the model
// releases it when destroyed.
uint64_t calls_of(const kernels::ProfilingBackend& prof, const std::string& op) {
  for (const kernels::OpStat& s : prof.stats()) {
    if (s.op == op) return s.calls;
  }
  return 0;
}

TEST(GptModelMicroBatch, WeightCacheIsRefreshedOncePerForwardAndPerForwardBackward) {
  kernels::cpu::CpuBackend cpu(2);
  kernels::ProfilingBackend prof(&cpu, nullptr, kernels::ProfilingOptions{true});  // keys carry n
  const auto x = random_tokens(kB * kT, 256, 3), y = random_tokens(kB * kT, 256, 4);
  {
    GptModel m;
    ASSERT_TRUE(m.init(kShape, &prof, kB, kT).is_ok());
    ASSERT_TRUE(m.init_parameters(5).is_ok());
    const std::string refresh = "refresh_weight_cache n=" + std::to_string(m.num_parameters());
    EXPECT_EQ(calls_of(prof, refresh), 0u);  // nothing to refresh before a forward
    double loss = 0.0;
    ASSERT_TRUE(m.forward(x.data(), y.data(), kB, kT, &loss).is_ok());
    ASSERT_TRUE(m.backward().is_ok());
    EXPECT_EQ(calls_of(prof, refresh), 1u);
    ASSERT_TRUE(m.forward(x.data(), nullptr, kB, kT, &loss).is_ok());
    EXPECT_EQ(calls_of(prof, refresh), 2u);
    ASSERT_TRUE(m.forward_backward(x.data(), y.data(), kB, kT, 1, &loss).is_ok());  // 4 passes
    EXPECT_EQ(calls_of(prof, refresh), 3u);
    // The shared passes leave a plain forward() refreshing again.
    ASSERT_TRUE(m.forward(x.data(), y.data(), kB, kT, &loss).is_ok());
    EXPECT_EQ(calls_of(prof, refresh), 4u);
    EXPECT_EQ(calls_of(prof, "release_weight_cache"), 0u);
  }
  EXPECT_EQ(calls_of(prof, "release_weight_cache"), 1u);
}

TEST(GptModelMicroBatch, RefusesMicroBatchesThatDoNotFit) {
  kernels::cpu::CpuBackend cpu(2);
  const auto x = random_tokens(kB * kT, 256, 1), y = random_tokens(kB * kT, 256, 2);
  GptModel m;
  ASSERT_TRUE(m.init(kShape, &cpu, 2, kT).is_ok());
  ASSERT_TRUE(m.init_parameters(1).is_ok());
  double loss = 0.0;
  Status s = m.forward_backward(x.data(), y.data(), kB, kT, 3, &loss);  // 3 does not divide 4
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("must divide the batch 4"), std::string::npos) << s.message();
  s = m.forward_backward(x.data(), y.data(), kB, kT, 4, &loss);  // more than the allocated 2
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  s = m.forward_backward(x.data(), nullptr, kB, kT, 2, &loss);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = m.forward(x.data(), y.data(), 2, kT, &loss, 2 * kT - 1);  // fewer positions than the batch
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(m.forward_backward(x.data(), y.data(), kB, kT, 2, &loss).is_ok());
}

}  // namespace
}  // namespace perigee::runtime
