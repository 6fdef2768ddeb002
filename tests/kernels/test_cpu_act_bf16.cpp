// bf16 activation storage on the CPU backend (the reference for the CUDA kernels): every Act op obeys
// the storage rule of act_rule_util.hpp for every fp32/bf16 combination, and bf16 outputs hold the
// rounded fp32 results (so the rule is not vacuous: the bf16 run really stores fewer bits).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "tests/kernels/act_rule_util.hpp"
#include "tests/kernels/crossentropy_in_place_util.hpp"
#include "tests/kernels/gelu_alias_util.hpp"
#include "tests/kernels/matmul_alias_util.hpp"

namespace perigee::kernels {
namespace {

TEST(CpuActBf16, EveryOpFollowsTheStorageRule) {
  cpu::CpuBackend be(2);
  for (const auto& op : testing::act_op_specs(be)) {
    SCOPED_TRACE(op.name);
    testing::expect_act_rule(be, op);
  }
}

TEST(CpuActBf16, CrossEntropyOverwritesBf16LogitsInPlace) {
  cpu::CpuBackend be(2);
  testing::expect_crossentropy_in_place(be);
}

// The CPU cross-entropy with bf16 logits or gradient works a row at a time (no [N, Vp] fp32 copies): at
// a size that runs in parallel, every storage combination gives the fp32 op's bits on the widened
// logits, its gradient rounded once, for any thread count.
TEST(CpuActBf16, CrossEntropyRowsGiveTheWidenedFp32BitsInParallel) {
  constexpr int N = 40, V = 1000, Vp = 1024;
  const size_t n = static_cast<size_t>(N) * Vp;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-6.0f, 6.0f);
  std::vector<uint16_t> bits(n);
  for (auto& b : bits) b = float_to_bf16(u(rng));
  std::vector<float> wide(n);
  for (size_t i = 0; i < n; ++i) wide[i] = bf16_to_float(bits[i]);
  std::vector<int32_t> targets(N);
  for (int i = 0; i < N; ++i) targets[i] = (i * 37) % V;
  cpu::CpuBackend ref(1);
  std::vector<float> want_loss(N), want_d(n);
  ASSERT_TRUE(ref.crossentropy_forward_backward(want_loss.data(), want_d.data(), wide.data(), targets.data(),
                                                1.0f / N, N, V, Vp)
                  .is_ok());
  for (int threads : {1, 3}) {
    cpu::CpuBackend be(threads);
    for (auto [logits_bf16, d_bf16] :
         {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
      SCOPED_TRACE(::testing::Message() << threads << " threads, logits " << (logits_bf16 ? "bf16" : "fp32")
                                        << ", dlogits " << (d_bf16 ? "bf16" : "fp32"));
      std::vector<float> loss(N), d32(n);
      std::vector<uint16_t> d16(n);
      const ConstAct in = logits_bf16 ? ConstAct(bits.data()) : ConstAct(wide.data());
      const Act out = d_bf16 ? Act(d16.data()) : Act(d32.data());
      ASSERT_TRUE(
          be.crossentropy_forward_backward(loss.data(), out, in, targets.data(), 1.0f / N, N, V, Vp).is_ok());
      EXPECT_EQ(std::memcmp(loss.data(), want_loss.data(), N * sizeof(float)), 0);
      size_t differ = 0;
      for (size_t i = 0; i < n; ++i)
        differ += d_bf16 ? d16[i] != float_to_bf16(want_d[i]) : d32[i] != want_d[i];
      EXPECT_EQ(differ, 0u);
    }
  }
}

TEST(CpuActBf16, GeluOutputOverAnInputOfTheOtherType) {
  cpu::CpuBackend be(2);
  testing::expect_gelu_mixed_alias(be);
}

TEST(CpuActBf16, MatmulOutputsOverlappingTheirInputsAreRefused) {
  cpu::CpuBackend be(2);
  testing::expect_matmul_overlaps_refused(be);
}

TEST(CpuActBf16, Bf16OutputIsTheRoundedFp32Output) {
  cpu::CpuBackend be(2);
  const size_t n = 257;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 0.01f * static_cast<float>(i) - 1.3f;
  void *inp = nullptr, *out32 = nullptr, *out16 = nullptr;
  ASSERT_TRUE(be.allocate(&inp, n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.allocate(&out32, n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.allocate(&out16, n * sizeof(uint16_t)).is_ok());
  ASSERT_TRUE(be.copy_to_device(inp, x.data(), n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.gelu_forward(static_cast<float*>(out32), static_cast<const float*>(inp), n).is_ok());
  ASSERT_TRUE(be.gelu_forward(static_cast<uint16_t*>(out16), static_cast<const float*>(inp), n).is_ok());
  std::vector<float> f(n);
  std::vector<uint16_t> h(n);
  ASSERT_TRUE(be.copy_to_host(f.data(), out32, n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.copy_to_host(h.data(), out16, n * sizeof(uint16_t)).is_ok());
  size_t inexact = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i], float_to_bf16(f[i])) << i;
    inexact += bf16_to_float(h[i]) != f[i];
  }
  EXPECT_GT(inexact, n / 2);  // most GELU values need more than 8 mantissa bits
  for (void* p : {inp, out32, out16}) be.release(p);
}

TEST(CpuActBf16, NullBf16TensorsAreRejected) {
  cpu::CpuBackend be(1);
  void* inp = nullptr;
  ASSERT_TRUE(be.allocate(&inp, 16 * sizeof(float)).is_ok());
  const Status s = be.gelu_forward(Act(nullptr, DType::kBF16), static_cast<const float*>(inp), 16);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("gelu_forward"), std::string::npos) << s.message();
  be.release(inp);
}

}  // namespace
}  // namespace perigee::kernels
