// kernels/cuda/convert.cuh scale_bf16 (the bf16 average's division, used by the NCCL communicator):
// x[i] = bf16(float(x[i]) * s) with the host's bits (core/bf16.hpp) for every element, through the
// vector kernel and the scalar one (aligned and unaligned starts, lengths not a multiple of four),
// special values included. Skips without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cuda/convert.cuh"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-3e4f, 3e4f);
  std::vector<uint16_t> x(n);
  for (auto& v : x) v = float_to_bf16(value(rng));
  // NaNs (quiet, signalling, negative), infinities, the largest finite, a tie, subnormals.
  const uint16_t specials[] = {0x7FC0u, 0x7F81u, 0xFFC1u, 0x7F80u, 0xFF80u,
                               0x7F7Fu, 0x3F81u, 0x0001u, 0x8003u};
  for (size_t i = 0; i < std::size(specials) && i < n; ++i) x[i] = specials[i];
  return x;
}

TEST(CudaConvert, ScaleBf16IsTheHostRule) {
  const auto& b = cuda_testing::backends();
  if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
  ASSERT_TRUE(b.error.is_ok()) << b.error.message();
  for (size_t n : {size_t{1}, size_t{5}, size_t{4099}, size_t{300001}}) {
    const std::vector<uint16_t> x = random_bf16(n + 3, 17);
    for (const float s : {0.5f, 1.0f / 3.0f, 1.0f / 6.0f, 3e38f}) {
      for (size_t offset : {size_t{0}, size_t{1}, size_t{3}}) {
        const std::string tag =
            "n=" + std::to_string(n) + " s=" + std::to_string(s) + " offset " + std::to_string(offset);
        std::vector<uint16_t> expect(x);
        for (size_t i = offset; i < offset + n; ++i) expect[i] = float_to_bf16(bf16_to_float(x[i]) * s);
        uint16_t* d = nullptr;
        ASSERT_EQ(cudaMalloc(&d, x.size() * sizeof(uint16_t)), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(d, x.data(), x.size() * sizeof(uint16_t), cudaMemcpyHostToDevice), cudaSuccess);
        const Status st = cuda::scale_bf16(d + offset, s, n, nullptr);
        EXPECT_TRUE(st.is_ok()) << tag << ": " << st.message();
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::vector<uint16_t> got(x.size());
        ASSERT_EQ(cudaMemcpy(got.data(), d, got.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost),
                  cudaSuccess);
        cudaFree(d);
        size_t wrong = 0;
        for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != expect[i];
        EXPECT_EQ(wrong, 0u) << tag << " (elements outside [offset, offset + n) must stay as they were)";
      }
    }
  }
}

}  // namespace
}  // namespace perigee::kernels
