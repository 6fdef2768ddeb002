// Backward ops of the CPU backend against central finite differences of a scalar objective
// L = sum(out * R) (R fixed random, accumulated in double) on tiny shapes, plus the semantics of every
// backward (parameter gradients and the layernorm's dinp accumulate; matmul, gelu and attention input
// gradients and dlogits are written) and the aliasing cases of cross-entropy.
// Finite-difference step and tolerances: fp32 forwards make L noisy at ~1e-7 relative, so the central
// difference carries ~1e-7 / eps of noise plus O(eps^2) truncation; eps = 1e-2 for the ops that are
// linear in the perturbed input (no truncation error) and 3e-3 for the nonlinear ones, with
// |analytic - fd| <= atol + rtol * |fd| as stated per test.
// The finite-difference tests use one thread (thousands of tiny forwards, no parallel-region cost;
// test_cpu_determinism shows 1 and 2 threads give bit-identical results).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

constexpr GradTolerance kLinearTol{1e-2f, 2e-5, 2e-5};     // L linear in the input
constexpr GradTolerance kNonlinearTol{3e-3f, 1e-4, 3e-4};  // smooth nonlinear L

// Expects every grad2[i] (after two backward calls) to be 2 * grad1[i] (after one), to fp32 rounding.
void expect_doubled(const std::string& what, const float* grad2, const std::vector<float>& grad1) {
  std::vector<double> ref(grad1.size());
  bool any_nonzero = false;
  for (size_t i = 0; i < grad1.size(); ++i) {
    ref[i] = 2.0 * grad1[i];
    any_nonzero = any_nonzero || grad1[i] != 0.0f;
  }
  EXPECT_TRUE(any_nonzero) << what << ": gradient is all zero";
  expect_close(what + " accumulated twice", grad2, ref, 1e-7, 1e-6);
}

// Expects grad2 (after a second backward call) to hold grad1's bits: the gradient is written.
void expect_written(const std::string& what, const float* grad2, const std::vector<float>& grad1) {
  EXPECT_TRUE(bit_identical(grad2, grad1.data(), grad1.size())) << what << ": a second call changed it";
}

TEST(CpuGrad, Encoder) {
  CpuBackend be(1);
  const int B = 2, T = 3, C = 5, V = 4;
  Buffer<float> wte(be, random_vector(size_t(V) * C, 1)), wpe(be, random_vector(size_t(T) * C, 2));
  Buffer<int32_t> tokens(be, std::vector<int32_t>{1, 3, 1, 1, 0, 1});  // repeats accumulate; 2 unused
  const std::vector<float> R = random_vector(size_t(B) * T * C, 3);
  Buffer<float> out(be, R.size()), dout(be, R);
  auto loss = [&] {
    PERIGEE_CHECK_OR_DIE(be.encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V));
    return weighted_sum(out.data(), R);
  };
  Buffer<float> dwte(be, wte.size()), dwpe(be, wpe.size());
  ASSERT_TRUE(be.encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V).is_ok());
  check_gradient("encoder dwte", wte.data(), dwte.data(), wte.size(), loss, kLinearTol);
  check_gradient("encoder dwpe", wpe.data(), dwpe.data(), wpe.size(), loss, kLinearTol);
  for (int c = 0; c < C; ++c) EXPECT_EQ(dwte[2 * C + c], 0.0f);  // token 2 never occurs
  const std::vector<float> g_wte = dwte.to_vector(), g_wpe = dwpe.to_vector();
  ASSERT_TRUE(be.encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C, V).is_ok());
  expect_doubled("encoder dwte", dwte.data(), g_wte);
  expect_doubled("encoder dwpe", dwpe.data(), g_wpe);
}

