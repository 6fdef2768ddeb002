// GptModel on the CPU backend: parameter layout, loss at initialisation, whole-model gradient
// against finite differences (directional derivatives, one per parameter tensor), and learning
// (overfitting one batch).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/profiling_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

using testing::random_tokens;

TEST(GptModel, Gpt2SmallHas124MParameters) {
  // GPT-2 124M with the vocabulary padded to 50304: the well-known 124,475,904.
  ParameterTable t = ParameterTable::for_shape(GptShape{12, 12, 768, 1024, 50257, 50304});
  EXPECT_EQ(t.total(), 124475904u);
  ASSERT_NE(t.find("h.11.mlp.c_proj.weight"), nullptr);
  EXPECT_EQ(t.find("h.11.mlp.c_proj.weight")->shape, (std::vector<int>{768, 3072}));
  EXPECT_TRUE(t.find("wte.weight")->decay);
  EXPECT_FALSE(t.find("h.0.ln_1.bias")->decay);
  // Views tile the buffer exactly, in order.
  size_t expect = 0;
  for (const auto& v : t.views()) {
    EXPECT_EQ(v.offset, expect) << v.name;
    expect += v.size;
  }
  EXPECT_EQ(expect, t.total());
}

TEST(GptModel, LossAtInitIsNearLogVocab) {
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  const GptShape shape{2, 4, 64, 32, 256, 256};
  ASSERT_TRUE(m.init(shape, &cpu, 4, 32).is_ok());
  ASSERT_TRUE(m.init_parameters(7).is_ok());
  auto x = random_tokens(4 * 32, 256, 1), y = random_tokens(4 * 32, 256, 2);
  double loss = 0.0;
  ASSERT_TRUE(m.forward(x.data(), y.data(), 4, 32, &loss).is_ok());
  EXPECT_NEAR(loss, std::log(256.0), 0.05);
}

TEST(GptModel, RejectsTokensOutsideVocabulary) {
  kernels::cpu::CpuBackend cpu(1);
  GptModel m;
  ASSERT_TRUE(m.init(GptShape{1, 2, 16, 8, 256, 256}, &cpu, 1, 8).is_ok());
  ASSERT_TRUE(m.init_parameters(1).is_ok());
  std::vector<int32_t> x(8, 3), y(8, 4);
  x[5] = 300;
  Status s = m.forward(x.data(), y.data(), 1, 8, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("300"), std::string::npos);
  x[5] = 3;
  EXPECT_EQ(m.forward(x.data(), y.data(), 2, 8, nullptr).code(), StatusCode::kInvalidArgument);  // B > max
}

// A pass of more tokens than an int indexes is refused before anything is allocated.
TEST(GptModel, RefusesMoreTokensPerPassThanAnIntIndexes) {
  kernels::cpu::CpuBackend cpu(1);
  GptModel m;
  const Status s = m.init(GptShape{1, 2, 16, 1024, 256, 256}, &cpu, 1 << 21, 1024);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("2^31 - 1 tokens"), std::string::npos) << s.to_string();
}

// evaluate() is forward()'s loss, bit for bit, and leaves no gradient to take: backward() after it, or
// a second backward() of one forward(), is refused and adds nothing to the gradient.
TEST(GptModel, EvaluateGivesTheForwardLossAndLeavesNothingForBackward) {
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  ASSERT_TRUE(m.init(GptShape{2, 2, 16, 8, 64, 64}, &cpu, 2, 8).is_ok());
  ASSERT_TRUE(m.init_parameters(3).is_ok());
  const auto x = random_tokens(16, 64, 4), y = random_tokens(16, 64, 5);
  auto grads = [&m] {
    std::vector<float> g(m.num_parameters());
    PERIGEE_CHECK_OR_DIE(m.backend()->copy_to_host(g.data(), m.grads(), g.size() * sizeof(float)));
    return g;
  };
  double trained = 0.0, evaluated = 0.0;
  ASSERT_TRUE(m.zero_grad().is_ok());
  ASSERT_TRUE(m.forward(x.data(), y.data(), 2, 8, &trained).is_ok());
  ASSERT_TRUE(m.backward().is_ok());
  const std::vector<float> once = grads();
  Status again = m.backward();
  EXPECT_EQ(again.code(), StatusCode::kInternal) << again.message();
  ASSERT_TRUE(m.evaluate(x.data(), y.data(), 2, 8, &evaluated).is_ok());
  EXPECT_EQ(evaluated, trained);
  const Status after_eval = m.backward();
  EXPECT_EQ(after_eval.code(), StatusCode::kInternal);
  EXPECT_NE(after_eval.message().find("evaluate"), std::string::npos) << after_eval.message();
  EXPECT_EQ(grads(), once);  // nothing added by the refused calls
  EXPECT_EQ(m.evaluate(x.data(), nullptr, 2, 8, &evaluated).code(), StatusCode::kInvalidArgument);
}

