// Forward ops of the CPU backend against naive double-precision references on small random shapes.
// Each check is |got - ref| <= atol + rtol * |ref|, with the tolerances stated next to it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "tests/kernels/gelu_ref.hpp"
#include "tests/kernels/gelu_saturation_util.hpp"
#include "tests/kernels/residual_layernorm_util.hpp"
#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

TEST(CpuOpsForward, Encoder) {
  CpuBackend be(2);
  const int B = 3, T = 5, C = 37, V = 11, maxT = 7;
  Buffer<float> wte(be, random_vector(size_t{V} * C, 1));
  Buffer<float> wpe(be, random_vector(size_t{maxT} * C, 2));
  Buffer<int32_t> tokens(be, random_tokens(size_t{B} * T, V, 3));
  Buffer<float> out(be, size_t{B} * T * C);
  ASSERT_TRUE(be.encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, V).is_ok());
  std::vector<double> ref(out.size());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c)
        ref[(size_t(b) * T + t) * C + c] =
            double(wte[size_t(tokens[b * T + t]) * C + c]) + double(wpe[size_t(t) * C + c]);
  // One fp32 add: correctly rounded.
  expect_close("encoder out", out.data(), ref, 0.0, 6e-8);
}

// out, mean, rstd references of layernorm in double.
void layernorm_reference(const std::vector<float>& inp, const std::vector<float>& w,
                         const std::vector<float>& bias, int N, int C, std::vector<double>& out,
                         std::vector<double>& mean, std::vector<double>& rstd) {
  out.assign(size_t(N) * C, 0.0);
  mean.assign(N, 0.0);
  rstd.assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    double m = 0.0;
    for (int c = 0; c < C; ++c) m += inp[size_t(n) * C + c];
    m /= C;
    double v = 0.0;
    for (int c = 0; c < C; ++c) v += (inp[size_t(n) * C + c] - m) * (inp[size_t(n) * C + c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; ++c) out[size_t(n) * C + c] = (inp[size_t(n) * C + c] - m) * s * w[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

TEST(CpuOpsForward, LayerNorm) {
  CpuBackend be(2);
  for (int C : {1, 7, 48, 130}) {
    const int N = 9;
    std::vector<float> inp = random_vector(size_t(N) * C, 10 + C, -2.0f, 3.0f);
    for (float& x : inp) x += 5.0f;  // a large mean tests the two-pass variance
    const std::vector<float> w = random_vector(C, 11), bias = random_vector(C, 12);
    Buffer<float> d_inp(be, inp), d_w(be, w), d_b(be, bias);
    Buffer<float> out(be, size_t(N) * C), mean(be, N), rstd(be, N);
    ASSERT_TRUE(
        be.layernorm_forward(out.data(), mean.data(), rstd.data(), d_inp.data(), d_w.data(), d_b.data(), N, C)
            .is_ok());
    std::vector<double> r_out, r_mean, r_rstd;
    layernorm_reference(inp, w, bias, N, C, r_out, r_mean, r_rstd);
    const std::string tag = "C=" + std::to_string(C);
    // fp32 normalisation of O(1) values: a few ulp.
    expect_close("layernorm out " + tag, out.data(), r_out, 5e-7, 5e-7);
    expect_close("layernorm mean " + tag, mean.data(), r_mean, 0.0, 1e-7);
    // C = 1 has zero variance: rstd = 1/sqrt(eps) exactly as in the reference.
    expect_close("layernorm rstd " + tag, rstd.data(), r_rstd, 0.0, 2e-7);
  }
}

TEST(CpuOpsForward, Matmul) {
  CpuBackend be(2);
  struct Shape {
    int N, C, OC;
  };
  // The second shape is split into many GEMM tiles, with partial tiles on both edges.
  for (const Shape& s : {Shape{13, 40, 21}, Shape{300, 40, 700}}) {
    const int N = s.N, C = s.C, OC = s.OC;
    const std::vector<float> inp = random_vector(size_t(N) * C, 20), w = random_vector(size_t(OC) * C, 21),
                             bias = random_vector(OC, 22);
    Buffer<float> d_inp(be, inp), d_w(be, w), d_b(be, bias);
    Buffer<float> out(be, size_t(N) * OC), out_nb(be, size_t(N) * OC);
    out.fill(123.0f);  // the forward writes, not accumulates
    ASSERT_TRUE(be.matmul_forward(out.data(), d_inp.data(), d_w.data(), d_b.data(), N, C, OC).is_ok());
    ASSERT_TRUE(be.matmul_forward(out_nb.data(), d_inp.data(), d_w.data(), nullptr, N, C, OC).is_ok());
    std::vector<double> ref(out.size()), ref_nb(out.size());
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OC; ++o) {
        double acc = 0.0;
        for (int c = 0; c < C; ++c) acc += double(inp[size_t(n) * C + c]) * w[size_t(o) * C + c];
        ref_nb[size_t(n) * OC + o] = acc;
        ref[size_t(n) * OC + o] = acc + bias[o];
      }
    // fp32 dot products of length 40 with |terms| <= 1: error <= ~C * 6e-8 absolute.
    const std::string tag = " N=" + std::to_string(N);
    expect_close("matmul out" + tag, out.data(), ref, 2e-6, 1e-6);
    expect_close("matmul out (no bias)" + tag, out_nb.data(), ref_nb, 2e-6, 1e-6);
  }
}

// out and att references of causal attention in double.
void attention_reference(const std::vector<float>& qkv, int B, int T, int C, int NH, std::vector<double>& out,
                         std::vector<double>& att) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(double(hs));
  out.assign(size_t(B) * T * C, 0.0);
  att.assign(size_t(B) * NH * T * T, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const float* q = &qkv[(size_t(b) * T + t) * 3 * C + size_t(h) * hs];
        std::vector<double> s(t + 1);
        double mx = -std::numeric_limits<double>::infinity();
        for (int t2 = 0; t2 <= t; ++t2) {
          const float* k = &qkv[(size_t(b) * T + t2) * 3 * C + C + size_t(h) * hs];
          double d = 0.0;
          for (int i = 0; i < hs; ++i) d += double(q[i]) * k[i];
          s[t2] = d * scale;
          mx = std::max(mx, s[t2]);
        }
        double z = 0.0;
        for (int t2 = 0; t2 <= t; ++t2) z += std::exp(s[t2] - mx);
        double* a = &att[((size_t(b) * NH + h) * T + t) * T];
        for (int t2 = 0; t2 <= t; ++t2) a[t2] = std::exp(s[t2] - mx) / z;
        for (int i = 0; i < hs; ++i) {
          double o = 0.0;
          for (int t2 = 0; t2 <= t; ++t2)
            o += a[t2] * qkv[(size_t(b) * T + t2) * 3 * C + 2 * C + size_t(h) * hs + i];
          out[(size_t(b) * T + t) * C + size_t(h) * hs + i] = o;
        }
      }
}

TEST(CpuOpsForward, Attention) {
  CpuBackend be(2);
  struct Shape {
    int B, T, C, NH;
  };
  // T = 130 spans three 64-row blocks of the implementation.
  for (const Shape& s :
       {Shape{2, 7, 12, 3}, Shape{1, 33, 32, 2}, Shape{2, 16, 64, 1}, Shape{1, 130, 16, 2}}) {
    const std::vector<float> qkv = random_vector(size_t(s.B) * s.T * 3 * s.C, 30 + s.T, -2.0f, 2.0f);
    Buffer<float> d_qkv(be, qkv);
    Buffer<float> out(be, size_t(s.B) * s.T * s.C), att(be, size_t(s.B) * s.NH * s.T * s.T);
    att.fill(7.0f);  // the upper triangle must be overwritten with zeros
    ASSERT_TRUE(be.attention_forward(out.data(), att.data(), d_qkv.data(), s.B, s.T, s.C, s.NH).is_ok());
    std::vector<double> r_out, r_att;
    attention_reference(qkv, s.B, s.T, s.C, s.NH, r_out, r_att);
    const std::string tag = "T=" + std::to_string(s.T);
    // Probabilities in [0, 1]: a few ulp of fp32 exp and dot-product rounding.
    expect_close("attention att " + tag, att.data(), r_att, 1e-7, 1e-6);
    expect_close("attention out " + tag, out.data(), r_out, 5e-7, 2e-6);
    for (int row = 0; row < s.B * s.NH * s.T; ++row) {
      const int t = row % s.T;
      for (int t2 = t + 1; t2 < s.T; ++t2) ASSERT_EQ(att[size_t(row) * s.T + t2], 0.0f);
    }
  }
}

TEST(CpuOpsForward, Gelu) {
  CpuBackend be(2);
  std::vector<float> inp = random_vector(40000, 40, -6.0f, 6.0f);  // > one parallel chunk
  for (float x : {0.0f, -0.0f, 1e-6f, -1e-6f, 10.0f, -10.0f, 30.0f, -30.0f, 100.0f, -100.0f})
    inp.push_back(x);
  Buffer<float> d_inp(be, inp), out(be, inp.size());
  ASSERT_TRUE(be.gelu_forward(out.data(), d_inp.data(), inp.size()).is_ok());
  std::vector<double> ref(inp.size());
  for (size_t i = 0; i < inp.size(); ++i) ref[i] = kernels::testing::gelu_ref(inp[i]);
  // fp32 evaluation of x * sigmoid(2u): a few ulp relative where |u| is small; in the x << 0 tail the
  // function's condition number (~2|u|) amplifies input rounding, covered by the absolute term.
  expect_close("gelu out", out.data(), ref, 1e-8, 2e-6);
  // In place (out == inp) gives the same result.
  ASSERT_TRUE(be.gelu_forward(d_inp.data(), d_inp.data(), inp.size()).is_ok());
  EXPECT_TRUE(bit_identical(d_inp.data(), out.data(), inp.size()));
}

TEST(CpuOpsForward, GeluSaturatesFarOut) {
  CpuBackend be(2);
  kernels::testing::expect_gelu_saturates(be);
}

// The Backend default: the two ops, timed as two rows.
TEST(CpuOpsForward, ResidualLayerNormIsTheTwoOps) {
  CpuBackend be(2);
  EXPECT_FALSE(be.fuses_residual_layernorm());
  kernels::testing::expect_residual_layernorm_is_the_two_ops(be);
  EXPECT_EQ(kernels::testing::profiled_residual_layernorm_ops(be),
            (std::set<std::string>{"residual_forward", "layernorm_forward"}));
}

TEST(CpuOpsForward, Residual) {
  CpuBackend be(2);
  const size_t n = 50001;
  const std::vector<float> a = random_vector(n, 50), b = random_vector(n, 51);
  Buffer<float> da(be, a), db(be, b), out(be, n);
  ASSERT_TRUE(be.residual_forward(out.data(), da.data(), db.data(), n).is_ok());
  std::vector<double> ref(n);
  for (size_t i = 0; i < n; ++i) ref[i] = double(a[i]) + b[i];
  expect_close("residual out", out.data(), ref, 0.0, 6e-8);  // one correctly rounded add
  // out may alias a or b.
  ASSERT_TRUE(be.residual_forward(da.data(), da.data(), db.data(), n).is_ok());
  EXPECT_TRUE(bit_identical(da.data(), out.data(), n));
  da.assign(a);
  ASSERT_TRUE(be.residual_forward(db.data(), da.data(), db.data(), n).is_ok());
  EXPECT_TRUE(bit_identical(db.data(), out.data(), n));
}

// probs and losses references of softmax + cross-entropy in double.
void crossentropy_reference(const std::vector<float>& logits, const std::vector<int32_t>& targets, int N,
                            int V, int Vp, std::vector<double>& probs, std::vector<double>& losses) {
  probs.assign(size_t(N) * Vp, 0.0);
  losses.assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    const float* x = &logits[size_t(n) * Vp];
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < V; ++j) mx = std::max(mx, double(x[j]));
    double z = 0.0;
    for (int j = 0; j < V; ++j) z += std::exp(x[j] - mx);
    for (int j = 0; j < V; ++j) probs[size_t(n) * Vp + j] = std::exp(x[j] - mx) / z;
    losses[n] = std::log(z) - (x[targets[n]] - mx);
  }
}

