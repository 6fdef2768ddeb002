// Host memory probe: how many bytes this process can still allocate and touch before the kernel's
// OOM killer steps in. /proc/meminfo's MemAvailable (free memory plus the page cache and slabs the
// kernel can reclaim), capped by every memory cgroup limit above the process (cgroup v2 memory.max,
// v1 memory.limit_in_bytes; each limit minus that group's usage, less its reclaimable inactive file
// cache). Linux overcommits: an allocation beyond this succeeds and the process dies later, without
// a message, while it zero-fills the pages, so a caller compares its needs with this first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.hpp"

namespace perigee::kernels::cpu {

struct HostMemory {
  uint64_t available = 0;  // bytes
  uint64_t total = 0;      // bytes: MemTotal, or the tightest cgroup limit when lower
  std::string source;      // what set `available`, e.g. "MemAvailable" or "cgroup /x memory.max"
};

// "MemAvailable:   24220644 kB" -> bytes; nullopt when the key is absent or malformed.
std::optional<uint64_t> meminfo_bytes(std::string_view meminfo, std::string_view key);
// A memory.stat line "inactive_file 1234" -> 1234; nullopt when absent.
std::optional<uint64_t> memory_stat_value(std::string_view stat, std::string_view key);
// A cgroup limit file's text ("max\n", "9223372036854771712\n", "4294967296\n"): nullopt for no limit.
std::optional<uint64_t> cgroup_limit(std::string_view text);

Status probe_host_memory(HostMemory* out);

}  // namespace perigee::kernels::cpu
