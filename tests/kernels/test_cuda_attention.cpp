// The fp32 CUDA attention (kernels/cuda/attention.cu) against the CPU reference backend: out and dqkv for
// head sizes 6 to 128 (padded to the compiled widths 32, 64, 128) and T = 1 to 130 (partial last tiles),
// determinism and the written (not accumulated) dqkv; the 32-row kernels that GPUs with less shared memory
// per block than sm_90 run, chosen on the test device by lowering the backend's limit (the backend's launch
// counters say which tiles each pass ran); the tile choice and
// byte counts for the sm_90/80/86/75 limits (host arithmetic: runs without a device); bad arguments. The
// bf16 tensor-core attention: test_cuda_attention_bf16.cpp. Compiled by the C++ compiler: only the Backend
// interface, the factory, the device probe and one cudaDeviceGetAttribute are used. Without a usable CUDA
// device the GPU tests skip.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/attention_tiles.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

class CudaAttention : public OpsTest {
 protected:
  // The fp32 attention passes launched so far, and those that ran 32-row tiles.
  std::pair<uint64_t, uint64_t> passes() {
    cuda::KernelVariantRuns r;
    PERIGEE_CHECK_OR_DIE(cuda::kernel_variant_runs(*gpu_, &r));
    return {r.attention_fp32_passes, r.attention_fp32_32_row_passes};
  }
  // Whether every pass at every width runs 64-row tiles here (a block may have as much shared memory as on
  // sm_90; attention_fp32_rows).
  static bool rows64_everywhere() {
    int optin = 0;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) != cudaSuccess)
      return false;
    return cuda::attention_fp32_rows(cuda::AttentionPass::kBackward, 128, static_cast<size_t>(optin)) == 64;
  }
  // Runs `body` and expects it to launch fp32 attention passes: with 32-row tiles all of them (`rows` 32),
  // none (64), or at the device's own limit (0) none where it allows 64-row tiles at every width and any
  // mix elsewhere.
  template <typename Body>
  void expect_rows(int rows, const std::string& tag, Body body) {
    if (rows == 0 && rows64_everywhere()) rows = 64;
    const auto [passes0, rows0] = passes();
    body();
    const auto [passes1, rows1] = passes();
    EXPECT_GT(passes1, passes0) << tag << ": no fp32 attention pass launched";
    if (rows != 0) {
      EXPECT_EQ(rows1 - rows0, rows == 32 ? passes1 - passes0 : 0) << tag << ": passes with 32-row tiles";
    }
  }
};

struct AttentionResult {
  std::vector<float> out, dqkv;
};

AttentionResult run_attention(Backend& be, int B, int T, int C, int NH, const std::vector<float>& qkv,
                              const std::vector<float>& dout, const std::vector<float>& dqkv0,
                              int backward_calls) {
  Array<float> x(be, qkv), d(be, dout), dx(be, dqkv0);
  Array<float> out(be, static_cast<size_t>(B) * T * C);
  Array<float> att(be, be.attention_state_size(B, T, C, NH));
  PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), x.data(), B, T, C, NH));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(
        be.attention_backward(dx.data(), d.data(), x.data(), out.data(), att.data(), B, T, C, NH));
  }
  return {out.download(), dx.download()};
}

struct AttentionShape {
  int B, T, C, NH;
};

// Out and dqkv of the fp32 CUDA attention against the CPU, determinism and the written dqkv, per shape.
void expect_attention_matches_cpu(Backend& cpu, Backend& gpu, const std::vector<AttentionShape>& shapes,
                                  const std::string& kernels) {
  for (const AttentionShape& s : shapes) {
    const int B = s.B, T = s.T, C = s.C, NH = s.NH;
    const std::string tag =
        kernels + " B=" + std::to_string(B) + " T=" + std::to_string(T) + " hs=" + std::to_string(C / NH);
    const size_t n = static_cast<size_t>(B) * T * C;
    const auto qkv = random_vector(3 * n, 30 + T, -1.5f, 1.5f);
    const auto dout = random_vector(n, 31);
    const auto dqkv0 = random_vector(3 * n, 32);
    const AttentionResult ref = run_attention(cpu, B, T, C, NH, qkv, dout, dqkv0, 1);
    const AttentionResult got = run_attention(gpu, B, T, C, NH, qkv, dout, dqkv0, 1);
    // Scores are fp32 dot products of up to 128 terms in another order, the softmax is online (rescaled
    // per key tile) instead of normalised first: out is a convex combination of O(1) values.
    expect_close("attention out " + tag, got.out, ref.out, 1e-5, 1e-4);
    // Gradients recompute P from the saved log-sum-exp; sums of up to T terms of O(1).
    expect_close("attention dqkv " + tag, got.dqkv, ref.dqkv, 2e-5, 2e-4);
    const AttentionResult again = run_attention(gpu, B, T, C, NH, qkv, dout, dqkv0, 1);
    EXPECT_TRUE(bit_identical(got.out, again.out)) << tag;
    EXPECT_TRUE(bit_identical(got.dqkv, again.dqkv)) << tag;
    // dqkv is written: a second call leaves the same bits.
    const AttentionResult two = run_attention(gpu, B, T, C, NH, qkv, dout, dqkv0, 2);
    EXPECT_TRUE(bit_identical(two.dqkv, got.dqkv)) << tag;
  }
}

