// AdamW, sum_squares and scale of the CPU backend against double-precision scalar references.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

struct AdamWState {
  std::vector<double> p, m, v;
};

// One AdamW step in double, as documented in kernels/backend.hpp.
void adamw_reference(AdamWState& s, const std::vector<float>& grads, const AdamWParams& hp) {
  const double b1 = hp.beta1, b2 = hp.beta2;
  const double c1 = 1.0 - std::pow(b1, double(hp.step)), c2 = 1.0 - std::pow(b2, double(hp.step));
  for (size_t i = 0; i < grads.size(); ++i) {
    const double g = double(grads[i]) * hp.grad_scale;
    s.m[i] = b1 * s.m[i] + (1.0 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1.0 - b2) * g * g;
    const double mhat = s.m[i] / c1, vhat = s.v[i] / c2;
    s.p[i] -= double(hp.lr) * (mhat / (std::sqrt(vhat) + hp.eps) + double(hp.weight_decay) * s.p[i]);
  }
}

void run_adamw(int steps) {
  CpuBackend be(2);
  const size_t n = 40000;  // more than one parallel chunk
  const std::vector<float> p0 = random_vector(n, 1, -2.0f, 2.0f);
  Buffer<float> p(be, p0), m(be, n), v(be, n), g(be, n);
  AdamWState ref{std::vector<double>(p0.begin(), p0.end()), std::vector<double>(n, 0.0),
                 std::vector<double>(n, 0.0)};
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  for (int step = 1; step <= steps; ++step) {
    std::vector<float> grads = random_vector(n, 100 + step, -3.0f, 3.0f);
    grads[0] = 0.0f;                     // zero gradient: only decay moves p
    grads[1] = 1e-9f * float(step);      // sqrt(vhat) comparable to eps
    grads[2] = step % 2 ? 5.0f : -5.0f;  // sign flips
    g.assign(grads);
    hp.step = step;
    ASSERT_TRUE(be.adamw_update(p.data(), g.data(), m.data(), v.data(), n, hp).is_ok());
    adamw_reference(ref, grads, hp);
  }
  const std::string tag = " after " + std::to_string(steps) + " steps";
  // fp32 moments: a few ulp of the scaled gradients (|g| <= 1.5) per step; m can cancel towards 0,
  // hence the absolute term. Parameters: fp32 rounding of p (|p| <= 2) plus a few ulp of the lr-sized
  // update per step.
  expect_close("adamw m" + tag, m.data(), ref.m, 1e-7, 1e-6);
  expect_close("adamw v" + tag, v.data(), ref.v, 1e-20, 1e-6);
  expect_close("adamw p" + tag, p.data(), ref.p, 1e-7 * steps, 1e-7);
  // The updates moved every parameter (the test cannot pass with a no-op).
  size_t moved = 0;
  for (size_t i = 0; i < n; ++i) moved += p[i] != p0[i];
  EXPECT_EQ(moved, n);
}

TEST(CpuOptim, AdamWOneStep) {
  run_adamw(1);
}
TEST(CpuOptim, AdamWSeveralSteps) {
  run_adamw(7);
}

TEST(CpuOptim, AdamWRejectsBadHyperparameters) {
  CpuBackend be(1);
  Buffer<float> p(be, 4), g(be, 4), m(be, 4), v(be, 4);
  AdamWParams hp;
  hp.step = 0;
  EXPECT_EQ(be.adamw_update(p.data(), g.data(), m.data(), v.data(), 4, hp).code(),
            StatusCode::kInvalidArgument);
  hp.step = 1;
  hp.beta2 = 1.0f;
  EXPECT_EQ(be.adamw_update(p.data(), g.data(), m.data(), v.data(), 4, hp).code(),
            StatusCode::kInvalidArgument);
}

// The runs form: the same bits as one adamw_update per run (weight decay only where a run asks for
// it); elements outside every run keep their values.
TEST(CpuOptim, AdamWRunsEqualOneCallPerRun) {
  CpuBackend be(2);
  const size_t n = 5000;
  const std::vector<AdamWRun> runs = {
      {0, 100, true}, {100, 7, false}, {200, 3000, true}, {3200, 1, false}, {4000, 1000, true}};
  const std::vector<float> p0 = random_vector(n, 3, -2.0f, 2.0f), g0 = random_vector(n, 4, -3.0f, 3.0f),
                           m0 = random_vector(n, 5, -0.1f, 0.1f), v0 = random_vector(n, 6, 0.0f, 0.01f);
  AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  hp.step = 4;
  hp.grad_scale = 0.75f;
  Buffer<float> p(be, p0), g(be, g0), m(be, m0), v(be, v0);
  ASSERT_TRUE(be.adamw_update_runs(p.data(), g.data(), m.data(), v.data(), runs, hp).is_ok());
  Buffer<float> rp(be, p0), rm(be, m0), rv(be, v0);
  std::vector<bool> covered(n, false);
  for (const AdamWRun& r : runs) {
    AdamWParams run_hp = hp;
    run_hp.weight_decay = r.decay ? hp.weight_decay : 0.0f;
    ASSERT_TRUE(be.adamw_update(rp.data() + r.offset, g.data() + r.offset, rm.data() + r.offset,
                                rv.data() + r.offset, r.count, run_hp)
                    .is_ok());
    for (size_t i = r.offset; i < r.offset + r.count; ++i) covered[i] = true;
  }
  size_t differing = 0, moved = 0;
  for (size_t i = 0; i < n; ++i) {
    differing += p[i] != rp[i] || m[i] != rm[i] || v[i] != rv[i];
    if (!covered[i]) {
      EXPECT_TRUE(p[i] == p0[i] && m[i] == m0[i] && v[i] == v0[i]) << "element " << i;
    }
    moved += p[i] != p0[i];
  }
  EXPECT_EQ(differing, 0u);
  EXPECT_EQ(moved, 4108u);  // every element of a run
  // The decay flag matters: without it the first run's parameters come out different.
  Buffer<float> np(be, p0), nm(be, m0), nv(be, v0);
  AdamWParams no_decay = hp;
  no_decay.weight_decay = 0.0f;
  ASSERT_TRUE(be.adamw_update(np.data(), g.data(), nm.data(), nv.data(), 100, no_decay).is_ok());
  size_t decayed = 0;
  for (size_t i = 0; i < 100; ++i) decayed += np[i] != p[i];
  EXPECT_GT(decayed, 90u);
}

