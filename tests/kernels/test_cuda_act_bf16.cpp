// bf16 activation storage on the CUDA backend: every Act op, in fp32 precision (the ActCast fallback)
// and in bf16 precision (the native kernels: LayerNorm, GELU, cross-entropy and attention storing bf16,
// GELU reading bf16, the attention backward reading a bf16 `out`, GEMMs reading bf16 operands in place
// and writing bf16 D), obeys the storage rule of act_rule_util.hpp bit for bit for every fp32/bf16
// combination, except that a bf16 GEMM output may be one bf16 step off (another cuBLASLt algorithm).
// Skips without a device.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>

#include "kernels/cuda/cuda_backend_factory.hpp"
#include "tests/kernels/act_rule_util.hpp"
#include "tests/kernels/crossentropy_in_place_util.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/gelu_alias_util.hpp"
#include "tests/kernels/matmul_alias_util.hpp"

namespace perigee::kernels {
namespace {

class CudaActBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& b = cuda_testing::backends();
    if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
    ASSERT_TRUE(b.error.is_ok()) << b.error.message();
  }
};

TEST_F(CudaActBf16, Fp32PrecisionFollowsTheStorageRule) {
  Backend& be = *cuda_testing::backends().gpu;
  for (const auto& op : testing::act_op_specs(be)) {
    SCOPED_TRACE(op.name);
    testing::expect_act_rule(be, op);
  }
}

// The rule alone passes whether a bf16 GEMM output came from cuBLASLt's bf16 D or from the ActCast
// fallback (an fp32 GEMM, then one rounding): the launch counts say which ran. expect_act_rule runs
// every non-empty fp32/bf16 combination of the op's k Act tensors (2^k - 1), each with an all-fp32
// reference, so 2 (2^k - 1) calls; the output (out, dinp) is bf16 in 2^(k-1) of them. Each call is one
// cuBLASLt launch forward (the bias in the epilogue) and two backward (dinp, dweight; dbias is a column
// sum). Where cuBLASLt has a bf16-D algorithm for the spec's shape (N 6, C 32, OC 24), every bf16
// output is a bf16-D launch and nothing falls back; where it has none (a printed note), each bf16
// output must have gone through ActCast instead. Catches a native path that silently fell back (a
// dropped plan, an operand check that fails) and a refused launch.
TEST_F(CudaActBf16, Bf16PrecisionFollowsTheStorageRule) {
  Backend& be = *cuda_testing::backends().gpu_bf16;
  for (auto op : testing::act_op_specs(be)) {
    SCOPED_TRACE(op.name);
    const bool forward = op.name == "matmul_forward", backward = op.name == "matmul_backward";
    // A GEMM writing bf16 D is another cuBLASLt plan than the fp32-D reference: its algorithm may sum
    // in another order, so its fp32 result may differ in the last bits before the one rounding.
    if (forward || backward) op.bf16_output_ulps = 1;
    // A bf16 out adds the bias rounded to bf16 (cuBLASLt takes a bias of D's type; the ActCast path
    // rounds it too): the rule's reference rounds it, and the biases here are not bf16-exact.
    if (forward) {
      ASSERT_TRUE(op.tensors[3].name == "bias" && op.tensors[3].rounded_with_bf16_output);
    }
    cuda::LtLaunchCounts before, after;
    uint64_t cast_before = 0, cast_after = 0;
    ASSERT_TRUE(cuda::lt_launch_counts(be, &before).is_ok());
    ASSERT_TRUE(cuda::act_cast_fallbacks(be, &cast_before).is_ok());
    testing::expect_act_rule(be, op);
    ASSERT_TRUE(cuda::lt_launch_counts(be, &after).is_ok());
    ASSERT_TRUE(cuda::act_cast_fallbacks(be, &cast_after).is_ok());
    if (!forward && !backward) continue;
    ASSERT_EQ(op.name.rfind("matmul_", 0), 0u);
    constexpr int N = 6, C = 32, OC = 24;  // act_op_specs' GEMM shape
    int acts = 0;
    for (const auto& t : op.tensors) acts += t.act ? 1 : 0;
    const uint64_t calls = 2 * ((uint64_t{1} << acts) - 1), bf16_outputs = uint64_t{1} << (acts - 1);
    bool native = false;
    if (forward) {
      ASSERT_TRUE(cuda::writes_bf16_gemm_outputs(be, N, C, OC, true, &native).is_ok());
    } else {
      ASSERT_TRUE(cuda::writes_bf16_input_gradients(be, N, C, OC, &native).is_ok());
    }
    EXPECT_EQ(after.refused_at_launch, before.refused_at_launch) << "cuBLASLt refused a launch";
    EXPECT_EQ(after.launches - before.launches, calls * (forward ? 1 : 2));
    if (native) {
      EXPECT_EQ(after.bf16_d - before.bf16_d, bf16_outputs)
          << "bf16 outputs not written as a cuBLASLt bf16 D";
      EXPECT_EQ(cast_after - cast_before, 0u) << "calls that took the ActCast fallback";
    } else {
      std::printf(
          "note: cuBLASLt has no bf16-D algorithm for %s (N %d, C %d, OC %d): the bf16 outputs go "
          "through ActCast, the native path is not tested here\n",
          op.name.c_str(), N, C, OC);
      EXPECT_EQ(after.bf16_d, before.bf16_d);
      EXPECT_EQ(cast_after - cast_before, bf16_outputs);
    }
  }
}