// Fails the op call numbered `fail_at` (counted from 0 since the last arm()) before it runs: a
// ProfilingBackend with this timer is a backend that stops part-way through a forward.
class FailingTimer final : public kernels::OpTimer {
 public:
  void arm(int fail_at) {
    fail_at_ = fail_at;
    calls_ = 0;
  }
  int calls() const { return calls_; }
  const char* name() const override { return "failing"; }
  Status begin(int) override {
    return calls_++ == fail_at_ ? Status(StatusCode::kUnavailable, "injected op failure") : Status::ok();
  }
  Status end(int) override { return Status::ok(); }
  Status resolve(const Sink&) override { return Status::ok(); }

 private:
  int fail_at_ = -1;
  int calls_ = 0;
};

// A forward that fails at any of its ops, the token uploads and the loss readback included, leaves
// nothing for backward() or copy_logits(), even right after a forward that did (with or without
// targets), and backward() then adds nothing to the gradient.
TEST(GptModel, AForwardFailingPartWayLeavesNothingForBackwardOrLogits) {
  kernels::cpu::CpuBackend cpu(2);
  auto owned = std::make_unique<FailingTimer>();
  FailingTimer* timer = owned.get();
  kernels::ProfilingBackend failing(&cpu, std::move(owned));
  GptModel m;
  ASSERT_TRUE(m.init(GptShape{2, 2, 16, 8, 64, 64}, &failing, 2, 8).is_ok());
  ASSERT_TRUE(m.init_parameters(3).is_ok());
  ASSERT_TRUE(m.zero_grad().is_ok());
  const auto x = random_tokens(16, 64, 4), y = random_tokens(16, 64, 5);
  std::vector<float> logits;
  for (const bool targets : {true, false}) {
    const int32_t* t = targets ? y.data() : nullptr;
    timer->arm(-1);
    ASSERT_TRUE(m.forward(x.data(), t, 2, 8, nullptr).is_ok());
    const int ops = timer->calls();
    ASSERT_GT(ops, 10);
    for (int k = 0; k < ops; ++k) {
      SCOPED_TRACE(::testing::Message() << (targets ? "with" : "without") << " targets, failing op " << k);
      for (const bool before_targets : {true, false}) {
        // Before: a forward that left a gradient to take (with targets) or logits to read (without).
        timer->arm(-1);
        ASSERT_TRUE(m.forward(x.data(), before_targets ? y.data() : nullptr, 2, 8, nullptr).is_ok());
        if (!before_targets) {
          ASSERT_TRUE(m.copy_logits(0, 0, &logits).is_ok());
        }
        timer->arm(k);
        const Status failed = m.forward(x.data(), t, 2, 8, nullptr);
        EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.message();
        timer->arm(-1);
        EXPECT_EQ(m.backward().code(), StatusCode::kInternal);
        EXPECT_EQ(m.copy_logits(0, 0, &logits).code(), StatusCode::kInternal);
      }
    }
  }
  std::vector<float> g(m.num_parameters());
  ASSERT_TRUE(cpu.copy_to_host(g.data(), m.grads(), g.size() * sizeof(float)).is_ok());
  EXPECT_EQ(g, std::vector<float>(g.size(), 0.0f));  // no backward ever ran
}