TEST(CpuGrad, LayerNorm) {
  CpuBackend be(1);
  const int N = 3, C = 7;
  Buffer<float> inp(be, random_vector(size_t(N) * C, 10)), w(be, random_vector(C, 11, 0.5f, 1.5f)),
      bias(be, random_vector(C, 12));
  const std::vector<float> R = random_vector(size_t(N) * C, 13);
  Buffer<float> out(be, R.size()), mean(be, N), rstd(be, N), dout(be, R);
  auto loss = [&] {
    PERIGEE_CHECK_OR_DIE(
        be.layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), bias.data(), N, C));
    return weighted_sum(out.data(), R);
  };
  loss();  // mean, rstd of the unperturbed input for the backward
  Buffer<float> dinp(be, inp.size()), dw(be, C), db(be, C);
  auto backward = [&] {
    return be.layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(),
                                 mean.data(), rstd.data(), N, C);
  };
  ASSERT_TRUE(backward().is_ok());
  const std::vector<float> g_inp = dinp.to_vector(), g_w = dw.to_vector(), g_b = db.to_vector();
  check_gradient("layernorm dinp", inp.data(), dinp.data(), inp.size(), loss, kNonlinearTol);
  check_gradient("layernorm dweight", w.data(), dw.data(), C, loss, kLinearTol);
  check_gradient("layernorm dbias", bias.data(), db.data(), C, loss, kLinearTol);
  loss();  // restore mean, rstd
  ASSERT_TRUE(backward().is_ok());
  expect_doubled("layernorm dinp", dinp.data(), g_inp);
  expect_doubled("layernorm dweight", dw.data(), g_w);
  expect_doubled("layernorm dbias", db.data(), g_b);
}

TEST(CpuGrad, Matmul) {
  CpuBackend be(1);
  const int N = 4, C = 5, OC = 3;
  Buffer<float> inp(be, random_vector(size_t(N) * C, 20)), w(be, random_vector(size_t(OC) * C, 21)),
      bias(be, random_vector(OC, 22));
  const std::vector<float> R = random_vector(size_t(N) * OC, 23);
  Buffer<float> out(be, R.size()), dout(be, R);
  auto loss = [&] {
    PERIGEE_CHECK_OR_DIE(be.matmul_forward(out.data(), inp.data(), w.data(), bias.data(), N, C, OC));
    return weighted_sum(out.data(), R);
  };
  Buffer<float> dinp(be, inp.size()), dw(be, w.size()), db(be, OC);
  auto backward = [&] {
    return be.matmul_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, C, OC);
  };
  ASSERT_TRUE(backward().is_ok());
  check_gradient("matmul dinp", inp.data(), dinp.data(), inp.size(), loss, kLinearTol);
  check_gradient("matmul dweight", w.data(), dw.data(), w.size(), loss, kLinearTol);
  check_gradient("matmul dbias", bias.data(), db.data(), OC, loss, kLinearTol);
  const std::vector<float> g_inp = dinp.to_vector(), g_w = dw.to_vector(), g_b = db.to_vector();
  ASSERT_TRUE(backward().is_ok());
  expect_written("matmul dinp", dinp.data(), g_inp);
  expect_doubled("matmul dweight", dw.data(), g_w);
  expect_doubled("matmul dbias", db.data(), g_b);

  // Each gradient may be skipped (null) independently; the others are unchanged by that.
  Buffer<float> only_inp(be, inp.size()), only_w(be, w.size()), only_b(be, OC);
  ASSERT_TRUE(be.matmul_backward(only_inp.data(), nullptr, nullptr, dout.data(), nullptr, w.data(), N, C, OC)
                  .is_ok());
  ASSERT_TRUE(be.matmul_backward(nullptr, only_w.data(), nullptr, dout.data(), inp.data(), nullptr, N, C, OC)
                  .is_ok());
  ASSERT_TRUE(
      be.matmul_backward(nullptr, nullptr, only_b.data(), dout.data(), nullptr, nullptr, N, C, OC).is_ok());
  EXPECT_TRUE(bit_identical(only_inp.data(), g_inp.data(), g_inp.size()));
  EXPECT_TRUE(bit_identical(only_w.data(), g_w.data(), g_w.size()));
  EXPECT_TRUE(bit_identical(only_b.data(), g_b.data(), g_b.size()));
}

