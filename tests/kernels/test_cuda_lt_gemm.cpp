// LtGemm (kernels/cuda/matmul_bf16.cuh) on its own: what cuBLASLt cannot do is refused before any launch,
// with the reason, and leaves D as it was (a bias of another type than D, an accumulated bf16 D, a GELU
// epilogue without its aux matrix, a DGELU epilogue with a bias); the calls it takes give D = A B + bias
// (fp32 D with an fp32 bias, by the epilogue or in a pass of its own, and bf16 D with a bf16 bias) and count
// their launches. Skips without a device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/act.hpp"
#include "kernels/cuda/matmul_bf16.cuh"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using cuda_testing::Array;

constexpr int kM = 16, kN = 24, kK = 32;  // column-major D[m, n] = A[m, k] B[k, n]

class LtGemmTest : public cuda_testing::OpsTest {
 protected:
  void SetUp() override {
    cuda_testing::OpsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(cuda::LtGemm::create(&lt_).is_ok());
    a_ = std::make_unique<Array<uint16_t>>(*gpu_, a_bits());
    b_ = std::make_unique<Array<uint16_t>>(*gpu_, b_bits());
  }
  // D = A B (+ bias, then the epilogue of aux) + beta D on the legacy default stream.
  Status gemm(float beta, Act d, ConstAct bias, cuda::LtAux aux = {}) {
    auto bf16 = [](Array<uint16_t>& x) { return reinterpret_cast<const __nv_bfloat16*>(x.data()); };
    return lt_->gemm(false, false, kM, kN, kK, bf16(*a_), kM, bf16(*b_), kK, beta, d, kM, bias, nullptr, aux);
  }
  // A: a[i + m k] = 1 + (i + k) % 3; B: b[k + K n] = 1 + (k + n) % 2; small integers, exact in bf16, and
  // every product sum (at most 32 x 3 x 2) exact in fp32 and in bf16 below 256.
  static std::vector<uint16_t> a_bits() {
    std::vector<uint16_t> a(kM * kK);
    for (int k = 0; k < kK; ++k) {
      for (int i = 0; i < kM; ++i) a[i + kM * k] = float_to_bf16(1.0f + static_cast<float>((i + k) % 3));
    }
    return a;
  }
  static std::vector<uint16_t> b_bits() {
    std::vector<uint16_t> b(kK * kN);
    for (int n = 0; n < kN; ++n) {
      for (int k = 0; k < kK; ++k) b[k + kK * n] = float_to_bf16(1.0f + static_cast<float>((k + n) % 2));
    }
    return b;
  }
  static float expected(int i, int n, float bias) {
    float sum = 0.0f;
    for (int k = 0; k < kK; ++k)
      sum += (1.0f + static_cast<float>((i + k) % 3)) * (1.0f + static_cast<float>((k + n) % 2));
    return sum + bias;
  }
  static float bias_of(int i) { return static_cast<float>(i % 5) - 2.0f; }

  std::unique_ptr<cuda::LtGemm> lt_;
  std::unique_ptr<Array<uint16_t>> a_, b_;
};