// For each parameter tensor w: d/de L(w + e*u) at e = 0 by central differences, against g . u,
// with u a random +-1 direction over that tensor. The model runs with random (not GPT-2-small)
// parameters so that every tensor, LayerNorm and biases included, has a sizeable gradient.
TEST(GptModel, GradientMatchesFiniteDifferencesForEveryTensor) {
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  const GptShape shape{2, 2, 8, 6, 256, 320};  // padded vocab > vocab on purpose
  const int B = 2, T = 5;
  ASSERT_TRUE(m.init(shape, &cpu, B, T).is_ok());
  std::vector<float> p0(m.num_parameters());
  SplitMix64 rng(11);
  for (const auto& v : m.table().views()) {
    const bool ln_weight = v.name.find("ln_") != std::string::npos && v.name.ends_with(".weight");
    for (size_t i = 0; i < v.size; ++i) {
      p0[v.offset + i] = static_cast<float>((ln_weight ? 1.0 : 0.0) + 0.3 * rng.normal());
    }
  }
  auto x = random_tokens(B * T, 256, 3), y = random_tokens(B * T, 256, 4);

  ASSERT_TRUE(m.set_parameters(p0).is_ok());
  double loss = 0.0;
  ASSERT_TRUE(m.forward(x.data(), y.data(), B, T, &loss).is_ok());
  ASSERT_TRUE(m.zero_grad().is_ok());
  ASSERT_TRUE(m.backward().is_ok());
  std::vector<float> g(m.num_parameters());
  ASSERT_TRUE(cpu.copy_to_host(g.data(), m.grads(), g.size() * sizeof(float)).is_ok());

  const double eps = 1e-3;
  for (const auto& v : m.table().views()) {
    size_t n = v.size;
    if (v.name == "wte.weight") n = static_cast<size_t>(shape.vocab) * shape.n_embd;  // padded rows: 0 grad
    std::vector<float> u(v.size, 0.0f);
    double analytic = 0.0;
    for (size_t i = 0; i < n; ++i) {
      u[i] = (rng.next() & 1) ? 1.0f : -1.0f;
      analytic += static_cast<double>(g[v.offset + i]) * u[i];
    }
    double lp = 0.0, lm = 0.0;
    std::vector<float> p = p0;
    for (size_t i = 0; i < v.size; ++i) p[v.offset + i] = p0[v.offset + i] + static_cast<float>(eps) * u[i];
    ASSERT_TRUE(m.set_parameters(p).is_ok());
    ASSERT_TRUE(m.forward(x.data(), y.data(), B, T, &lp).is_ok());
    for (size_t i = 0; i < v.size; ++i) p[v.offset + i] = p0[v.offset + i] - static_cast<float>(eps) * u[i];
    ASSERT_TRUE(m.set_parameters(p).is_ok());
    ASSERT_TRUE(m.forward(x.data(), y.data(), B, T, &lm).is_ok());
    const double numeric = (lp - lm) / (2.0 * eps);
    // atol covers fp32 rounding of the loss (~1e-6 / eps); rtol the O(eps^2) truncation.
    EXPECT_NEAR(analytic, numeric, 2e-3 + 2e-2 * std::fabs(numeric)) << v.name;
  }
  // Padded vocabulary rows never receive gradient.
  const auto* wte = m.table().find("wte.weight");
  double pad = 0.0;
  for (size_t i = static_cast<size_t>(shape.vocab) * shape.n_embd; i < wte->size; ++i)
    pad += std::fabs(g[wte->offset + i]);
  EXPECT_EQ(pad, 0.0);
}

TEST(GptModel, OverfitsASingleBatch) {
  const auto [first, last] = testing::overfit_one_batch(kernels::DType::kF32, 200, 10);
  EXPECT_GT(first, 5.0);
  EXPECT_LT(last, 0.1) << "a 2-layer model must memorise 64 random tokens";
}

TEST(LearningRate, WarmupThenCosineToFloor) {
  TrainConfig tc;
  tc.lr = 1.0;
  tc.min_lr_ratio = 0.1;
  tc.warmup_steps = 10;
  tc.steps = 110;
  EXPECT_DOUBLE_EQ(learning_rate(tc, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(tc, 9), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(tc, 10), 1.0);
  EXPECT_NEAR(learning_rate(tc, 59), 0.55, 0.01);
  EXPECT_NEAR(learning_rate(tc, 109), 0.1, 1e-12);
  for (int64_t s = 11; s < 110; ++s) EXPECT_LE(learning_rate(tc, s), learning_rate(tc, s - 1));
}

// One step after the warmup: the peak at the warmup's last step, the floor at the run's last, as with a
// longer decay. A single step without warmup trains at lr.
TEST(LearningRate, OneDecayStepEndsAtTheFloor) {
  TrainConfig tc;
  tc.lr = 1.0;
  tc.min_lr_ratio = 0.1;
  tc.warmup_steps = 2;
  tc.steps = 3;
  EXPECT_DOUBLE_EQ(learning_rate(tc, 0), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(tc, 1), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(tc, 2), 0.1);
  tc.steps = 4;  // two decay steps: the same end
  EXPECT_DOUBLE_EQ(learning_rate(tc, 2), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(tc, 3), 0.1);
  tc.warmup_steps = 0;
  tc.steps = 1;
  EXPECT_DOUBLE_EQ(learning_rate(tc, 0), 1.0);
}

}  // namespace
}  // namespace perigee::runtime