TEST(CpuOpsForward, CrossEntropy) {
  CpuBackend be(2);
  const int N = 6, V = 37, Vp = 48;
  std::vector<float> logits = random_vector(size_t(N) * Vp, 60, -8.0f, 8.0f);
  for (int n = 0; n < N; ++n)
    for (int j = V; j < Vp; ++j) logits[size_t(n) * Vp + j] = 1000.0f;  // padding must be ignored
  logits[3] = 80.0f;  // a huge logit: only max subtraction keeps this finite
  const std::vector<int32_t> targets = random_tokens(N, V, 61);
  Buffer<float> d_logits(be, logits), probs(be, size_t(N) * Vp), losses(be, N);
  Buffer<int32_t> d_targets(be, targets);
  ASSERT_TRUE(
      be.crossentropy_forward(losses.data(), probs.data(), d_logits.data(), d_targets.data(), N, V, Vp)
          .is_ok());
  std::vector<double> r_probs, r_losses;
  crossentropy_reference(logits, targets, N, V, Vp, r_probs, r_losses);
  // Probabilities: fp32 exp within a few ulp (relative), tiny absolute floor for underflowed ones.
  expect_close("crossentropy probs", probs.data(), r_probs, 1e-30, 1e-6);
  expect_close("crossentropy losses", losses.data(), r_losses, 1e-6, 1e-6);
  for (int n = 0; n < N; ++n)
    for (int j = V; j < Vp; ++j) ASSERT_EQ(probs[size_t(n) * Vp + j], 0.0f) << n << "," << j;

  // In place: probs == logits gives bit-identical probabilities and losses.
  Buffer<float> inplace(be, logits), losses2(be, N);
  ASSERT_TRUE(
      be.crossentropy_forward(losses2.data(), inplace.data(), inplace.data(), d_targets.data(), N, V, Vp)
          .is_ok());
  EXPECT_TRUE(bit_identical(inplace.data(), probs.data(), probs.size()));
  EXPECT_TRUE(bit_identical(losses2.data(), losses.data(), N));
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
