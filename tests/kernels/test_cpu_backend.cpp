// CpuBackend basics: identity, thread count, memory ops (alignment, zero fill, copies) and the
// kInvalidArgument statuses for bad arguments (library code reports, never aborts).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

TEST(CpuBackend, Identity) {
  CpuBackend be(3);
  EXPECT_EQ(be.kind(), DeviceKind::kCpu);
  EXPECT_STREQ(be.name(), "cpu");
  EXPECT_EQ(be.threads(), 3);
  CpuBackend def;
  EXPECT_GE(def.threads(), 1);
  EXPECT_TRUE(be.synchronize().is_ok());
  EXPECT_EQ(be.attention_state_size(2, 5, 12, 3), size_t{2 * 3 * 5 * 5});  // probabilities [B, NH, T, T]
}

TEST(CpuBackend, AllocateIsAlignedAndZeroed) {
  CpuBackend be(2);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{5} << 20}) {
    void* p = nullptr;
    ASSERT_TRUE(be.allocate(&p, bytes).is_ok());
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u) << bytes;
    const auto* c = static_cast<const unsigned char*>(p);
    size_t nonzero = 0;
    for (size_t i = 0; i < bytes; ++i) nonzero += c[i] != 0;
    EXPECT_EQ(nonzero, 0u) << bytes;
    be.release(p);
  }
  be.release(nullptr);
  EXPECT_EQ(be.allocate(nullptr, 16).code(), StatusCode::kInvalidArgument);
  void* p = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(be.allocate(&p, SIZE_MAX - 8).code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(p, nullptr);
}

TEST(CpuBackend, MemsetAndCopies) {
  CpuBackend be(2);
  const size_t n = (size_t{3} << 20) / sizeof(float) + 5;  // several parallel chunks plus a tail
  const std::vector<float> host = random_vector(n, 1);
  Buffer<float> dev(be, n), dev2(be, n);
  ASSERT_TRUE(be.copy_to_device(dev.data(), host.data(), n * sizeof(float)).is_ok());
  EXPECT_TRUE(bit_identical(dev.data(), host.data(), n));
  std::vector<float> back(n, 0.0f);
  ASSERT_TRUE(be.copy_to_host(back.data(), dev.data(), n * sizeof(float)).is_ok());
  EXPECT_TRUE(bit_identical(back.data(), host.data(), n));
  ASSERT_TRUE(be.copy_to_device(dev2.data(), dev.data(), n * sizeof(float)).is_ok());
  EXPECT_TRUE(bit_identical(dev2.data(), host.data(), n));
  // Zero a range in the middle; the rest is untouched.
  ASSERT_TRUE(be.memset_zero(dev.data() + 10, (n - 20) * sizeof(float)).is_ok());
  for (size_t i = 0; i < n; ++i) {
    const float want = (i >= 10 && i < n - 10) ? 0.0f : host[i];
    ASSERT_EQ(dev[i], want) << i;
  }
  EXPECT_TRUE(be.memset_zero(nullptr, 0).is_ok());
  EXPECT_TRUE(be.copy_to_host(nullptr, nullptr, 0).is_ok());
  EXPECT_EQ(be.memset_zero(nullptr, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(be.copy_to_device(dev.data(), nullptr, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(be.copy_to_host(dev.data() + 1, dev.data(), 8).code(), StatusCode::kInvalidArgument);  // overlap
}

TEST(CpuBackend, RejectsBadArguments) {
  CpuBackend be(2);
  Buffer<float> a(be, 4096), b(be, 4096), c(be, 4096), d(be, 4096);
  Buffer<int32_t> tok(be, std::vector<int32_t>{0, 1, -1, 2});
  const auto kBad = StatusCode::kInvalidArgument;
  EXPECT_EQ(be.encoder_forward(a.data(), tok.data(), b.data(), c.data(), 1, 4, 2, 3).code(),
            kBad);  // token -1
  EXPECT_EQ(be.encoder_forward(a.data(), tok.data(), b.data(), c.data(), 1, 2, 0, 3).code(), kBad);  // C = 0
  EXPECT_EQ(be.encoder_forward(a.data(), tok.data(), b.data(), c.data(), 1, 2, 2, 0).code(), kBad);  // V = 0
  // Token 1 with V = 1: past the vocabulary, refused by name and position, forward and backward.
  const Status past = be.encoder_forward(a.data(), tok.data(), b.data(), c.data(), 1, 2, 2, 1);
  EXPECT_EQ(past.code(), kBad);
  EXPECT_NE(past.to_string().find("token 1 at position 1 is outside the vocabulary [0, 1)"),
            std::string::npos)
      << past.to_string();
  EXPECT_EQ(be.encoder_backward(a.data(), b.data(), c.data(), tok.data(), 1, 2, 2, 1).code(), kBad);
  EXPECT_TRUE(be.encoder_backward(a.data(), b.data(), c.data(), tok.data(), 1, 2, 2, 2).is_ok());
  EXPECT_EQ(be.encoder_backward(a.data(), nullptr, c.data(), tok.data(), 1, 2, 2, 3).code(), kBad);
  EXPECT_EQ(be.layernorm_forward(a.data(), b.data(), nullptr, c.data(), d.data(), d.data(), 2, 2).code(),
            kBad);
  EXPECT_EQ(be.matmul_forward(a.data(), b.data(), c.data(), nullptr, -1, 2, 2).code(), kBad);
  EXPECT_EQ(be.matmul_backward(a.data(), nullptr, nullptr, b.data(), c.data(), nullptr, 2, 2, 2).code(),
            kBad);
  EXPECT_EQ(be.attention_forward(a.data(), b.data(), c.data(), 1, 4, 10, 3).code(), kBad);  // 10 % 3
  EXPECT_EQ(be.attention_backward(a.data(), b.data(), c.data(), b.data(), d.data(), 1, 4, 8, 0).code(), kBad);
  EXPECT_EQ(be.gelu_forward(nullptr, a.data(), 4).code(), kBad);
  EXPECT_TRUE(be.gelu_forward(nullptr, nullptr, 0).is_ok());
  EXPECT_EQ(be.residual_forward(a.data(), nullptr, b.data(), 4).code(), kBad);
  Buffer<int32_t> targets(be, std::vector<int32_t>{0, 5});
  EXPECT_EQ(be.crossentropy_forward(a.data(), b.data(), c.data(), targets.data(), 2, 5, 8).code(), kBad);
  EXPECT_EQ(be.crossentropy_forward(a.data(), b.data(), c.data(), targets.data(), 2, 6, 4).code(), kBad);
  EXPECT_EQ(be.crossentropy_backward(a.data(), b.data(), targets.data(), 1.0f, 2, 5, 8).code(), kBad);
  EXPECT_TRUE(be.crossentropy_forward(a.data(), b.data(), c.data(), targets.data(), 2, 6, 8).is_ok());
  EXPECT_EQ(be.sum_squares(a.data(), 4, nullptr).code(), kBad);
  EXPECT_EQ(be.scale(nullptr, 2.0f, 4).code(), kBad);
  // The message names the op.
  const Status s = be.attention_forward(a.data(), b.data(), c.data(), 1, 4, 10, 3);
  EXPECT_NE(s.message().find("attention_forward"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
