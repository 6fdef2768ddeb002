// bf16 activation storage on the CUDA backend: every Act op, in fp32 precision (the ActCast fallback)
// and in bf16 precision (the native kernels: LayerNorm, GELU, cross-entropy and attention storing bf16,
// GELU reading bf16, the attention backward reading a bf16 `out`, GEMMs reading bf16 operands in place
// and writing bf16 D), obeys the storage rule of act_rule_util.hpp bit for bit for every fp32/bf16
// combination, except that a bf16 GEMM output may be one bf16 step off (another cuBLASLt algorithm).
// Skips without a device.
#include <gtest/gtest.h>

#include "kernels/cuda/cuda_backend_factory.hpp"
#include "tests/kernels/act_rule_util.hpp"
#include "tests/kernels/crossentropy_in_place_util.hpp"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/gelu_alias_util.hpp"

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

TEST_F(CudaActBf16, Bf16PrecisionFollowsTheStorageRule) {
  Backend& be = *cuda_testing::backends().gpu_bf16;
  for (auto op : testing::act_op_specs(be)) {
    SCOPED_TRACE(op.name);
    // A GEMM writing bf16 D is another cuBLASLt plan than the fp32-D reference: its algorithm may sum
    // in another order, so its fp32 result may differ in the last bits before the one rounding.
    if (op.name.rfind("matmul_", 0) == 0) op.bf16_output_ulps = 1;
    testing::expect_act_rule(be, op);
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

// The bf16 activations' speed rests on cuBLASLt writing bf16 D for the GEMMs whose outputs are stored
// as bf16 (GPT-2 124M at B 16, T 1024: qkv and the FC layer with their fp32 bias, a GEMM without a
// bias, and the FC projection's input gradient); where it cannot, the result is still right (an fp32 GEMM,
// then one rounding pass) but slower, and this test says which shape fell back.
TEST_F(CudaActBf16, CublasLtWritesBf16ForTheGpt2Gemms) {
  Backend& be = *cuda_testing::backends().gpu_bf16;
  constexpr int N = 16 * 1024, C = 768;
  struct Shape {
    const char* what;
    int n, c, oc;
    bool bias;
  };
  for (const Shape& s : {Shape{"qkv (c_attn), fp32 bias", N, C, 3 * C, true},
                         Shape{"c_fc, fp32 bias", N, C, 4 * C, true}, Shape{"no bias", N, C, 4 * C, false}}) {
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
