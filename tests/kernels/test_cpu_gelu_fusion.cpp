// The fused MLP ops on the CPU backend (which does not fuse: Backend's default forms run): the fused
// calls give exactly what the separate ops give, for fp32 and bf16 storage, although the backward runs
// GELU's backward in place in dpre; and both are close to a double-precision reference (so the
// equality is not between two wrong answers).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/profiling_backend.hpp"
#include "tests/kernels/gelu_fusion_util.hpp"

namespace perigee::kernels {
namespace {

using testing::GeluFusionCase;
using testing::GeluFusionInputs;

TEST(CpuGeluFusion, TheCpuDoesNotFuse) {
  cpu::CpuBackend be(1);
  EXPECT_FALSE(be.fuses_gelu());
}

TEST(CpuGeluFusion, FusedForwardIsMatmulThenGeluBitForBit) {
  cpu::CpuBackend be(2);
  for (DType type : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(type));
    const GeluFusionCase c{37, 48, 80, type};
    const GeluFusionInputs in(c);
    const auto fused = testing::run_forward(be, c, in, true);
    const auto apart = testing::run_forward(be, c, in, false);
    EXPECT_EQ(fused.pre, apart.pre);
    EXPECT_EQ(fused.out, apart.out);
    const auto ref = testing::forward_reference(c, in);
    const double rtol = type == DType::kF32 ? 1e-5 : 1e-2;  // bf16: one rounding of pre, one of out
    testing::expect_within("pre", fused.pre, ref.pre, 1e-5, rtol);
    testing::expect_within("out", fused.out, ref.out, 1e-5 + (type == DType::kF32 ? 0.0 : 1e-2), rtol);
  }
}

TEST(CpuGeluFusion, FusedBackwardIsMatmulBackwardThenGeluBackwardBitForBit) {
  cpu::CpuBackend be(2);
  for (DType type : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(type));
    const GeluFusionCase c{37, 48, 80, type};
    const GeluFusionInputs in(c);
    const auto fused = testing::run_backward(be, c, in, true);
    const auto apart = testing::run_backward(be, c, in, false);
    EXPECT_EQ(fused.dpre, apart.dpre);
    EXPECT_EQ(fused.dweight, apart.dweight);
    EXPECT_EQ(fused.dbias, apart.dbias);
    const auto ref = testing::backward_reference(c, in);
    const double rtol = type == DType::kF32 ? 1e-5 : 2e-2;  // bf16: dinp and dpre each rounded once
    testing::expect_within("dpre", fused.dpre, ref.dpre, 1e-5, rtol);
    testing::expect_within("dweight", fused.dweight, ref.dweight, 1e-5, 1e-5);  // fp32, accumulated
    testing::expect_within("dbias", fused.dbias, ref.dbias, 1e-5, 1e-5);
  }
}

// Only the parameter gradients: dpre null skips the GELU part.
TEST(CpuGeluFusion, BackwardWithoutDpreAccumulatesTheParameterGradientsOnly) {
  cpu::CpuBackend be(1);
  const GeluFusionCase c{8, 16, 24, DType::kF32};
  const GeluFusionInputs in(c);
  testing::TypedBuffer dout(be, in.dout, DType::kF32), g_inp(be, in.g_inp, DType::kF32);
  testing::TypedBuffer g_pre(be, in.g_pre, DType::kF32), weight(be, in.g_weight, DType::kF32);
  testing::TypedBuffer grads(be, in.start, DType::kF32);
  float* dweight = grads.f32();
  ASSERT_TRUE(be.matmul_backward_gelu(nullptr, dweight, dweight + c.OC * c.C, dout.f32(), g_inp.act(),
                                      weight.f32(), g_pre.act(), c.N, c.C, c.OC)
                  .is_ok());
  const auto ref = testing::backward_reference(c, in);
  const std::vector<float> g = grads.read();
  testing::expect_within("dweight", std::vector<float>(g.begin(), g.begin() + c.OC * c.C), ref.dweight, 1e-5,
                         1e-5);
}

// A backend that does not fuse is profiled op by op (the breakdown keeps matmul and GELU apart).
TEST(CpuGeluFusion, ProfilingTimesTheSeparateOpsWhenTheInnerBackendDoesNotFuse) {
  cpu::CpuBackend cpu(1);
  ProfilingBackend be(&cpu);
  EXPECT_FALSE(be.fuses_gelu());
  EXPECT_EQ(testing::profiled_mlp_ops(be, GeluFusionCase{8, 16, 24, DType::kF32}),
            (std::set<std::string>{"gelu_backward", "gelu_forward", "matmul_backward", "matmul_forward"}));
}

}  // namespace
}  // namespace perigee::kernels
