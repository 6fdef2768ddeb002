// Memory budget: before a rank allocates its training state, the trainer lists what it will hold in
// each memory it allocates from (the backend's: host RAM for the CPU backend, the GPU's for CUDA;
// host RAM for rank 0's checkpoint staging), counts the ranks on this host that allocate the same
// from that memory, and compares the sum with what is free there now. A job that cannot fit is
// refused at setup with the breakdown, instead of failing in cudaMalloc half-way or, on the host,
// being OOM-killed without a word while it zero-fills pages (Linux overcommits: malloc succeeds).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace perigee::runtime {

struct MemoryItem {
  std::string what;
  uint64_t bytes = 0;
  bool activations = false;  // grows with the tokens per pass (the advice names micro_batch first)
};

// One memory and what the ranks of this host will take from it.
struct MemoryDemand {
  std::string where;  // e.g. "host RAM (MemAvailable)", "CUDA device 0 (NVIDIA H100 80GB HBM3)"
  uint64_t available = 0;
  std::vector<MemoryItem> per_rank;  // every sharing rank allocates these
  int ranks = 1;                     // the ranks that allocate per_rank from this memory
  std::vector<MemoryItem> once;      // one of them only (rank 0's checkpoint staging)
  uint64_t total() const;            // saturating
};

// "512 B", "3.0 KiB", "1.50 GiB".
std::string format_bytes(uint64_t bytes);
// a + b, or UINT64_MAX on overflow (and likewise for a * b).
uint64_t saturating_add(uint64_t a, uint64_t b);
uint64_t saturating_mul(uint64_t a, uint64_t b);

// kOutOfMemory when demand.total() exceeds demand.available: the message lists each item, the
// ranks and the shortfall, then `remedies` (the config keys that shrink the job).
Status check_fits(const MemoryDemand& demand, std::string_view remedies);

}  // namespace perigee::runtime
