// perigee-bench's size parser (bench/topology/sizes.hpp): suffixes, and the inputs that used to wrap
// around (a sign, an overflowing product) refused with a message.
#include "bench/topology/sizes.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace perigee::bench::topology {
namespace {

TEST(BenchSizes, SuffixesAndTheLargestSize) {
  for (const auto& [text, want] : std::vector<std::pair<std::string, size_t>>{{"0", 0},
                                                                              {"8", 8},
                                                                              {"8B", 8},
                                                                              {"4K", 4096},
                                                                              {"64M", 64ull << 20},
                                                                              {"1G", 1ull << 30},
                                                                              {"1GiB", 1ull << 30},
                                                                              {"1024G", kMaxBytes}}) {
    size_t got = 0;
    const Status s = parse_bytes(text, &got);
    ASSERT_TRUE(s.is_ok()) << text << ": " << s.to_string();
    EXPECT_EQ(got, want) << text;
  }
}

TEST(BenchSizes, SignsJunkAndOverflowAreRefused) {
  for (const std::string text : {"", "-8", "+8", " 8", "abc", "8X", "8KX", "1025G", "1099511627777",
                                 "99999999999999G", "99999999999999999999999", "18446744073709551615K"}) {
    size_t got = 7;
    const Status s = parse_bytes(text, &got);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "'" << text << "' -> " << got;
    EXPECT_EQ(got, 7u) << text;
  }
  size_t got = 0;
  EXPECT_NE(parse_bytes("99999999999999G", &got).message().find("too large"), std::string::npos);
}

}  // namespace
}  // namespace perigee::bench::topology