TEST(CpuOptim, AdamWRunsMustBeSortedAndDisjoint) {
  CpuBackend be(1);
  const std::vector<float> p0(16, 1.0f);
  Buffer<float> p(be, p0), g(be, 16), m(be, 16), v(be, 16);
  AdamWParams hp;
  for (const std::vector<AdamWRun>& runs : {std::vector<AdamWRun>{{0, 8, true}, {7, 4, false}},
                                            std::vector<AdamWRun>{{8, 8, true}, {0, 8, false}}}) {
    const Status s = be.adamw_update_runs(p.data(), g.data(), m.data(), v.data(), runs, hp);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("runs must be sorted and disjoint"), std::string::npos) << s.message();
  }
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(p[i], 1.0f);  // refused before any update
}

// Bad hyperparameters are refused whatever the runs, as adamw_update refuses them whatever n, so a
// step with nothing to update (every run empty) does not hide a bad configuration.
TEST(CpuOptim, AdamWRunsCheckHyperparametersEvenWhenEmpty) {
  CpuBackend be(1);
  Buffer<float> p(be, 8), g(be, 8), m(be, 8), v(be, 8);
  AdamWParams zero_step, beta_one;
  zero_step.step = 0;
  beta_one.beta2 = 1.0f;
  for (const std::vector<AdamWRun>& runs :
       {std::vector<AdamWRun>{}, std::vector<AdamWRun>{{0, 0, true}, {4, 0, false}}}) {
    const Status s1 = be.adamw_update_runs(p.data(), g.data(), m.data(), v.data(), runs, zero_step);
    EXPECT_EQ(s1.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s1.message().find("adamw_update_runs: step = 0"), std::string::npos) << s1.message();
    const Status s2 = be.adamw_update_runs(p.data(), g.data(), m.data(), v.data(), runs, beta_one);
    EXPECT_EQ(s2.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s2.message().find("must lie in [0, 1)"), std::string::npos) << s2.message();
    EXPECT_TRUE(be.adamw_update_runs(p.data(), g.data(), m.data(), v.data(), runs, AdamWParams{}).is_ok());
  }
}

TEST(CpuOptim, SumSquares) {
  CpuBackend be1(1), be2(2);
  for (size_t n : {size_t{1}, size_t{5}, size_t{4096}, size_t{3 * 4096 + 7}, size_t{1000003}}) {
    const std::vector<float> x = random_vector(n, uint32_t(n), -3.0f, 3.0f);
    Buffer<float> d(be2, x);
    double ref = 0.0;
    for (float xi : x) ref += double(xi) * xi;
    double got1 = -1.0, got2 = -1.0, again = -1.0;
    ASSERT_TRUE(be1.sum_squares(d.data(), n, &got1).is_ok());
    ASSERT_TRUE(be2.sum_squares(d.data(), n, &got2).is_ok());
    ASSERT_TRUE(be2.sum_squares(d.data(), n, &again).is_ok());
    // Squares of floats are exact in double; only the summation order differs from the reference.
    EXPECT_NEAR(got2, ref, 1e-12 * ref) << "n=" << n;
    EXPECT_EQ(std::memcmp(&got1, &got2, sizeof(double)), 0) << "1 vs 2 threads, n=" << n;
    EXPECT_EQ(std::memcmp(&got2, &again, sizeof(double)), 0) << "repeat, n=" << n;
  }
  double zero = -1.0;
  ASSERT_TRUE(be2.sum_squares(nullptr, 0, &zero).is_ok());
  EXPECT_EQ(zero, 0.0);
}

TEST(CpuOptim, Scale) {
  CpuBackend be(2);
  const size_t n = 70001;
  const std::vector<float> x = random_vector(n, 7);
  Buffer<float> d(be, x);
  const float s = 0.37f;
  ASSERT_TRUE(be.scale(d.data(), s, n).is_ok());
  std::vector<double> ref(n);
  for (size_t i = 0; i < n; ++i) ref[i] = double(x[i]) * s;
  expect_close("scale", d.data(), ref, 0.0, 6e-8);  // one correctly rounded multiply
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
