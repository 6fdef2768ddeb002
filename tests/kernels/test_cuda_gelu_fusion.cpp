// GELU in the cuBLASLt epilogues (CudaBackend, bf16 precision, gelu_fusion on): matmul_gelu_forward
// (GELU_AUX_BIAS) and matmul_backward_gelu (DGELU on the dinp GEMM) against a double-precision
// reference and against the same backend's unfused ops, for fp32 and bf16 storage; the parameter
// gradients are the unfused ones bit for bit (the same GEMM and bias-gradient kernels); cuBLASLt's
// algorithms for the GPT-2 124M shapes; the profiler times the fused ops as one. Skips without a device.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/profiling_backend.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/gelu_fusion_util.hpp"

namespace perigee::kernels {
namespace {

using testing::GeluFusionCase;
using testing::GeluFusionInputs;

class CudaGeluFusion : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& b = cuda_testing::backends();
    if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
    ASSERT_TRUE(b.error.is_ok()) << b.error.message();
    be_ = b.gpu_bf16.get();
    ASSERT_TRUE(cuda::set_gelu_fusion(*be_, true).is_ok());
  }
  void TearDown() override {
    if (be_ != nullptr) {
      EXPECT_TRUE(cuda::set_gelu_fusion(*be_, false).is_ok());
    }
  }
  // Runs `f` with the epilogues off (the separate ops), then turns them back on.
  template <typename F>
  auto unfused(F&& f) {
    EXPECT_TRUE(cuda::set_gelu_fusion(*be_, false).is_ok());
    auto r = f();
    EXPECT_TRUE(cuda::set_gelu_fusion(*be_, true).is_ok());
    return r;
  }
  // cuBLASLt launches with the GELU_AUX_BIAS and DGELU epilogues so far.
  std::pair<uint64_t, uint64_t> epilogue_launches() const {
    cuda::LtLaunchCounts n;
    EXPECT_TRUE(cuda::lt_launch_counts(*be_, &n).is_ok());
    EXPECT_EQ(n.refused_at_launch, 0u) << "cuBLASLt refused a launch its plan-time checks accepted";
    return {n.gelu_aux, n.dgelu};
  }
  Backend* be_ = nullptr;
};

TEST_F(CudaGeluFusion, OnlyBf16PrecisionFuses) {
  EXPECT_TRUE(be_->fuses_gelu());
  Backend& fp32 = *cuda_testing::backends().gpu;
  ASSERT_TRUE(cuda::set_gelu_fusion(fp32, true).is_ok());
  EXPECT_FALSE(fp32.fuses_gelu());  // the epilogues are bf16 tensor-core GEMMs
  ASSERT_TRUE(cuda::set_gelu_fusion(fp32, false).is_ok());
  EXPECT_EQ(cuda::set_gelu_fusion(*cuda_testing::backends().cpu, true).code(), StatusCode::kInvalidArgument);
}

// The GPT-2 124M shapes at B 16, T 1024: c_fc (768 -> 3072, fp32 bias) forward and c_proj's input
// gradient (3072 <- 768). Where cuBLASLt has no algorithm the unfused ops run (right, but unfused):
// this test names the shape.
TEST_F(CudaGeluFusion, CublasLtHasTheEpiloguesForTheGpt2Shapes) {
  constexpr int N = 16 * 1024, C = 768;
  for (DType type : {DType::kBF16, DType::kF32}) {
    bool fwd = false, bwd = false;
    ASSERT_TRUE(cuda::fuses_gelu_gemms(*be_, N, C, 4 * C, type, &fwd, &bwd).is_ok());
    EXPECT_TRUE(fwd) << "no GELU_AUX_BIAS algorithm for c_fc (N=" << N << ", " << C << " -> " << 4 * C
                     << "), " << dtype_name(type) << " storage";
    ASSERT_TRUE(cuda::fuses_gelu_gemms(*be_, N, 4 * C, C, type, &fwd, &bwd).is_ok());
    EXPECT_TRUE(bwd) << "no DGELU algorithm for c_proj's input gradient (N=" << N << ", " << 4 * C << " <- "
                     << C << "), " << dtype_name(type) << " storage";
  }
  bool fwd = false, bwd = false;
  EXPECT_EQ(
      cuda::fuses_gelu_gemms(*cuda_testing::backends().gpu, N, C, 4 * C, DType::kBF16, &fwd, &bwd).code(),
      StatusCode::kInvalidArgument);
}

