// Data and its check for perigee-bench: rank r's element i is (r + 1) + (i % 7), small integers that
// float32 holds exactly, so every summation order gives the exact all-reduce sum
// p(p+1)/2 + p (i % 7) and any difference is a wrong element (nccl-tests' #wrong).
#pragma once

#include <cstddef>

namespace perigee::bench::topology {

void fill_rank_data(float* data, size_t count, int rank);

// Elements of `data` that differ from the exact sum over `ranks` ranks.
long long count_wrong(const float* data, size_t count, int ranks);

}  // namespace perigee::bench::topology
