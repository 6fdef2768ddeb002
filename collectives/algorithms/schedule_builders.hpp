// Internal building blocks of the all-reduce schedules: element slices, a round sink that skips
// empty transfers, ring reduce-scatter / all-gather over groups of ranks, and one builder per
// algorithm (schedule_<algorithm>.cpp). Not part of the public interface.
#pragma once

#include <cstddef>
#include <vector>

#include "collectives/algorithms/schedule.hpp"
#include "core/status.hpp"

namespace perigee::collectives::algorithms::detail {

struct Slice {
  size_t offset = 0;
  size_t count = 0;
};

// Part `index` of `parts` nearly equal parts of s: the first s.count % parts parts hold one more.
Slice split_slice(Slice s, int parts, int index);

// Appends transfers to rounds[base + k], growing the vector; empty slices are skipped.
class RoundSink {
 public:
  RoundSink(std::vector<Round>* rounds, size_t base) : rounds_(rounds), base_(base) {}
  void add(size_t round, int src, int dst, Slice s, bool reduce);
  size_t base() const { return base_; }

 private:
  std::vector<Round>* rounds_;
  size_t base_;
};

// One ring over `group` (ranks in ring order) working on `slice`, split into group.size() chunks.
// Reduce-scatter uses rounds base .. base + g - 2; afterwards position i holds the sum of chunk
// ring_owned_chunk(i, g). All-gather (same rounds relative to its own base) spreads those chunks.
int ring_owned_chunk(int position, int group_size);
void add_ring_reduce_scatter(const std::vector<int>& group, Slice slice, RoundSink& sink);
void add_ring_all_gather(const std::vector<int>& group, Slice slice, RoundSink& sink);

// Removes rounds without transfers (a no-op under the round semantics).
void drop_empty_rounds(std::vector<Round>* rounds);

// Per-algorithm builders; params.ranks >= 1 already checked. They append to out->rounds.
Status build_ring(const ScheduleParams& p, Schedule* out);
Status build_rabenseifner(const ScheduleParams& p, Schedule* out);
Status build_torus2d(const ScheduleParams& p, Schedule* out);
Status build_hierarchical(const ScheduleParams& p, Schedule* out);
Status build_double_binary_tree(const ScheduleParams& p, Schedule* out);

}  // namespace perigee::collectives::algorithms::detail
