// Fletcher32 as HDF5's filter computes it: the fast blocked version against a direct scalar
// transcription of the filter's algorithm (360-word blocks, folded sums) on random, zero, all-ones
// and residue-zero inputs of every small length, odd lengths included.
#include "checkpoint/fletcher32.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace perigee::checkpoint {
namespace {

// HDF5's algorithm, word by word: big-endian 16-bit words, sums folded every 360 words.
uint32_t reference_fletcher32(const unsigned char* data, size_t n) {
  size_t len = n / 2;
  uint32_t sum1 = 0, sum2 = 0;
  while (len) {
    size_t block = len > 360 ? 360 : len;
    len -= block;
    do {
      sum1 += (static_cast<uint32_t>(data[0]) << 8) | data[1];
      data += 2;
      sum2 += sum1;
    } while (--block);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (n % 2) {
    sum1 += static_cast<uint32_t>(*data) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

std::vector<unsigned char> random_bytes(size_t n, uint32_t seed) {
  std::vector<unsigned char> v(n);
  for (unsigned char& c : v) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<unsigned char>(seed >> 24);
  }
  return v;
}

TEST(Fletcher32, MatchesHdf5OnRandomInputsOfEveryLength) {
  for (size_t n = 0; n < 2000; ++n) {
    const auto v = random_bytes(n, static_cast<uint32_t>(n) + 1);
    ASSERT_EQ(hdf5_fletcher32(v.data(), n), reference_fletcher32(v.data(), n)) << "length " << n;
  }
  for (size_t n : {65536u, 1u << 20, (1u << 20) + 6, 4000002u}) {
    const auto v = random_bytes(n, 99);
    ASSERT_EQ(hdf5_fletcher32(v.data(), n), reference_fletcher32(v.data(), n)) << "length " << n;
  }
}

TEST(Fletcher32, MatchesHdf5OnZerosOnesAndResidueZero) {
  for (size_t n : {0u, 1u, 2u, 3u, 32u, 33u, 720u, 8192u, 100000u}) {
    const std::vector<unsigned char> zeros(n, 0x00), ones(n, 0xff);
    EXPECT_EQ(hdf5_fletcher32(zeros.data(), n), 0u) << n;
    EXPECT_EQ(hdf5_fletcher32(ones.data(), n), reference_fletcher32(ones.data(), n)) << n;
  }
  // Sums whose residue mod 65535 is zero but which are not zero: HDF5 ends at 0xffff.
  const unsigned char one_word[2] = {0xff, 0xff};
  EXPECT_EQ(hdf5_fletcher32(one_word, 2), reference_fletcher32(one_word, 2));
  EXPECT_EQ(hdf5_fletcher32(one_word, 2), 0xffffffffu);
  std::vector<unsigned char> v(65535 * 2, 0);
  v[1] = 1;  // word 1 first: sum1 = 1, sum2 = 65535 (residue 0)
  EXPECT_EQ(hdf5_fletcher32(v.data(), v.size()), reference_fletcher32(v.data(), v.size()));
  EXPECT_EQ(hdf5_fletcher32(v.data(), v.size()) >> 16, 0xffffu);
}

TEST(Fletcher32, DetectsAFlippedBit) {
  auto v = random_bytes(4096, 5);
  const uint32_t ref = hdf5_fletcher32(v.data(), v.size());
  for (size_t bit = 0; bit < 64; ++bit) {
    v[bit * 37 % v.size()] ^= static_cast<unsigned char>(1u << (bit % 8));
    EXPECT_NE(hdf5_fletcher32(v.data(), v.size()), ref);
    v[bit * 37 % v.size()] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace perigee::checkpoint
