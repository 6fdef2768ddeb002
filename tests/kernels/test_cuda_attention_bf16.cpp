// The bf16 tensor-core attention (kernels/cuda/attention_bf16.cu), reached through a CudaBackend made
// with GpuPrecision::kBf16, against the fp32 CPU backend: out and dqkv for head sizes 16, 32, 64 and 128
// and T = 1, 7, 64, 100, 130, 257 (one to five 64-row tiles, partial last tiles), the saved log-sum-exp
// rows against a double-precision host computation, determinism (two runs bit-identical), the
// written (not accumulated) dqkv of the backward, operands that are not 16-byte aligned (the kernels' scalar
// load path), and the fallback to the fp32 kernel for a head size the bf16 kernels do not take.
// Compiled by the C++ compiler: only the Backend interface, the factory and the device probe are used.
// Without a usable CUDA device every test is skipped with the probe's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

class CudaAttentionBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    Backends& b = backends();
    if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
    ASSERT_TRUE(b.error.is_ok()) << b.error.to_string();
    ASSERT_NE(b.gpu_bf16, nullptr);
    cpu_ = b.cpu.get();
    gpu_ = b.gpu_bf16.get();
  }

  Backend* cpu_ = nullptr;
  Backend* gpu_ = nullptr;
};

// ---- helpers

// Row log-sum-exp [B, NH, T] of the scaled causal scores, in double from the fp32 inputs.
std::vector<float> reference_lse(const std::vector<float>& qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<float> lse(static_cast<size_t>(B) * NH * T);
  std::vector<double> s(T);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int i = 0; i < T; ++i) {
        const float* q = qkv.data() + (static_cast<size_t>(b) * T + i) * 3 * C + h * hs;
        double m = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const float* k = qkv.data() + (static_cast<size_t>(b) * T + j) * 3 * C + C + h * hs;
          double dot = 0.0;
          for (int d = 0; d < hs; ++d) dot += static_cast<double>(q[d]) * k[d];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= i; ++j) sum += std::exp(s[j] - m);
        lse[(static_cast<size_t>(b) * NH + h) * T + i] = static_cast<float>(m + std::log(sum));
      }
    }
  }
  return lse;
}

struct AttentionResult {
  std::vector<float> out, dqkv, state;
};

// Forward, then `backward_calls` backward calls writing dqkv (which starts as dqkv0). `offset` > 0 shifts qkv
// and dout by that many floats inside their allocations (operands not 16-byte aligned).
AttentionResult run_attention(Backend& be, int B, int T, int C, int NH, const std::vector<float>& qkv,
                              const std::vector<float>& dout, const std::vector<float>& dqkv0,
                              int backward_calls, int offset = 0) {
  std::vector<float> qkv_padded(offset, 0.0f), dout_padded(offset, 0.0f);
  qkv_padded.insert(qkv_padded.end(), qkv.begin(), qkv.end());
  dout_padded.insert(dout_padded.end(), dout.begin(), dout.end());
  Array<float> x(be, qkv_padded), d(be, dout_padded), dx(be, dqkv0);
  Array<float> out(be, static_cast<size_t>(B) * T * C);
  Array<float> att(be, be.attention_state_size(B, T, C, NH));
  PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), x.data() + offset, B, T, C, NH));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(be.attention_backward(dx.data(), d.data() + offset, x.data() + offset, out.data(),
                                               att.data(), B, T, C, NH));
  }
  return {out.download(), dx.download(), att.download()};
}

// Tolerances. Q, K, V, dO are rounded to bf16 (relative error <= 2^-9 = 0.2%) and P, dS are rounded
// again as operands; accumulation is fp32. A scaled score q.k/sqrt(hs) of inputs in [-1.5, 1.5] is
// O(1) with an error of about 1e-3 (the rounding errors of the hs products add like a random walk and
// the 1/sqrt(hs) scale cancels their growth), which moves P by about 0.1% relative; out is a convex
// combination of bf16-rounded V rows, so its error stays a few 1e-3 (observed at most 5.5e-3 on an
// H100 against the fp32 kernel): atol = rtol = 2e-2 leaves about a 4x margin and is still 1000x looser
// than fp32 agreement only because bf16 has 8 mantissa bits instead of 24. dqkv sums up to T terms whose
// errors are of the same relative size (observed at most 7e-3), with values up to a few units: 3e-2.
// The lse error is the score error (observed at most 4.6e-3): atol 1.5e-2 on values of order log(T).
constexpr double kOutAtol = 2e-2, kOutRtol = 2e-2;
constexpr double kGradAtol = 3e-2, kGradRtol = 3e-2;
constexpr double kLseAtol = 1.5e-2;