TEST_F(LtGemmTest, RefusesWhatCublasLtCannotDoBeforeAnyLaunch) {
  Array<uint16_t> d16(*gpu_, std::vector<uint16_t>(kM * kN, float_to_bf16(7.0f)));
  Array<float> d32(*gpu_, std::vector<float>(kM * kN, 7.0f));
  Array<uint16_t> bias16(*gpu_, std::vector<uint16_t>(kM, float_to_bf16(1.0f)));
  Array<float> bias32(*gpu_, std::vector<float>(kM, 1.0f));
  Array<uint16_t> aux(*gpu_, kM * kN);
  const Act D16(d16.data(), DType::kBF16), D32(d32.data(), DType::kF32);
  const ConstAct B16(bias16.data(), DType::kBF16), B32(bias32.data(), DType::kF32);
  struct Case {
    const char* what;
    Status status;
    const char* says;
  };
  const Case cases[] = {
      {"fp32 bias, bf16 D", gemm(0.0f, D16, B32), "the bias is fp32 but D is bf16"},
      {"bf16 bias, fp32 D", gemm(0.0f, D32, B16), "the bias is bf16 but D is fp32"},
      {"accumulated bf16 D", gemm(1.0f, D16, ConstAct{}), "beta must be 0"},
      {"GELU without aux", gemm(0.0f, D16, B16, {cuda::LtEpilogue::kGeluAux, nullptr}),
       "needs its aux matrix"},
      {"accumulated GELU", gemm(1.0f, D32, B32, {cuda::LtEpilogue::kGeluAux, aux.data()}), "beta 0"},
      {"DGELU with a bias", gemm(0.0f, D16, B16, {cuda::LtEpilogue::kDGelu, aux.data()}), "takes no bias"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), StatusCode::kInvalidArgument) << c.what << ": " << c.status.message();
    EXPECT_NE(c.status.message().find(c.says), std::string::npos) << c.what << ": " << c.status.message();
  }
  EXPECT_EQ(lt_->counts().launches, 0u);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (uint16_t v : d16.download()) ASSERT_EQ(v, float_to_bf16(7.0f));
  for (float v : d32.download()) ASSERT_EQ(v, 7.0f);
}

TEST_F(LtGemmTest, BiasOfDsTypeIsAddedOnEveryColumn) {
  std::vector<float> bias(kM);
  std::vector<uint16_t> bias_bits(kM);
  for (int i = 0; i < kM; ++i) {
    bias[i] = bias_of(i);
    bias_bits[i] = float_to_bf16(bias[i]);
  }
  Array<float> bias32(*gpu_, bias), d32(*gpu_, std::vector<float>(kM * kN, 7.0f));
  Array<uint16_t> bias16(*gpu_, bias_bits), d16(*gpu_, kM * kN);
  ASSERT_TRUE(gemm(0.0f, Act(d32.data(), DType::kF32), ConstAct(bias32.data(), DType::kF32)).is_ok());
  const cuda::LtGemm::Counts after_fp32 = lt_->counts();
  const Status s16 = gemm(0.0f, Act(d16.data(), DType::kBF16), ConstAct(bias16.data(), DType::kBF16));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The fp32 D ran as one cuBLASLt launch with the bias epilogue, or as a GEMM and a bias pass.
  EXPECT_EQ(after_fp32.launches, 1u);
  const std::vector<float> got32 = d32.download();
  for (int n = 0; n < kN; ++n) {
    for (int i = 0; i < kM; ++i) ASSERT_EQ(got32[i + kM * n], expected(i, n, bias[i])) << i << ", " << n;
  }
  // The bias in a pass of its own (as where cuBLASLt has no bias epilogue): the same values.
  lt_->set_bias_epilogue(false);
  Array<float> apart(*gpu_, std::vector<float>(kM * kN, 7.0f));
  const uint64_t bias_apart = lt_->counts().bias_apart;
  ASSERT_TRUE(gemm(0.0f, Act(apart.data(), DType::kF32), ConstAct(bias32.data(), DType::kF32)).is_ok());
  lt_->set_bias_epilogue(true);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(lt_->counts().bias_apart, bias_apart + 1);
  EXPECT_EQ(apart.download(), got32);
  // A bf16 D: kUnavailable only where cuBLASLt has no algorithm (nothing written), else exact.
  if (s16.code() == StatusCode::kUnavailable) {
    GTEST_SKIP() << "cuBLASLt writes no bf16 D with a bias here: " << s16.message();
  }
  ASSERT_TRUE(s16.is_ok()) << s16.message();
  EXPECT_EQ(lt_->counts().bf16_d, after_fp32.bf16_d + 1);
  const std::vector<uint16_t> got16 = d16.download();
  for (int n = 0; n < kN; ++n) {
    for (int i = 0; i < kM; ++i) {
      ASSERT_EQ(got16[i + kM * n], float_to_bf16(expected(i, n, bias[i]))) << i << ", " << n;
    }
  }
}

}  // namespace
}  // namespace perigee::kernels
