// optimizer_step against a double-precision AdamW written here from its definition (PyTorch's AdamW:
// decoupled weight decay, bias correction by the count of updates) on a real GptModel's buffers:
// weight decay on the 2-D tensors only (the rule, read off each tensor's shape, not the table's flag),
// global-norm clipping when the norm is above grad_clip and not below, betas and eps passed through,
// the learning rate of the step's place in the warmup + cosine schedule (computed here), and the bias
// correction of `updates_before` + 1. Tolerance: the update (p_new - p_old), m and v within
// 1e-5 * max|ref| + 1e-4 * |ref| of the reference, per tensor (fp32 arithmetic against double), plus one
// ulp of p for the update (the rounding of p - update).
#include "runtime/optimizer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"

namespace perigee::runtime {
namespace {

struct State {
  std::vector<float> p, g, m, v;
};

// The schedule, from its definition: linear warmup to lr over warmup_steps (step s takes
// lr (s+1) / warmup), then a cosine from lr down to lr * min_lr_ratio at the last step.
double schedule(const TrainConfig& tc, int64_t s) {
  if (s < tc.warmup_steps) return tc.lr * static_cast<double>(s + 1) / static_cast<double>(tc.warmup_steps);
  const double progress =
      static_cast<double>(s - tc.warmup_steps) / static_cast<double>(tc.steps - tc.warmup_steps - 1);
  const double floor = tc.lr * tc.min_lr_ratio;
  return floor + (tc.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

struct Case {
  std::string name;
  double grad_magnitude;  // gradients uniform in +-this: the norm falls above or below grad_clip
  double grad_clip;
  int64_t step, updates_before;
};

class Optimizer : public ::testing::TestWithParam<Case> {};

TEST_P(Optimizer, MatchesADoubleAdamW) {
  const Case c = GetParam();
  kernels::cpu::CpuBackend cpu(2);
  GptModel model;
  const GptShape shape{2, 4, 32, 16, 100, 128};
  PERIGEE_CHECK_OR_DIE(model.init(shape, &cpu, 1, 16));
  const size_t n = model.num_parameters();
  TrainConfig tc;
  tc.steps = 40;
  tc.warmup_steps = 5;
  tc.lr = 2e-3;
  tc.min_lr_ratio = 0.1;
  tc.beta1 = 0.8;
  tc.beta2 = 0.95;
  tc.eps = 1e-6;
  tc.weight_decay = 0.25;
  tc.grad_clip = c.grad_clip;

  // Random state in the model's own buffers (host memory on the CPU backend).
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  State before;
  before.p.resize(n), before.g.resize(n), before.m.resize(n), before.v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    before.p[i] = static_cast<float>(unit(rng));
    before.g[i] = static_cast<float>(c.grad_magnitude * unit(rng));
    before.m[i] = static_cast<float>(0.01 * unit(rng));
    before.v[i] = static_cast<float>(1e-4 * (1.0 + unit(rng)));
  }
  std::copy(before.p.begin(), before.p.end(), model.params());
  std::copy(before.g.begin(), before.g.end(), model.grads());
  std::copy(before.m.begin(), before.m.end(), model.adam_m());
  std::copy(before.v.begin(), before.v.end(), model.adam_v());

  UpdateStats stats;
  PERIGEE_CHECK_OR_DIE(optimizer_step(model, tc, c.step, &stats, nullptr, c.updates_before));

  // The reference.
  double sq = 0.0;
  for (float g : before.g) sq += static_cast<double>(g) * g;
  const double norm = std::sqrt(sq);
  const bool clips = tc.grad_clip > 0.0 && norm > tc.grad_clip;
  const double scale = clips ? tc.grad_clip / norm : 1.0;
  const double lr = schedule(tc, c.step);
  const double t = static_cast<double>(c.updates_before + 1);
  EXPECT_NEAR(stats.grad_norm, norm, 1e-9 * norm);
  EXPECT_NEAR(stats.clip_scale, scale, 1e-5 * scale) << (clips ? "clipped" : "not clipped");
  EXPECT_NEAR(stats.lr, lr, 1e-12) << "step " << c.step;
  EXPECT_EQ(clips, c.name.find("clipped") == 0) << "the case's gradients fall on the wrong side of the clip";

  int decayed = 0;
  for (const TensorView& view : model.table().views()) {
    const bool decays = view.shape.size() == 2;  // the rule: 2-D weights and embeddings
    decayed += decays;
    std::vector<double> want_dp(view.size), want_m(view.size), want_v(view.size);
    double max_dp = 0.0, max_m = 0.0, max_v = 0.0;
    for (size_t k = 0; k < view.size; ++k) {
      const size_t i = view.offset + k;
      const double g = before.g[i] * scale;
      const double m = tc.beta1 * before.m[i] + (1.0 - tc.beta1) * g;
      const double v = tc.beta2 * before.v[i] + (1.0 - tc.beta2) * g * g;
      const double mhat = m / (1.0 - std::pow(tc.beta1, t)), vhat = v / (1.0 - std::pow(tc.beta2, t));
      want_dp[k] = -lr * (mhat / (std::sqrt(vhat) + tc.eps) + (decays ? tc.weight_decay * before.p[i] : 0.0));
      want_m[k] = m, want_v[k] = v;
      max_dp = std::max(max_dp, std::fabs(want_dp[k]));
      max_m = std::max(max_m, std::fabs(m));
      max_v = std::max(max_v, std::fabs(v));
    }
    auto check = [&](const char* what, const float* got, const std::vector<double>& want, double max_ref,
                     bool delta) {
      for (size_t k = 0; k < view.size; ++k) {
        const double old = before.p[view.offset + k];
        const double g = delta ? static_cast<double>(got[k]) - old : got[k];
        // An update also carries the rounding of p - update to fp32: one ulp of p.
        const double ulp = delta ? std::ldexp(std::fabs(old), -23) : 0.0;
        ASSERT_LE(std::fabs(g - want[k]), 1e-5 * max_ref + 1e-4 * std::fabs(want[k]) + ulp)
            << view.name << " " << what << "[" << k << "]: " << g << " vs " << want[k];
      }
    };
    check("update", model.params() + view.offset, want_dp, max_dp, true);
    check("m", model.adam_m() + view.offset, want_m, max_m, false);
    check("v", model.adam_v() + view.offset, want_v, max_v, false);
  }
  EXPECT_GT(decayed, 0);
  EXPECT_LT(decayed, static_cast<int>(model.table().views().size()));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Optimizer,
    ::testing::Values(Case{"clipped_in_warmup", 1.0, 1.0, 2, 2},                // norm ~ 100 > 1
                      Case{"unclipped_in_the_cosine", 1e-4, 1.0, 17, 17},       // norm ~ 0.01 < 1
                      Case{"clipped_after_skipped_updates", 1.0, 0.5, 30, 26},  // t = 27, not 31
                      Case{"unclipped_no_clip_at_the_last_step", 1.0, 0.0, 39, 39}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace perigee::runtime