TEST_F(CudaAttentionBf16, MatchesCpu) {
  for (int hs : {16, 32, 64, 128}) {
    for (int T : {1, 7, 64, 100, 130, 257}) {
      const int B = T <= 130 ? 2 : 1;
      const int NH = hs == 32 ? 3 : 2;
      const int C = hs * NH;
      const std::string tag =
          "B=" + std::to_string(B) + " T=" + std::to_string(T) + " hs=" + std::to_string(hs);
      const size_t n = static_cast<size_t>(B) * T * C;
      const auto qkv = random_vector(3 * n, 30 + T + hs, -1.5f, 1.5f);
      const auto dout = random_vector(n, 31 + hs);
      const auto dqkv0 = random_vector(3 * n, 32);
      const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
      const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
      expect_close("attention out " + tag, got.out, ref.out, kOutAtol, kOutRtol);
      expect_close("attention dqkv " + tag, got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
      expect_close("attention lse " + tag, got.state, reference_lse(qkv, B, T, C, NH), kLseAtol, 0.0);
    }
  }
}

TEST_F(CudaAttentionBf16, GptShapeMatchesCpu) {
  const int B = 1, T = 130, C = 768, NH = 12;  // GPT-2's head size 64 with 12 heads
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 50, -1.5f, 1.5f);
  const auto dout = random_vector(n, 51);
  const auto dqkv0 = random_vector(3 * n, 52);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out", got.out, ref.out, kOutAtol, kOutRtol);
  expect_close("attention dqkv", got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
}

TEST_F(CudaAttentionBf16, UnalignedOperandsMatchCpu) {
  // qkv and dout one float past a 16-byte boundary: the kernels read them element by element.
  const int B = 2, T = 100, C = 128, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 60, -1.5f, 1.5f);
  const auto dout = random_vector(n, 61);
  const auto dqkv0 = random_vector(3 * n, 62);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1, /*offset=*/1);
  const AttentionResult aligned = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out", got.out, ref.out, kOutAtol, kOutRtol);
  expect_close("attention dqkv", got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
  // Same bf16 values staged either way: the results are the same bits.
  EXPECT_TRUE(bit_identical(got.out, aligned.out));
  EXPECT_TRUE(bit_identical(got.dqkv, aligned.dqkv));
}

TEST_F(CudaAttentionBf16, DeterministicAndWritten) {
  for (int hs : {32, 64, 128}) {
    const int B = 2, T = 257, NH = 2, C = hs * NH;
    const std::string tag = "hs=" + std::to_string(hs);
    const size_t n = static_cast<size_t>(B) * T * C;
    const auto qkv = random_vector(3 * n, 70 + hs, -1.5f, 1.5f);
    const auto dout = random_vector(n, 71);
    const auto dqkv0 = random_vector(3 * n, 72);
    const AttentionResult first = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    const AttentionResult again = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    EXPECT_TRUE(bit_identical(first.out, again.out)) << tag;
    EXPECT_TRUE(bit_identical(first.dqkv, again.dqkv)) << tag;
    EXPECT_TRUE(bit_identical(first.state, again.state)) << tag;
    // dqkv is written: what it held before and a second call change nothing.
    const std::vector<float> zero(3 * n, 0.0f);
    const AttentionResult one = run_attention(*gpu_, B, T, C, NH, qkv, dout, zero, 1);
    const AttentionResult two = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 2);
    EXPECT_TRUE(bit_identical(one.dqkv, first.dqkv)) << tag;
    EXPECT_TRUE(bit_identical(two.dqkv, first.dqkv)) << tag;
  }
}

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  return h;
}

