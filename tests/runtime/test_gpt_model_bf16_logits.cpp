// GptModel with bf16 logits on the CPU backend ([device] logits = "bf16", with bf16 activations): the
// logits take half their bytes and their gradient overwrites them (no buffer of its own), the scratch
// still moves into them when it fits, copy_logits gives the fp32 logits rounded once, the loss and the
// whole gradient stay close to those of fp32 logits without being equal, runs repeat bit for bit, and
// bf16 logits without bf16 activations are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

constexpr kernels::DType kBf16 = kernels::DType::kBF16;
constexpr kernels::DType kF32 = kernels::DType::kF32;

using testing::forward_backward;
using testing::Pass;
using testing::random_tokens;

// Both models with bf16 activations. At vocab 256 no scratch fits into the logits: bf16 logits save
// 2 bytes per logit and the 2-byte gradient buffer. At vocab 1024 the scratch lies inside the logits
// either way, but with the gradient in place d_ln (4 bytes per N*C, written by the LM head's backward
// while it reads that gradient) needs memory of its own again.
TEST(GptModelBf16Logits, HalveTheLogitsAndDropTheGradientBuffer) {
  kernels::cpu::CpuBackend cpu(1);
  const int B = 4, T = 32;
  const size_t N = static_cast<size_t>(B) * T, nc = N * 64;
  for (int vocab : {256, 1024}) {
    GptModel f, h;
    const GptShape shape{2, 4, 64, 32, vocab, vocab};
    ASSERT_TRUE(f.init(shape, &cpu, B, T, kBf16, kF32).is_ok());
    ASSERT_TRUE(h.init(shape, &cpu, B, T, kBf16, kBf16).is_ok());
    EXPECT_EQ(h.logits_dtype(), kBf16);
    const size_t saved = 4 * N * vocab - (vocab == 1024 ? 4 * nc : 0);
    EXPECT_EQ(f.activation_bytes() - h.activation_bytes(), saved) << "vocab " << vocab;
  }
}

TEST(GptModelBf16Logits, NeedBf16Activations) {
  kernels::cpu::CpuBackend cpu(1);
  GptModel m;
  const Status s = m.init(GptShape{1, 2, 16, 8, 256, 256}, &cpu, 1, 8, kF32, kBf16);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bf16 logits need bf16 activations"), std::string::npos) << s.message();
}

// The LM head computes in fp32 and rounds once: every bf16 logit is the fp32 model's logit rounded.
TEST(GptModelBf16Logits, CopyLogitsGivesTheRoundedLogits) {
  kernels::cpu::CpuBackend cpu(1);
  const GptShape shape{1, 2, 16, 8, 250, 256};
  GptModel f, h;
  ASSERT_TRUE(f.init(shape, &cpu, 2, 8, kBf16, kF32).is_ok());
  ASSERT_TRUE(h.init(shape, &cpu, 2, 8, kBf16, kBf16).is_ok());
  ASSERT_TRUE(f.init_parameters(4).is_ok());
  ASSERT_TRUE(h.init_parameters(4).is_ok());
  const auto x = random_tokens(16, shape.vocab, 6);
  ASSERT_TRUE(f.forward(x.data(), nullptr, 2, 8, nullptr).is_ok());
  ASSERT_TRUE(h.forward(x.data(), nullptr, 2, 8, nullptr).is_ok());
  size_t inexact = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t : {0, 5, 7}) {
      std::vector<float> want, got;
      ASSERT_TRUE(f.copy_logits(b, t, &want).is_ok());
      ASSERT_TRUE(h.copy_logits(b, t, &got).is_ok());
      ASSERT_EQ(got.size(), static_cast<size_t>(shape.vocab));
      for (size_t j = 0; j < got.size(); ++j) {
        EXPECT_EQ(got[j], bf16_to_float(float_to_bf16(want[j]))) << b << " " << t << " " << j;
        inexact += got[j] != want[j];
      }
    }
  }
  EXPECT_GT(inexact, 6u * shape.vocab / 2);  // the rounding is real
}

// C 64: the scratch apart from the logits; C 16 with vocab 256: inside them, so a scratch tensor
// overwriting the in-place gradient before the LM head's backward has read it would show here.
TEST(GptModelBf16Logits, LossAndGradientStayCloseToFp32Logits) {
  for (const GptShape& shape : {GptShape{2, 4, 64, 32, 256, 320}, GptShape{2, 2, 16, 32, 256, 256}}) {
    const Pass ref = forward_backward(kBf16, shape, 2, 32, 5, kF32);
    const Pass got = forward_backward(kBf16, shape, 2, 32, 5, kBf16);
    const double rel = testing::relative_l2(got.grads, ref.grads);
    std::printf("C %d: bf16 logits vs fp32 logits: loss %.6f vs %.6f, gradient relative L2 %.3g\n",
                shape.n_embd, got.loss, ref.loss, rel);
    EXPECT_NEAR(got.loss, ref.loss, 1e-3 * ref.loss);
    EXPECT_NE(got.loss, ref.loss);  // the loss is that of the rounded logits
    EXPECT_LT(rel, 2e-2);
    EXPECT_GT(rel, 1e-6);
  }
}

TEST(GptModelBf16Logits, RepeatBitForBit) {
  const GptShape shape{1, 2, 32, 16, 256, 256};
  const Pass a = forward_backward(kBf16, shape, 2, 16, 9, kBf16);
  const Pass b = forward_backward(kBf16, shape, 2, 16, 9, kBf16);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(std::memcmp(a.grads.data(), b.grads.data(), a.grads.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace perigee::runtime
