#include "kernels/cpu/host_memory.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace perigee::kernels::cpu {
namespace {

namespace fs = std::filesystem;

std::optional<uint64_t> parse_u64(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end == s.data()) return std::nullopt;
  return v;
}

// The value after "key" at the start of a line, with `sep` between them.
std::optional<std::string_view> line_value(std::string_view text, std::string_view key, char sep) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == sep)
      return line.substr(key.size() + 1);
    pos = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> read_text(const fs::path& path) {
  std::ifstream in(path);
  if (!in.is_open()) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct CgroupHierarchy {
  fs::path root;     // the controller's mount
  std::string path;  // the process's group inside it
  bool v2 = false;
};

// The memory controller's hierarchy from /proc/self/cgroup: a v1 "N:...memory...:/path" line, else
// the v2 "0::/path" line when /sys/fs/cgroup is a v2 mount.
std::optional<CgroupHierarchy> memory_hierarchy() {
  const auto text = read_text("/proc/self/cgroup");
  if (!text) return std::nullopt;
  std::optional<CgroupHierarchy> v2;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controllers.empty() && line.compare(0, a, "0") == 0) {
      if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) v2 = CgroupHierarchy{"/sys/fs/cgroup", path, true};
      continue;
    }
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');)
      if (name == "memory") return CgroupHierarchy{"/sys/fs/cgroup/memory", path, false};
  }
  return v2;
}

// Applies the limit of the group at `dir` (if any) to *out.
void apply_group_limit(const fs::path& dir, const std::string& label, bool v2, HostMemory* out) {
  const auto limit_text = read_text(dir / (v2 ? "memory.max" : "memory.limit_in_bytes"));
  const auto limit = limit_text ? cgroup_limit(*limit_text) : std::nullopt;
  if (!limit) return;
  const auto usage_text = read_text(dir / (v2 ? "memory.current" : "memory.usage_in_bytes"));
  const uint64_t usage = usage_text ? parse_u64(*usage_text).value_or(0) : 0;
  const auto stat = read_text(dir / "memory.stat");
  // The inactive file cache is reclaimed before the group runs out.
  const uint64_t inactive =
      stat ? memory_stat_value(*stat, v2 ? "inactive_file" : "total_inactive_file").value_or(0) : 0;
  const uint64_t used = usage - std::min(usage, inactive);
  const uint64_t free = *limit - std::min(*limit, used);
  out->total = std::min(out->total, *limit);
  if (free < out->available) {
    out->available = free;
    out->source = str_cat("cgroup ", label, v2 ? " memory.max" : " memory.limit_in_bytes");
  }
}

}  // namespace

std::optional<uint64_t> meminfo_bytes(std::string_view meminfo, std::string_view key) {
  const auto value = line_value(meminfo, key, ':');
  if (!value) return std::nullopt;
  const auto kb = parse_u64(*value);
  if (!kb || *kb > UINT64_MAX / 1024) return std::nullopt;
  return *kb * 1024;
}

std::optional<uint64_t> memory_stat_value(std::string_view stat, std::string_view key) {
  const auto value = line_value(stat, key, ' ');
  return value ? parse_u64(*value) : std::nullopt;
}

std::optional<uint64_t> cgroup_limit(std::string_view text) {
  if (text.starts_with("max")) return std::nullopt;
  const auto v = parse_u64(text);
  // cgroup v1 writes "no limit" as the largest page-aligned int64 (9223372036854771712).
  if (!v || *v >= (uint64_t{1} << 62)) return std::nullopt;
  return v;
}

Status probe_host_memory(HostMemory* out) {
  const auto meminfo = read_text("/proc/meminfo");
  PERIGEE_REQUIRE(meminfo.has_value(), StatusCode::kUnavailable, "cannot read /proc/meminfo");
  const auto total = meminfo_bytes(*meminfo, "MemTotal");
  // Kernels before 3.14 have no MemAvailable: MemFree is the (pessimistic) fallback.
  auto available = meminfo_bytes(*meminfo, "MemAvailable");
  std::string source = "MemAvailable";
  if (!available) {
    available = meminfo_bytes(*meminfo, "MemFree");
    source = "MemFree";
  }
  PERIGEE_REQUIRE(total && available, StatusCode::kUnavailable,
                  "/proc/meminfo has no MemTotal or MemAvailable/MemFree line");
  *out = HostMemory{*available, *total, source};
  const auto hierarchy = memory_hierarchy();
  if (!hierarchy) return Status::ok();
  // The process's group and each ancestor up to the root: every limit on the way applies. Inside a
  // cgroup namespace the listed path may not exist under the mount: the mount's root is the group.
  fs::path group = hierarchy->root / fs::path(hierarchy->path).relative_path();
  if (!fs::exists(group)) group = hierarchy->root;
  for (fs::path dir = group;; dir = dir.parent_path()) {
    const std::string label = dir == hierarchy->root
                                  ? std::string("/")
                                  : str_cat("/", fs::relative(dir, hierarchy->root).generic_string());
    apply_group_limit(dir, label, hierarchy->v2, out);
    if (dir == hierarchy->root || !dir.has_parent_path() || dir.parent_path() == dir) break;
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