// bf16 storage ([device] activations = "bf16": qkv, out and dqkv as bf16, dout fp32) at the shapes of
// MatchesCpu, several key tiles and query blocks included: the bits are the fp32-storage kernels' on
// the same bf16 values, each output rounded once (the storage rule, at sizes the rule test does not run).
TEST_F(CudaAttentionBf16, Bf16StorageIsTheFp32StorageRoundedAtEveryShape) {
  for (int hs : {16, 64, 128}) {
    for (int T : {7, 64, 130, 257}) {
      const int B = 2, NH = 2, C = hs * NH;
      const std::string tag = "T=" + std::to_string(T) + " hs=" + std::to_string(hs);
      const size_t n = static_cast<size_t>(B) * T * C;
      const size_t n_att = gpu_->attention_state_size(B, T, C, NH);
      std::vector<float> qkv = random_vector(3 * n, 90 + T + hs, -1.5f, 1.5f);
      for (float& x : qkv) x = bf16_to_float(float_to_bf16(x));
      const auto dout = random_vector(n, 91 + hs);
      // fp32 storage on the bf16 values.
      Array<float> x32(*gpu_, qkv), d(*gpu_, dout), out32(*gpu_, n), att32(*gpu_, n_att), dx32(*gpu_, 3 * n);
      ASSERT_TRUE(gpu_->attention_forward(out32.data(), att32.data(), x32.data(), B, T, C, NH).is_ok());
      // bf16 storage.
      Array<uint16_t> x16(*gpu_, to_bf16_bits(qkv)), out16(*gpu_, n), dx16(*gpu_, 3 * n);
      Array<float> att16(*gpu_, n_att);
      ASSERT_TRUE(gpu_->attention_forward(out16.data(), att16.data(), x16.data(), B, T, C, NH).is_ok());
      const std::vector<uint16_t> o16 = out16.download();
      EXPECT_EQ(o16, to_bf16_bits(out32.download())) << tag;
      EXPECT_TRUE(bit_identical(att16.download(), att32.download())) << tag;
      // The backward reads `out` as stored: the fp32 reference gets the widened bf16 out.
      std::vector<float> out_widened(n);
      for (size_t i = 0; i < n; ++i) out_widened[i] = bf16_to_float(o16[i]);
      out32.upload(out_widened);
      ASSERT_TRUE(
          gpu_->attention_backward(dx32.data(), d.data(), x32.data(), out32.data(), att32.data(), B, T, C, NH)
              .is_ok());
      ASSERT_TRUE(
          gpu_->attention_backward(dx16.data(), d.data(), x16.data(), out16.data(), att16.data(), B, T, C, NH)
              .is_ok());
      EXPECT_EQ(dx16.download(), to_bf16_bits(dx32.download())) << tag;
    }
  }
}

TEST_F(CudaAttentionBf16, UnsupportedHeadSizeFallsBackToFp32) {
  // hs = 8 is not a multiple of 16: the backend runs the fp32 kernel, which agrees with the CPU to fp32
  // tolerances (the same as test_cuda_ops).
  const int B = 2, T = 70, C = 16, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 80, -1.5f, 1.5f);
  const auto dout = random_vector(n, 81);
  const auto dqkv0 = random_vector(3 * n, 82);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out hs=8", got.out, ref.out, 1e-5, 1e-4);
  expect_close("attention dqkv hs=8", got.dqkv, ref.dqkv, 2e-5, 2e-4);
}

TEST_F(CudaAttentionBf16, RejectsBadArguments) {
  Array<float> qkv(*gpu_, 3 * 272), out(*gpu_, 272), att(*gpu_, 2);
  // Head sizes the fp32 kernel does not take either are errors in every mode.
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 136, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 30, 4).code(),
            StatusCode::kInvalidArgument);  // C not a multiple of NH
  EXPECT_EQ(gpu_->attention_forward(nullptr, att.data(), qkv.data(), 1, 1, 32, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 0, 32, 1).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::kernels
