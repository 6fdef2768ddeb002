#include "runtime/memory_budget.hpp"

#include <cstdio>

namespace perigee::runtime {

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

uint64_t MemoryDemand::total() const {
  uint64_t each = 0, once_total = 0;
  for (const MemoryItem& i : per_rank) each = saturating_add(each, i.bytes);
  for (const MemoryItem& i : once) once_total = saturating_add(once_total, i.bytes);
  return saturating_add(saturating_mul(each, static_cast<uint64_t>(ranks < 1 ? 1 : ranks)), once_total);
}

std::string format_bytes(uint64_t bytes) {
  if (bytes == UINT64_MAX) return "more than 16 EiB";
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 6) {
    v /= 1024.0;
    ++unit;
  }
  if (unit == 0) return str_cat(bytes, " B");
  return str_cat(fixed(v, v < 10.0 ? 2 : 1), " ", kUnits[unit]);
}

Status check_fits(const MemoryDemand& demand, std::string_view remedies) {
  const uint64_t need = demand.total();
  if (need <= demand.available) return Status::ok();
  std::string lines;
  uint64_t each = 0;
  for (const MemoryItem& i : demand.per_rank) {
    lines += str_cat("\n    ", format_bytes(i.bytes), "  ", i.what);
    each = saturating_add(each, i.bytes);
  }
  if (demand.ranks > 1)
    lines += str_cat("\n    = ", format_bytes(each), " per rank, x ", demand.ranks, " ranks sharing it");
  for (const MemoryItem& i : demand.once) lines += str_cat("\n    ", format_bytes(i.bytes), "  ", i.what);
  return make_error(StatusCode::kOutOfMemory, "the job does not fit in ", demand.where, ": it needs ",
                    format_bytes(need), ", ", format_bytes(demand.available), " is free (short by ",
                    format_bytes(need - demand.available), "):", lines, "\n  ", remedies);
}

}  // namespace perigee::runtime
