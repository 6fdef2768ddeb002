// Internal to the cost model: each algorithm as a list of phases. A phase is `steps` steps in which
// the same set of rank pairs each move `bytes`. The topology-aware model charges a synchronous step
// overhead + max route latency + bytes * max over links (routes crossing it / bandwidth); a
// pipelined phase (the tree rounds) instead advances per-rank ready times edge by edge.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "collectives/algorithms/schedule.hpp"
#include "core/status.hpp"

namespace perigee::collectives::algorithms::detail {

struct Phase {
  std::string label;  // "ring", "X", "Y", "d=4", "fold", "rounds 3-9", ...
  double steps = 0.0;
  double bytes = 0.0;                      // per transfer in one step
  std::vector<std::pair<int, int>> pairs;  // (src, dst) transfers of one step
  bool pipelined = false;                  // ranks wait only for their own partners
};

// The textbook formula in words, e.g. "2(p-1)(a + n/p b)".
const char* symbolic_formula(Algorithm a);

// Phases of `a` (not kNative/kAuto) for p.ranks ranks and p.count elements of element_bytes.
// Errors when the algorithm does not fit p (torus grid, ranks_per_node).
Status allreduce_phases(Algorithm a, const ScheduleParams& p, size_t element_bytes, std::vector<Phase>* out);

// Whether torus2d / hierarchical fit p (auto skips them otherwise).
bool torus2d_fits(const ScheduleParams& p);
bool hierarchical_fits(const ScheduleParams& p);

}  // namespace perigee::collectives::algorithms::detail
