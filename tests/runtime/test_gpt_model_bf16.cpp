// GptModel with bf16 activation storage on the CPU backend ([device] activations = "bf16"): the
// GEMM-operand tensors take half the bytes (exactly the expected saving, less the bf16 logits
// gradient's own buffer), the loss and the whole
// gradient stay close to the fp32 model's (whose gradient test_gpt_model.cpp checks against finite
// differences) without being equal to them, repeated runs are bit-identical, and the model learns.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/random.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

constexpr kernels::DType kBf16 = kernels::DType::kBF16;
constexpr kernels::DType kF32 = kernels::DType::kF32;

using testing::forward_backward;
using testing::Pass;
using testing::random_tokens;

TEST(GptModelBf16, GemmOperandsTakeHalfTheBytes) {
  kernels::cpu::CpuBackend cpu(1);
  const GptShape shape{2, 4, 64, 32, 256, 256};
  const int B = 4, T = 32;
  GptModel f, h;
  ASSERT_TRUE(f.init(shape, &cpu, B, T).is_ok());
  ASSERT_TRUE(h.init(shape, &cpu, B, T, kBf16).is_ok());
  EXPECT_EQ(f.activation_dtype(), kF32);
  EXPECT_EQ(h.activation_dtype(), kBf16);
  // Per layer ln1, atty, ln2 (N*C each), qkv (3*N*C), fch and fch_gelu (4*N*C each); once lnf (N*C), d_qkv
  // (3*N*C) and d_fch (4*N*C): 2 bytes saved per element (N*C = 8192, a multiple of the 256-byte
  // alignment). The logits' gradient then needs a bf16 buffer of its own (N*Vp, 2 bytes each) instead
  // of the fp32 logits.
  const size_t nc = static_cast<size_t>(B) * T * shape.n_embd;
  const size_t elements = shape.n_layer * 14 * nc + nc + 3 * nc + 4 * nc;
  const size_t dlogits = static_cast<size_t>(B) * T * shape.padded_vocab;
  EXPECT_EQ(f.activation_bytes() - h.activation_bytes(), 2 * elements - 2 * dlogits);
}

// Three shapes: C 64 keeps the backward scratch apart; C 16 with vocab 256 puts it inside the logits
// (fp32 and bf16 alike), so a scratch tensor overwriting the logits' gradient too early would show;
// C 24 at B 1, T 7 gives layer tensors whose sizes are not multiples of the 256-byte layer stride.
TEST(GptModelBf16, LossAndGradientStayCloseToFp32) {
  struct Case {
    GptShape shape;
    int B, T;
  };
  for (const Case& c :
       {Case{GptShape{2, 4, 64, 32, 256, 320}, 2, 32}, Case{GptShape{2, 2, 16, 32, 256, 256}, 2, 32},
        Case{GptShape{3, 3, 24, 32, 256, 256}, 1, 7}}) {
    const GptShape& shape = c.shape;
    const Pass ref = forward_backward(kF32, shape, c.B, c.T, 5);
    const Pass got = forward_backward(kBf16, shape, c.B, c.T, 5);
    EXPECT_NEAR(got.loss, ref.loss, 1e-3 * ref.loss);
    const double rel = testing::relative_l2(got.grads, ref.grads);
    std::printf("C %d: bf16 activations vs fp32: loss %.6f vs %.6f, gradient relative L2 %.3g\n",
                shape.n_embd, got.loss, ref.loss, rel);
    EXPECT_LT(rel, 2e-2);  // bf16 keeps 8 significant bits: about 2^-9 relative per rounding
    EXPECT_GT(rel, 1e-5);  // and the rounding is real
  }
}

// The backward scratch (and the forward's tmp) lives inside the fp32 logits when it fits: the
// logits are dead once the LM head's backward has read their gradient. Growing the vocabulary from
// 256 to 1024 at C 64 crosses that line, so the buffer grows by the larger logits (and bf16 dlogits)
// less the scratch that moved into them: 40 bytes per N*C with fp32 activations (everything but d_ln,
// which the LM head's backward writes while reading the gradient in the logits), 30 with bf16 (all of it).
TEST(GptModelBf16, BackwardScratchMovesIntoTheLogitsWhenItFits) {
  kernels::cpu::CpuBackend cpu(1);
  const int B = 4, T = 32;
  const size_t N = static_cast<size_t>(B) * T, nc = N * 64;
  for (kernels::DType acts : {kF32, kBf16}) {
    GptModel small, large;
    ASSERT_TRUE(small.init(GptShape{2, 4, 64, 32, 256, 256}, &cpu, B, T, acts).is_ok());
    ASSERT_TRUE(large.init(GptShape{2, 4, 64, 32, 1024, 1024}, &cpu, B, T, acts).is_ok());
    const size_t logits = N * (1024 - 256) * (acts == kF32 ? 4 : 4 + 2);
    const size_t scratch = (acts == kF32 ? 40 : 30) * nc;
    EXPECT_EQ(large.activation_bytes(), small.activation_bytes() + logits - scratch)
        << kernels::dtype_name(acts);
  }
}

// With targets, the logits buffer ends up holding the gradient and then the scratch: copy_logits
// refuses (it needs a forward without targets), and a second backward() needs a new forward.
TEST(GptModelBf16, LogitsAreReadOnlyAfterAForwardWithoutTargets) {
  kernels::cpu::CpuBackend cpu(1);
  GptModel m;
  const GptShape shape{1, 2, 16, 8, 256, 256};
  ASSERT_TRUE(m.init(shape, &cpu, 1, 8, kBf16).is_ok());
  ASSERT_TRUE(m.init_parameters(3).is_ok());
  auto x = random_tokens(8, 256, 1), y = random_tokens(8, 256, 2);
  std::vector<float> row;
  double loss = 0.0;
  ASSERT_TRUE(m.forward(x.data(), nullptr, 1, 8, nullptr).is_ok());
  ASSERT_TRUE(m.copy_logits(0, 7, &row).is_ok());
  ASSERT_TRUE(m.forward(x.data(), y.data(), 1, 8, &loss).is_ok());
  EXPECT_EQ(m.copy_logits(0, 7, &row).code(), StatusCode::kInternal);
  ASSERT_TRUE(m.zero_grad().is_ok());
  ASSERT_TRUE(m.backward().is_ok());
  EXPECT_EQ(m.copy_logits(0, 7, &row).code(), StatusCode::kInternal);
  EXPECT_EQ(m.backward().code(), StatusCode::kInternal);
}

TEST(GptModelBf16, RepeatsBitForBit) {
  const GptShape shape{1, 2, 32, 16, 256, 256};
  const Pass a = forward_backward(kBf16, shape, 2, 16, 9);
  const Pass b = forward_backward(kBf16, shape, 2, 16, 9);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(std::memcmp(a.grads.data(), b.grads.data(), a.grads.size() * sizeof(float)), 0);
}

TEST(GptModelBf16, Learns) {
  const auto [first, last] = testing::overfit_one_batch(kBf16, 60, 5);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace perigee::runtime
