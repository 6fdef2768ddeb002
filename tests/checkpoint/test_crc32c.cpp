// CRC32C against published vectors (RFC 3720 B.4 and the common check value), both the table
// and the SSE4.2 paths, chaining, and agreement on every length and alignment.
#include "checkpoint/crc32c.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace perigee::checkpoint {
namespace {

using CrcFn = uint32_t (*)(const void*, size_t, uint32_t);

void expect_known_vectors(CrcFn fn, const char* tag) {
  SCOPED_TRACE(tag);
  EXPECT_EQ(fn("", 0, 0), 0x00000000u);
  EXPECT_EQ(fn("123456789", 9, 0), 0xE3069283u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(fn(fox.data(), fox.size(), 0), 0x22620404u);
  unsigned char buf[32];
  std::memset(buf, 0x00, 32);
  EXPECT_EQ(fn(buf, 32, 0), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
  std::memset(buf, 0xFF, 32);
  EXPECT_EQ(fn(buf, 32, 0), 0x62A8AB43u);  // 32 bytes of ones
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(fn(buf, 32, 0), 0x46DD794Eu);  // incrementing
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(fn(buf, 32, 0), 0x113FDB5Cu);  // decrementing
}

TEST(Crc32c, KnownVectorsPortable) {
  expect_known_vectors(crc32c_portable, "portable");
}

TEST(Crc32c, KnownVectorsHardware) {
  if (!crc32c_hardware_available())
    std::printf("[ info ] no SSE4.2: the hardware path falls back to the table\n");
  expect_known_vectors(crc32c_hardware, "hardware");
  expect_known_vectors(crc32c, "default");
}

TEST(Crc32c, ChainingEqualsOneShot) {
  std::vector<unsigned char> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 131 + 7);
  const uint32_t whole = crc32c(data.data(), data.size());
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    const uint32_t a = crc32c(data.data(), cut);
    EXPECT_EQ(crc32c(data.data() + cut, data.size() - cut, a), whole) << "cut " << cut;
    EXPECT_EQ(crc32c_portable(data.data() + cut, data.size() - cut, crc32c_portable(data.data(), cut)),
              whole);
  }
}

TEST(Crc32c, PathsAgreeOnEveryLengthAndAlignment) {
  std::vector<unsigned char> data(300);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
  for (size_t align = 0; align < 8; ++align)
    for (size_t n = 0; n + align <= 200; ++n)
      ASSERT_EQ(crc32c_portable(data.data() + align, n), crc32c_hardware(data.data() + align, n))
          << "align " << align << " length " << n;
}

TEST(Crc32c, EverySingleBitFlipChangesTheValue) {
  std::vector<unsigned char> data(64, 0x5A);
  const uint32_t ref = crc32c(data.data(), data.size());
  for (size_t bit = 0; bit < data.size() * 8; ++bit) {
    data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    ASSERT_NE(crc32c(data.data(), data.size()), ref) << "bit " << bit;
    data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace perigee::checkpoint
