// Fill and check of the all-reduce buffers (see fill_check.hpp).
#include "bench/topology/fill_check.hpp"

#include <cstdint>

#include "core/bf16.hpp"

namespace perigee::bench::topology {
namespace {

using collectives::DataType;

float float_value(int rank, size_t i) {
  return static_cast<float>(rank + 1) + static_cast<float>(i % 7);
}

float bf16_value(int rank, size_t i) {
  return static_cast<float>(static_cast<int>((static_cast<size_t>(rank) + i) % 3) - 1);
}

float expected(int ranks, size_t i, DataType type) {
  float s = 0.0f;
  for (int r = 0; r < ranks; ++r) s += type == DataType::kBFloat16 ? bf16_value(r, i) : float_value(r, i);
  return s;
}

}  // namespace

void fill_rank_data(void* data, size_t count, int rank, DataType type) {
  if (type == DataType::kBFloat16) {
    auto* d = static_cast<uint16_t*>(data);
    for (size_t i = 0; i < count; ++i) d[i] = float_to_bf16(bf16_value(rank, i));
    return;
  }
  auto* d = static_cast<float*>(data);
  for (size_t i = 0; i < count; ++i) d[i] = float_value(rank, i);
}

void poison(void* data, size_t count, DataType type) {
  if (type == DataType::kBFloat16) {
    auto* d = static_cast<uint16_t*>(data);
    for (size_t i = 0; i < count; ++i) d[i] = float_to_bf16(-1.0f);
    return;
  }
  auto* d = static_cast<float*>(data);
  for (size_t i = 0; i < count; ++i) d[i] = -1.0f;
}

long long count_wrong(const void* data, size_t count, int ranks, DataType type) {
  long long wrong = 0;
  // The expected sums repeat with period 21 (lcm of 7 and 3).
  float want[21];
  for (size_t i = 0; i < 21; ++i) want[i] = expected(ranks, i, type);
  for (size_t i = 0; i < count; ++i) {
    const float got = type == DataType::kBFloat16 ? bf16_to_float(static_cast<const uint16_t*>(data)[i])
                                                  : static_cast<const float*>(data)[i];
    wrong += got != want[i % 21];
  }
  return wrong;
}

}  // namespace perigee::bench::topology