TEST_F(CudaAttention, MatchesCpu) {
  // Head sizes 16, 64, 128 and the odd ones 6 and 96 (padded to the compiled widths); T = 1, 7, 64, 100
  // and 130 (one, two and three 64-row tiles, partial last tiles).
  expect_rows(0, "device tiles", [&] {
    expect_attention_matches_cpu(*cpu_, *gpu_,
                                 {{2, 1, 32, 2},
                                  {2, 7, 64, 4},
                                  {1, 64, 128, 2},
                                  {2, 100, 128, 2},
                                  {1, 100, 256, 2},
                                  {1, 70, 36, 6},
                                  {1, 130, 96, 1},
                                  {2, 130, 64, 4}},
                                 "device tiles");
  });
}

// The 32-row kernels that devices with less shared memory per block than sm_90 run (sm_80, sm_86/89), chosen
// here by lowering the backend's limit: to 44,288 bytes (every head width <= 64 passes with 32 rows) and to
// 77,056 (widths 96 and 128); the same checks, T = 32, 33 and 100 adding one-tile, tile-plus-one and
// four-tile cases. A limit fitting no tiles is a clear kUnavailable.
TEST_F(CudaAttention, WithThirtyTwoRowTilesMatchesCpu) {
  {
    ScopedSharedMemoryLimit limit(*gpu_, cuda::attention_fp32_dkv_bytes(64, 32));
    expect_rows(32, "head widths <= 64", [&] {
      expect_attention_matches_cpu(*cpu_, *gpu_,
                                   {{2, 1, 32, 2},
                                    {2, 7, 64, 4},
                                    {1, 32, 64, 1},
                                    {2, 33, 64, 1},
                                    {2, 100, 128, 2},
                                    {1, 70, 36, 6},
                                    {2, 130, 64, 4}},
                                   "32-row tiles");
    });
  }
  {
    ScopedSharedMemoryLimit limit(*gpu_, cuda::attention_fp32_dkv_bytes(128, 32));
    expect_rows(32, "head widths 96 and 128", [&] {
      expect_attention_matches_cpu(*cpu_, *gpu_,
                                   {{1, 32, 128, 1}, {2, 33, 128, 1}, {1, 100, 256, 2}, {1, 130, 96, 1}},
                                   "32-row tiles");
    });
  }
  // Each pass chooses its rows alone: a 64-row forward's log-sum-exp feeds a 32-row backward.
  const int B = 2, T = 100, C = 256, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 60, -1.5f, 1.5f), dout = random_vector(n, 61);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, std::vector<float>(3 * n), 1);
  Array<float> x(*gpu_, qkv), d(*gpu_, dout), dx(*gpu_, 3 * n), out(*gpu_, n);
  Array<float> att(*gpu_, gpu_->attention_state_size(B, T, C, NH));
  expect_rows(0, "the forward at the device's limit", [&] {
    ASSERT_TRUE(gpu_->attention_forward(out.data(), att.data(), x.data(), B, T, C, NH).is_ok());
  });
  {
    ScopedSharedMemoryLimit limit(*gpu_, cuda::attention_fp32_dkv_bytes(128, 32));
    expect_rows(32, "the backward under the lowered limit", [&] {
      ASSERT_TRUE(gpu_->attention_backward(dx.data(), d.data(), x.data(), out.data(), att.data(), B, T, C, NH)
                      .is_ok());
    });
  }
  expect_close("attention dqkv, 64-row forward, 32-row backward", dx.download(), ref.dqkv, 2e-5, 2e-4);
  // Head size 128 where a block may have 30,000 bytes: no tiling fits.
  ScopedSharedMemoryLimit limit(*gpu_, 30000);
  const Status s = gpu_->attention_forward(out.data(), att.data(), x.data(), B, T, C, NH);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  EXPECT_NE(
      s.message().find("need 55296 bytes of shared memory per block even with 32-row tiles, and a block may "
                       "have 30000 on this device"),
      std::string::npos)
      << s.message();
}

