// bf16 rounding (core/bf16.hpp) against an independent oracle, and the CPU backend's to_bf16 /
// from_bf16 over flat buffers (chunking, threads, scale, argument checks).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/bf16.hpp"
#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

float bits_to_float(uint32_t u) {
  return std::bit_cast<float>(u);
}
uint16_t round_bits(uint32_t u) {
  return float_to_bf16(bits_to_float(u));
}

// The bf16 nearest to a finite x, by comparing distances in double to the two bf16 values around
// it (ties to the even one); inf where the nearest is past the largest finite bf16.
uint16_t oracle(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);  // truncation: |lo| <= |x|
  const uint16_t hi = static_cast<uint16_t>(lo + 1);   // next bf16 away from zero (may be inf)
  const double dx = x;
  const double dlo = std::fabs(dx - static_cast<double>(bf16_to_float(lo)));
  double dhi;
  if ((hi & 0x7FFF) == 0x7F80) {
    // Past the largest finite bf16: the next step up would be 2^128 (the rounding boundary).
    dhi = std::fabs(std::ldexp(std::signbit(x) ? -1.0 : 1.0, 128) - dx);
  } else {
    dhi = std::fabs(dx - static_cast<double>(bf16_to_float(hi)));
  }
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1) == 0 ? lo : hi;
}

TEST(Bf16Rounding, KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(round_bits(0x3F808000u), 0x3F80);  // 1 + 2^-8: halfway, to the even 1.0
  EXPECT_EQ(round_bits(0x3F818000u), 0x3F82);  // 1 + 3 * 2^-8: halfway, to the even 0x3F82
  EXPECT_EQ(round_bits(0x3F808001u), 0x3F81);  // just above halfway: up
  EXPECT_EQ(round_bits(0x3F807FFFu), 0x3F80);  // just below halfway: down
  EXPECT_EQ(round_bits(0x00010000u), 0x0001);  // subnormal kept
  EXPECT_EQ(round_bits(0x00000001u), 0x0000);  // 2^-149 rounds to zero
  EXPECT_EQ(round_bits(0x7F7F8000u), 0x7F80);  // halfway past the largest finite bf16: inf (even)
  EXPECT_EQ(round_bits(0x7F7F7FFFu), 0x7F7F);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  // NaNs stay NaN with their sign, also those whose payload lies only in the low 16 bits.
  for (uint32_t nan : {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0xFF800001u, 0xFFFFFFFFu}) {
    const float back = bf16_to_float(round_bits(nan));
    EXPECT_TRUE(std::isnan(back)) << std::hex << nan;
    EXPECT_EQ(std::signbit(back), (nan >> 31) != 0) << std::hex << nan;
  }
  // Widening is exact.
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    const uint16_t b = static_cast<uint16_t>(h);
    if (std::isnan(bf16_to_float(b))) continue;
    EXPECT_EQ(float_to_bf16(bf16_to_float(b)), b);
  }
}

TEST(Bf16Rounding, MatchesTheNearestValueOracleOnRandomBitPatterns) {
  std::mt19937 gen(7);
  int wrong = 0;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = gen();
    if (i % 4 == 0) u = (u & 0xFFFF0000u) | 0x8000u;  // many exact ties
    const float x = bits_to_float(u);
    if (!std::isfinite(x)) continue;
    const uint16_t got = float_to_bf16(x);
    const uint16_t want = oracle(x);
    if (got != want && ++wrong <= 5)
      ADD_FAILURE() << std::hex << "x bits " << u << ": got " << got << " want " << want;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(CpuConvert, BuffersMatchTheScalarRuleForAnyThreadCount) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{65535}, size_t{65537}, size_t{300001}}) {
    std::vector<float> x = random_vector(n, 11, -1e3f, 1e3f);
    if (n > 4) {
      x[1] = std::numeric_limits<float>::quiet_NaN();
      x[2] = -std::numeric_limits<float>::infinity();
      x[3] = bits_to_float(0x3F808000u);
    }
    std::vector<uint16_t> expect(n);
    for (size_t i = 0; i < n; ++i) expect[i] = float_to_bf16(x[i]);
    for (int threads : {1, 4}) {
      CpuBackend be(threads);
      Buffer<float> in(be, x);
      Buffer<uint16_t> out(be, n);
      ASSERT_TRUE(be.to_bf16(out.data(), in.data(), n).is_ok());
      EXPECT_EQ(out.to_vector(), expect) << "n " << n << ", threads " << threads;

      // Widening with a scale: one fp32 product per element.
      Buffer<float> back(be, n);
      ASSERT_TRUE(be.from_bf16(back.data(), out.data(), 1.0f / 3.0f, n).is_ok());
      int wrong = 0;
      for (size_t i = 0; i < n; ++i) {
        const float want = bf16_to_float(expect[i]) * (1.0f / 3.0f);
        wrong += std::bit_cast<uint32_t>(back[i]) != std::bit_cast<uint32_t>(want) &&
                 !(std::isnan(back[i]) && std::isnan(want));
      }
      EXPECT_EQ(wrong, 0) << "n " << n << ", threads " << threads;
    }
  }
}

// A NaN widens to its quiet form with sign and payload (the bits the CUDA kernel writes too), also a
// signalling one and whatever the scale.
TEST(CpuConvert, WideningKeepsANansSignAndPayload) {
  CpuBackend be(1);
  const std::vector<uint16_t> nans = {0x7FC0u, 0xFFC1u, 0x7F81u, 0xFF85u};
  const std::vector<uint32_t> want = {0x7FC00000u, 0xFFC10000u, 0x7FC10000u, 0xFFC50000u};
  Buffer<uint16_t> in(be, nans);
  Buffer<float> out(be, nans.size());
  for (float s : {1.0f, -0.5f, 3.0f}) {
    ASSERT_TRUE(be.from_bf16(out.data(), in.data(), s, nans.size()).is_ok());
    for (size_t i = 0; i < nans.size(); ++i) {
      EXPECT_EQ(std::bit_cast<uint32_t>(out[i]), want[i])
          << std::hex << "bf16 " << nans[i] << ", scale " << s;
    }
  }
}

TEST(CpuConvert, RejectsNullBuffers) {
  CpuBackend be(1);
  Buffer<float> f(be, 4);
  Buffer<uint16_t> h(be, 4);
  EXPECT_EQ(be.to_bf16(nullptr, f.data(), 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(be.to_bf16(h.data(), nullptr, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(be.from_bf16(nullptr, h.data(), 1.0f, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(be.to_bf16(nullptr, nullptr, 0).is_ok());
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
