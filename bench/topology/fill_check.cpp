// Fill and check of the all-reduce buffers (see fill_check.hpp).
#include "bench/topology/fill_check.hpp"

namespace perigee::bench::topology {

void fill_rank_data(float* data, size_t count, int rank) {
  const float base = static_cast<float>(rank + 1);
  for (size_t i = 0; i < count; ++i) data[i] = base + static_cast<float>(i % 7);
}

long long count_wrong(const float* data, size_t count, int ranks) {
  const float p = static_cast<float>(ranks);
  const float base = p * (p + 1.0f) / 2.0f;
  long long wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    if (data[i] != base + p * static_cast<float>(i % 7)) ++wrong;
  }
  return wrong;
}

}  // namespace perigee::bench::topology