// The backward GEMMs on a shape split into many tiles (partial tiles on both edges) against double
// references; the finite-difference test above covers the formulas on a single tile.
TEST(CpuGrad, MatmulTiledAgainstReference) {
  CpuBackend be(2);
  const int N = 300, C = 150, OC = 700;
  const std::vector<float> inp = random_vector(size_t(N) * C, 24), w = random_vector(size_t(OC) * C, 25),
                           dout = random_vector(size_t(N) * OC, 26), g0 = random_vector(size_t(N) * C, 27);
  Buffer<float> d_inp(be, inp), d_w(be, w), d_dout(be, dout);
  Buffer<float> dinp(be, g0), dw(be, w.size()), db(be, OC);  // dinp starts non-zero: it is overwritten
  ASSERT_TRUE(
      be.matmul_backward(dinp.data(), dw.data(), db.data(), d_dout.data(), d_inp.data(), d_w.data(), N, C, OC)
          .is_ok());
  std::vector<double> r_inp(inp.size()), r_w(w.size(), 0.0), r_b(OC, 0.0);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      double acc = 0.0;
      for (int o = 0; o < OC; ++o) acc += double(dout[size_t(n) * OC + o]) * w[size_t(o) * C + c];
      r_inp[size_t(n) * C + c] = acc;
    }
  for (int o = 0; o < OC; ++o) {
    for (int n = 0; n < N; ++n) {
      const double d = dout[size_t(n) * OC + o];
      r_b[o] += d;
      for (int c = 0; c < C; ++c) r_w[size_t(o) * C + c] += d * inp[size_t(n) * C + c];
    }
  }
  // fp32 sums of 700 (dinp) or 300 (dweight) terms bounded by 1, partial sums up to ~20: rounding
  // ~ sqrt(K) * ulp(20) ~ 2e-5 absolute, hence 1e-4.
  expect_close("matmul dinp (tiled)", dinp.data(), r_inp, 1e-4, 1e-6);
  expect_close("matmul dweight (tiled)", dw.data(), r_w, 1e-4, 1e-6);
  expect_close("matmul dbias (tiled)", db.data(), r_b, 1e-6, 1e-6);  // double accumulation
}

TEST(CpuGrad, Attention) {
  CpuBackend be(1);
  struct Shape {
    int B, T, C, NH;
  };
  // T = 70 spans two 64-row blocks of the implementation.
  for (const Shape& s : {Shape{2, 4, 8, 2}, Shape{1, 5, 6, 1}, Shape{1, 70, 4, 2}}) {
    Buffer<float> qkv(be, random_vector(size_t(s.B) * s.T * 3 * s.C, 30 + s.T));
    const std::vector<float> R = random_vector(size_t(s.B) * s.T * s.C, 31);
    Buffer<float> out(be, R.size()), att(be, size_t(s.B) * s.NH * s.T * s.T), dout(be, R);
    auto loss = [&] {
      PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.C, s.NH));
      return weighted_sum(out.data(), R);
    };
    loss();
    Buffer<float> dqkv(be, qkv.size());
    auto backward = [&] {
      return be.attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), att.data(), s.B, s.T,
                                   s.C, s.NH);
    };
    ASSERT_TRUE(backward().is_ok());
    const std::vector<float> g = dqkv.to_vector();
    check_gradient("attention dqkv T=" + std::to_string(s.T), qkv.data(), dqkv.data(), qkv.size(), loss,
                   kNonlinearTol);
    loss();  // restore att
    ASSERT_TRUE(backward().is_ok());
    expect_written("attention dqkv", dqkv.data(), g);
  }
}