// The native kernel ([device] logits = "bf16") in both precisions, through its float4 columns and its
// scalar tail (Vp % 4 != 0, the store path no other GPU test runs).
TEST_F(CudaActBf16, CrossEntropyOverwritesBf16LogitsInPlace) {
  testing::expect_crossentropy_in_place(*cuda_testing::backends().gpu);
  testing::expect_crossentropy_in_place(*cuda_testing::backends().gpu_bf16);
}

// The native GELU kernels would race there: those calls go through fp32 scratch.
TEST_F(CudaActBf16, GeluOutputOverAnInputOfTheOtherType) {
  testing::expect_gelu_mixed_alias(*cuda_testing::backends().gpu);
  testing::expect_gelu_mixed_alias(*cuda_testing::backends().gpu_bf16);
}

// Every precision and the fused GELU epilogues (which write pre and out in one pass) refuse them alike.
TEST_F(CudaActBf16, MatmulOutputsOverlappingTheirInputsAreRefused) {
  testing::expect_matmul_overlaps_refused(*cuda_testing::backends().gpu);
  Backend& bf16 = *cuda_testing::backends().gpu_bf16;
  testing::expect_matmul_overlaps_refused(bf16);
  ASSERT_TRUE(cuda::set_gelu_fusion(bf16, true).is_ok());
  testing::expect_matmul_overlaps_refused(bf16);
  EXPECT_TRUE(cuda::set_gelu_fusion(bf16, false).is_ok());
}

// The bf16 activations' speed rests on cuBLASLt writing bf16 D for the GEMMs whose outputs are stored
// as bf16 (GPT-2 124M at B 16, T 1024: qkv and the FC layer with their bias (rounded to bf16), a GEMM without
// a bias, and the FC projection's input gradient); where it cannot, the result is still right (an fp32 GEMM,
// then one rounding pass) but slower, and this test says which shape fell back.
TEST_F(CudaActBf16, CublasLtWritesBf16ForTheGpt2Gemms) {
  Backend& be = *cuda_testing::backends().gpu_bf16;
  constexpr int N = 16 * 1024, C = 768;
  struct Shape {
    const char* what;
    int n, c, oc;
    bool bias;
  };
  for (const Shape& s : {Shape{"qkv (c_attn), with bias", N, C, 3 * C, true},
                         Shape{"c_fc, with bias", N, C, 4 * C, true}, Shape{"no bias", N, C, 4 * C, false}}) {
    bool yes = false;
    ASSERT_TRUE(cuda::writes_bf16_gemm_outputs(be, s.n, s.c, s.oc, s.bias, &yes).is_ok());
    EXPECT_TRUE(yes) << "cuBLASLt has no algorithm writing bf16 D for " << s.what << " (N=" << s.n
                     << ", C=" << s.c << ", OC=" << s.oc << "): matmul falls back to fp32 then rounding";
  }
  // The FC projection's input gradient (c_proj backward: dinp [N, 4C] from dout [N, C]).
  bool yes = false;
  ASSERT_TRUE(cuda::writes_bf16_input_gradients(be, N, 4 * C, C, &yes).is_ok());
  EXPECT_TRUE(yes) << "cuBLASLt has no algorithm writing the bf16 dinp of c_proj (N=" << N << ", " << 4 * C
                   << " <- " << C << "): matmul_backward falls back to fp32 then rounding";
  EXPECT_EQ(cuda::writes_bf16_input_gradients(*cuda_testing::backends().gpu, N, C, C, &yes).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::writes_bf16_gemm_outputs(*cuda_testing::backends().gpu, N, C, C, true, &yes).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::kernels
