// Data and its check for perigee-bench, nccl-tests' #wrong: values whose sums are exact in every
// summation order, so any difference from the exact sum is a wrong element.
//   float:    rank r's element i is (r + 1) + (i % 7); the sum p(p+1)/2 + p (i % 7).
//   bfloat16: ((r + i) % 3) - 1 in {-1, 0, 1}; every partial sum is an integer of magnitude <= p,
//             exact in bf16 (8 significant bits) up to 256 ranks.
#pragma once

#include <cstddef>

#include "collectives/communicator.hpp"

namespace perigee::bench::topology {

// type: kFloat32 or kBFloat16 (the types perigee-bench offers).
void fill_rank_data(void* data, size_t count, int rank, collectives::DataType type);
// Sets every element to -1 (a value no all-reduce of the fill produces at every index).
void poison(void* data, size_t count, collectives::DataType type);

// Elements of `data` that differ from the exact sum over `ranks` ranks.
long long count_wrong(const void* data, size_t count, int ranks, collectives::DataType type);

}  // namespace perigee::bench::topology
