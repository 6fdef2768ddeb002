// bf16 activation storage on the CPU backend (the reference for the CUDA kernels): every Act op obeys
// the storage rule of act_rule_util.hpp for every fp32/bf16 combination, and bf16 outputs hold the
// rounded fp32 results (so the rule is not vacuous: the bf16 run really stores fewer bits).
#include <gtest/gtest.h>

#include <vector>

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
