// Fletcher32 of HDF5, computed in blocks of 16 lanes (adds only, so it vectorises): for a block
// of K words w_j starting from sums (s1, s2), s1 += sum w_j and s2 += K s1 + sum (K - j) w_j.
// HDF5 folds its sums ((x & 0xffff) + (x >> 16)) as it goes: the result is the residue mod 65535,
// except that a non-zero sum whose residue is 0 ends as 0xffff (folding never reaches 0 from a
// positive value), and an all-zero input gives 0.
#include "checkpoint/fletcher32.hpp"

namespace perigee::checkpoint {

namespace {

constexpr uint64_t kMod = 65535;
constexpr size_t kLanes = 16;
constexpr size_t kSteps = 256;  // per block: lane sums stay below 2^32 (256 * 257 / 2 * 65535)

inline uint32_t word_at(const unsigned char* p) {
  return (static_cast<uint32_t>(p[0]) << 8) | p[1];
}

inline uint32_t finish(uint64_t sum, bool any) {
  if (!any) return 0;
  const uint32_t r = static_cast<uint32_t>(sum % kMod);
  return r == 0 ? 0xffffu : r;
}

}  // namespace

uint32_t hdf5_fletcher32(const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  size_t words = n / 2;
  uint64_t s1 = 0, s2 = 0;
  bool any = false;
  while (words >= kLanes) {
    const size_t steps = words / kLanes < kSteps ? words / kLanes : kSteps;
    uint32_t a[kLanes] = {0};
    uint32_t b[kLanes] = {0};
    for (size_t k = 0; k < steps; ++k) {
      for (size_t l = 0; l < kLanes; ++l) {
        a[l] += word_at(p + 2 * l);
        b[l] += a[l];
      }
      p += 2 * kLanes;
    }
    uint64_t sum_a = 0, sum_b = 0;
    for (size_t l = 0; l < kLanes; ++l) {
      sum_a += a[l];
      sum_b += kLanes * static_cast<uint64_t>(b[l]) - l * static_cast<uint64_t>(a[l]);
    }
    const uint64_t block = kLanes * steps;
    any = any || sum_a != 0;
    s2 = (s2 + block * s1 + sum_b) % kMod;
    s1 = (s1 + sum_a) % kMod;
    words -= block;
  }
  for (; words > 0; --words, p += 2) {
    const uint32_t w = word_at(p);
    any = any || w != 0;
    s1 += w;
    s2 += s1;
  }
  if (n % 2) {
    const uint32_t w = static_cast<uint32_t>(*p) << 8;
    any = any || w != 0;
    s1 += w;
    s2 += s1;
  }
  return (finish(s2, any) << 16) | finish(s1, any);
}

}  // namespace perigee::checkpoint
