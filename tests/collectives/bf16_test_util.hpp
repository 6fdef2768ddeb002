// bf16 values for the collectives tests: rank r's element i, known on every rank.
// small_value: the integer (r + 1) * (i % 7), minus 3 for even i, whose partial sums over up to 8
// ranks stay within 36 * 6 = 216 < 256 and so are exact in bf16 whatever the order; mixed_value:
// arbitrary bf16 in [-1, 1) (a hash of r and i), whose sums round.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/bf16.hpp"

namespace perigee::collectives::testing {

inline uint16_t small_value(int r, size_t i) {
  return float_to_bf16(static_cast<float>((r + 1) * static_cast<int>(i % 7) - 3 * (i % 2 == 0 ? 1 : 0)));
}

inline float small_sum(int p, size_t i) {
  float s = 0.0f;
  for (int r = 0; r < p; ++r) s += bf16_to_float(small_value(r, i));
  return s;
}

inline uint16_t mixed_value(int r, size_t i) {
  uint64_t h = (static_cast<uint64_t>(r) << 40) ^ (i * 0x9E3779B97F4A7C15ull);
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return float_to_bf16(static_cast<float>(static_cast<double>(h >> 11) / 4503599627370496.0 - 1.0));
}

template <typename F>
std::vector<uint16_t> rank_bf16(int r, size_t n, F value) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(r, i);
  return v;
}

}  // namespace perigee::collectives::testing