// Tolerances: bf16 operands are exact (bf16_exact_values), so the GPU differs from the double reference
// by fp32 accumulation, GELU's evaluation (cuBLASLt may use an approximate tanh: 1e-3 relative allowed)
// and the outputs' rounding: bf16 storage two bf16 steps more (2^-7 relative), four in the backward
// (the unfused path rounds dinp before multiplying by gelu').
TEST_F(CudaGeluFusion, ForwardMatchesTheReferenceAndTheUnfusedOps) {
  for (DType type : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(type));
    const GeluFusionCase c{96, 64, 256, type};
    bool fwd = false, bwd = false;  // else "fused" would silently be the unfused ops again
    ASSERT_TRUE(cuda::fuses_gelu_gemms(*be_, 96, 64, 256, type, &fwd, &bwd).is_ok());
    ASSERT_TRUE(fwd) << "no GELU_AUX_BIAS algorithm for this test's shape";
    const GeluFusionInputs in(c);
    const auto before = epilogue_launches();
    const auto fused = testing::run_forward(*be_, c, in, true);
    EXPECT_EQ(epilogue_launches().first, before.first + 1) << "matmul_gelu_forward did not run fused";
    const auto apart = unfused([&] { return testing::run_forward(*be_, c, in, false); });
    EXPECT_EQ(epilogue_launches().first, before.first + 1) << "the unfused ops used the epilogue";
    const auto ref = testing::forward_reference(c, in);
    const bool f32 = type == DType::kF32;
    const double atol = f32 ? 1e-3 : 4e-3, rtol = f32 ? 1e-3 : 1e-3 + 2.0 / 256;
    testing::expect_within("fused pre", fused.pre, ref.pre, atol, rtol);
    testing::expect_within("fused out", fused.out, ref.out, atol, rtol);
    testing::expect_within("unfused out", apart.out, ref.out, atol, rtol);
    testing::expect_within("fused vs unfused out", fused.out, apart.out, atol, rtol);
  }
}

TEST_F(CudaGeluFusion, BackwardMatchesTheReferenceAndKeepsTheParameterGradients) {
  for (DType type : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(type));
    const GeluFusionCase c{96, 256, 64, type};  // c_proj-like: 4x wider input
    bool fwd = false, bwd = false;
    ASSERT_TRUE(cuda::fuses_gelu_gemms(*be_, 96, 256, 64, type, &fwd, &bwd).is_ok());
    ASSERT_TRUE(bwd) << "no DGELU algorithm for this test's shape";
    const GeluFusionInputs in(c);
    const auto before = epilogue_launches();
    const auto fused = testing::run_backward(*be_, c, in, true);
    EXPECT_EQ(epilogue_launches().second, before.second + 1) << "matmul_backward_gelu did not run fused";
    const auto apart = unfused([&] { return testing::run_backward(*be_, c, in, false); });
    EXPECT_EQ(epilogue_launches().second, before.second + 1) << "the unfused ops used the epilogue";
    const auto ref = testing::backward_reference(c, in);
    const bool f32 = type == DType::kF32;
    // The unfused bf16 path rounds dinp before multiplying by gelu': one more rounding than fused.
    const double atol = f32 ? 1e-3 : 4e-3, rtol = f32 ? 1e-3 : 1e-3 + 4.0 / 256;
    testing::expect_within("fused dpre", fused.dpre, ref.dpre, atol, rtol);
    testing::expect_within("unfused dpre", apart.dpre, ref.dpre, atol, rtol);
    EXPECT_TRUE(cuda_testing::bit_identical(fused.dweight, apart.dweight));
    EXPECT_TRUE(cuda_testing::bit_identical(fused.dbias, apart.dbias));
    testing::expect_within("dweight", fused.dweight, ref.dweight, 1e-4, 1e-3);
    testing::expect_within("dbias", fused.dbias, ref.dbias, 1e-4, 1e-5);
  }
}

TEST_F(CudaGeluFusion, RepeatsBitForBit) {
  const GeluFusionCase c{96, 64, 256, DType::kBF16};
  const GeluFusionInputs in(c);
  EXPECT_EQ(testing::run_forward(*be_, c, in, true).out, testing::run_forward(*be_, c, in, true).out);
  EXPECT_EQ(testing::run_backward(*be_, c, in, true).dpre, testing::run_backward(*be_, c, in, true).dpre);
}

TEST_F(CudaGeluFusion, ProfilingTimesTheFusedOpsAsOne) {
  ProfilingBackend prof(be_);
  ASSERT_TRUE(prof.fuses_gelu());
  EXPECT_EQ(testing::profiled_mlp_ops(prof, GeluFusionCase{32, 64, 256, DType::kBF16}),
            (std::set<std::string>{"matmul_backward_gelu", "matmul_gelu_forward"}));
}

}  // namespace
}  // namespace perigee::kernels