TEST_F(CudaAttention, StateIsTheLogSumExpRows) {
  EXPECT_EQ(gpu_->attention_state_size(4, 1024, 768, 12), size_t{4} * 12 * 1024);
}

TEST_F(CudaAttention, RejectsHeadsOver128) {
  Array<float> qkv(*gpu_, 3 * 129), out(*gpu_, 129), att(*gpu_, 1);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 129, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 30, 4).code(),
            StatusCode::kInvalidArgument);  // C not a multiple of NH
  EXPECT_EQ(gpu_->attention_forward(nullptr, att.data(), qkv.data(), 1, 1, 32, 1).code(),
            StatusCode::kInvalidArgument);
}

// The tile choice is host arithmetic: checked here with or without a device, for the opt-in shared
// memory per block of sm_90 (227 KiB), sm_80 (163 KiB), sm_86/89 (99 KiB) and sm_75 (64 KiB).
TEST(AttentionTiles, EachKernelFitsTheDeviceSharedMemory) {
  using cuda::attention_fp32_rows;
  using cuda::AttentionPass;
  constexpr size_t kSm90 = 232448, kSm80 = 166912, kSm86 = 101376, kSm75 = 65536;
  // The kernels' layouts (static_asserts in attention.cu tie these to them).
  EXPECT_EQ(cuda::attention_fp32_forward_bytes(64, 64), 69632u);
  EXPECT_EQ(cuda::attention_fp32_dq_bytes(64, 64), 87040u);
  EXPECT_EQ(cuda::attention_fp32_dkv_bytes(64, 64), 104960u);
  EXPECT_EQ(cuda::attention_fp32_dkv_bytes(128, 64), 170496u);
  EXPECT_EQ(cuda::attention_fp32_dkv_bytes(128, 32), 77056u);
  for (int hs : {6, 32, 48, 64, 96, 128}) {
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, hs, kSm90), 64) << hs;
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kBackward, hs, kSm90), 64) << hs;
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, hs, kSm80), 64) << hs;
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kBackward, hs, kSm80), hs > 64 ? 32 : 64) << hs;
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, hs, kSm86), hs > 64 ? 32 : 64) << hs;
    EXPECT_EQ(attention_fp32_rows(AttentionPass::kBackward, hs, kSm86), hs > 32 ? 32 : 64) << hs;
  }
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, 32, kSm75), 64);
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, 64, kSm75), 32);
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kBackward, 64, kSm75), 32);
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kBackward, 128, kSm75), 0);
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, 64, cuda::attention_fp32_forward_bytes(64, 64)), 64);
  EXPECT_EQ(attention_fp32_rows(AttentionPass::kForward, 64, cuda::attention_fp32_forward_bytes(64, 64) - 1),
            32);
  // The bf16 tensor-core kernels (mma.sync and cp.async: sm_80 on): head widths 32 and 64 fit even 64 KiB,
  // 128 fits sm_80 and sm_90 but not sm_86/89 (there the bf16 precision runs the fp32 kernels).
  // At 16 and 64: the one-pass backward variant's (6 tiles, dS^T and the statistics), the largest.
  EXPECT_EQ(cuda::attention_bf16_shared_bytes(16), 40960u);
  EXPECT_EQ(cuda::attention_bf16_shared_bytes(64), 65536u);
  EXPECT_EQ(cuda::attention_bf16_shared_bytes(96), 105472u);
  EXPECT_EQ(cuda::attention_bf16_shared_bytes(128), 105472u);
  EXPECT_LE(cuda::attention_bf16_shared_bytes(64), kSm75);
  EXPECT_LE(cuda::attention_bf16_shared_bytes(128), kSm80);
  EXPECT_GT(cuda::attention_bf16_shared_bytes(128), kSm86);
}

}  // namespace
}  // namespace perigee::kernels
