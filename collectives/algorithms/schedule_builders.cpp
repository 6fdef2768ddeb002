// Shared building blocks of the schedules (slices, round sink, ring phases) and the dispatcher
// build_allreduce_schedule.
#include "collectives/algorithms/schedule_builders.hpp"

#include <algorithm>

namespace perigee::collectives::algorithms {
namespace detail {

Slice split_slice(Slice s, int parts, int index) {
  const size_t n = static_cast<size_t>(parts);
  const size_t i = static_cast<size_t>(index);
  const size_t base = s.count / n;
  const size_t extra = s.count % n;
  return Slice{s.offset + i * base + std::min(i, extra), base + (i < extra ? 1 : 0)};
}

void RoundSink::add(size_t round, int src, int dst, Slice s, bool reduce) {
  if (s.count == 0) return;
  const size_t r = base_ + round;
  if (rounds_->size() <= r) rounds_->resize(r + 1);
  (*rounds_)[r].transfers.push_back(Transfer{src, dst, s.offset, s.count, reduce});
}

int ring_owned_chunk(int position, int group_size) {
  return (position + 1) % group_size;
}

// Step s: position i sends chunk (i - s) mod g to position i + 1, which adds it. After g - 1 steps
// position i has added every other position's share of chunk (i + 1) mod g.
void add_ring_reduce_scatter(const std::vector<int>& group, Slice slice, RoundSink& sink) {
  const int g = static_cast<int>(group.size());
  for (int s = 0; s + 1 < g; ++s) {
    for (int i = 0; i < g; ++i) {
      const int chunk = ((i - s) % g + g) % g;
      sink.add(static_cast<size_t>(s), group[i], group[(i + 1) % g], split_slice(slice, g, chunk), true);
    }
  }
}

// Step s: position i forwards chunk (i + 1 - s) mod g, complete at i, to position i + 1.
void add_ring_all_gather(const std::vector<int>& group, Slice slice, RoundSink& sink) {
  const int g = static_cast<int>(group.size());
  for (int s = 0; s + 1 < g; ++s) {
    for (int i = 0; i < g; ++i) {
      const int chunk = ((i + 1 - s) % g + g) % g;
      sink.add(static_cast<size_t>(s), group[i], group[(i + 1) % g], split_slice(slice, g, chunk), false);
    }
  }
}

void drop_empty_rounds(std::vector<Round>* rounds) {
  rounds->erase(
      std::remove_if(rounds->begin(), rounds->end(), [](const Round& r) { return r.transfers.empty(); }),
      rounds->end());
}

}  // namespace detail

Status build_allreduce_schedule(Algorithm a, const ScheduleParams& params, Schedule* out) {
  PERIGEE_REQUIRE(params.ranks >= 1, StatusCode::kInvalidArgument, "build_allreduce_schedule(",
                  algorithm_name(a), "): ranks = ", params.ranks, " must be >= 1");
  Schedule s;
  s.algorithm = a;
  s.ranks = params.ranks;
  s.count = params.count;
  switch (a) {
    case Algorithm::kRing:
      PERIGEE_CHECK(detail::build_ring(params, &s));
      break;
    case Algorithm::kRabenseifner:
      PERIGEE_CHECK(detail::build_rabenseifner(params, &s));
      break;
    case Algorithm::kTorus2d:
      PERIGEE_CHECK(detail::build_torus2d(params, &s));
      break;
    case Algorithm::kHierarchical:
      PERIGEE_CHECK(detail::build_hierarchical(params, &s));
      break;
    case Algorithm::kDoubleBinaryTree:
      PERIGEE_CHECK(detail::build_double_binary_tree(params, &s));
      break;
    case Algorithm::kNative:
    case Algorithm::kAuto:
      return make_error(StatusCode::kInvalidArgument, "build_allreduce_schedule: algorithm '",
                        algorithm_name(a), "' has no schedule (resolve auto first; native is the ",
                        "backend's own collective)");
  }
  detail::drop_empty_rounds(&s.rounds);
  *out = std::move(s);
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms
