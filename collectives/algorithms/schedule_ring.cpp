// Ring all-reduce: reduce-scatter then all-gather around ranks 0 -> 1 -> ... -> p-1 -> 0, the buffer
// split into p chunks; 2(p-1) rounds, each rank sends 2(p-1)/p of the buffer.
#include <numeric>

#include "collectives/algorithms/schedule_builders.hpp"

namespace perigee::collectives::algorithms::detail {

Status build_ring(const ScheduleParams& p, Schedule* out) {
  std::vector<int> ring(static_cast<size_t>(p.ranks));
  std::iota(ring.begin(), ring.end(), 0);
  const Slice all{0, p.count};
  RoundSink rs(&out->rounds, 0);
  add_ring_reduce_scatter(ring, all, rs);
  RoundSink ag(&out->rounds, static_cast<size_t>(p.ranks - 1));
  add_ring_all_gather(ring, all, ag);
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms::detail