TEST(CpuGrad, Gelu) {
  CpuBackend be(1);
  std::vector<float> x = random_vector(60, 40, -5.0f, 5.0f);
  x.push_back(0.0f);
  Buffer<float> inp(be, x);
  const std::vector<float> R = random_vector(x.size(), 41);
  Buffer<float> out(be, x.size()), dout(be, R);
  auto loss = [&] {
    PERIGEE_CHECK_OR_DIE(be.gelu_forward(out.data(), inp.data(), x.size()));
    return weighted_sum(out.data(), R);
  };
  Buffer<float> dinp(be, x.size());
  ASSERT_TRUE(be.gelu_backward(dinp.data(), inp.data(), dout.data(), x.size()).is_ok());
  check_gradient("gelu dinp", inp.data(), dinp.data(), x.size(), loss, kNonlinearTol);
  const std::vector<float> g = dinp.to_vector();
  ASSERT_TRUE(be.gelu_backward(dinp.data(), inp.data(), dout.data(), x.size()).is_ok());
  expect_written("gelu dinp", dinp.data(), g);
}

TEST(CpuGrad, CrossEntropy) {
  CpuBackend be(1);
  const int N = 3, V = 7, Vp = 9;
  std::vector<float> x = random_vector(size_t(N) * Vp, 50, -3.0f, 3.0f);
  for (int n = 0; n < N; ++n) x[size_t(n) * Vp + V] = 50.0f;  // padding would dominate if used
  Buffer<float> logits(be, x), probs(be, x.size()), losses(be, N);
  Buffer<int32_t> targets(be, std::vector<int32_t>{2, 0, 6});
  const float dloss = 1.0f / N;  // L = mean loss
  auto loss = [&] {
    PERIGEE_CHECK_OR_DIE(
        be.crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V, Vp));
    double s = 0.0;
    for (int n = 0; n < N; ++n) s += double(dloss) * losses[n];
    return s;
  };
  loss();
  Buffer<float> dlogits(be, x.size());
  dlogits.fill(9.0f);  // written, not accumulated
  ASSERT_TRUE(
      be.crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V, Vp).is_ok());
  for (int n = 0; n < N; ++n)
    for (int j = V; j < Vp; ++j) {
      ASSERT_EQ(probs[size_t(n) * Vp + j], 0.0f);
      ASSERT_EQ(dlogits[size_t(n) * Vp + j], 0.0f);
    }
  const std::vector<float> g = dlogits.to_vector();
  // Every logit, padded ones included (their finite difference is exactly 0).
  check_gradient("crossentropy dlogits", logits.data(), dlogits.data(), x.size(), loss, kNonlinearTol);

  // Calling the backward again writes the same values (no accumulation).
  loss();
  ASSERT_TRUE(
      be.crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V, Vp).is_ok());
  EXPECT_TRUE(bit_identical(dlogits.data(), g.data(), g.size()));

  // Fully in place: logits -> probs -> dlogits in one buffer.
  Buffer<float> inplace(be, x), losses2(be, N);
  ASSERT_TRUE(
      be.crossentropy_forward(losses2.data(), inplace.data(), inplace.data(), targets.data(), N, V, Vp)
          .is_ok());
  EXPECT_TRUE(bit_identical(inplace.data(), probs.data(), x.size()));
  EXPECT_TRUE(bit_identical(losses2.data(), losses.data(), N));
  ASSERT_TRUE(
      be.crossentropy_backward(inplace.data(), inplace.data(), targets.data(), dloss, N, V, Vp).is_ok());
  EXPECT_TRUE(bit_identical(inplace.data(), g.data(), g.size()));

  // forward_backward: the same losses and dlogits bits in one call, separate or in place.
  Buffer<float> fused(be, x.size()), fused_in_place(be, x), losses3(be, N), losses4(be, N);
  ASSERT_TRUE(be.crossentropy_forward_backward(losses3.data(), fused.data(), logits.data(), targets.data(),
                                               dloss, N, V, Vp)
                  .is_ok());
  ASSERT_TRUE(be.crossentropy_forward_backward(losses4.data(), fused_in_place.data(), fused_in_place.data(),
                                               targets.data(), dloss, N, V, Vp)
                  .is_ok());
  EXPECT_TRUE(bit_identical(fused.data(), g.data(), g.size()));
  EXPECT_TRUE(bit_identical(fused_in_place.data(), g.data(), g.size()));
  EXPECT_TRUE(bit_identical(losses3.data(), losses.data(), N));
  EXPECT_TRUE(bit_identical(losses4.data(), losses.data(), N));
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
