// Message sizes for perigee-bench, nccl-tests style: "-b 8 -e 64M -f 2" (K/M/G suffixes, powers of
// 1024) or an additive step "-i 1M".
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::bench::topology {

// Largest size parse_bytes accepts: 1 TiB. The runner holds two buffers of the largest size per
// rank, so anything above this cannot be allocated on any machine the bench runs on.
inline constexpr size_t kMaxBytes = size_t{1} << 40;

// "8", "4K", "64M", "1G" (K = 1024): digits only (no sign, no blank), an optional K, M or G (with
// an optional B or iB) or B; at most kMaxBytes. Errors name the text.
Status parse_bytes(const std::string& text, size_t* out);

// min, min*factor, ... up to max inclusive (factor > 1), or min, min+step, ... when step > 0.
// Sizes are rounded down to whole elements of elem_bytes; sizes of 0 elements are dropped.
Status make_sizes(size_t min_bytes, size_t max_bytes, double factor, size_t step, size_t elem_bytes,
                  std::vector<size_t>* out);

}  // namespace perigee::bench::topology
