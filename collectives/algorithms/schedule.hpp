// Collective schedules: an algorithm written down as rounds of point-to-point transfers over one flat
// buffer of `count` elements held by every rank. Every rank builds the same Schedule (it depends only
// on the algorithm, world size, element count and parameters), so every rank knows every transfer:
// the executors run their own part of it, and the timing model (timing.hpp) can account for all of
// them, link contention included, identically on every rank.
//
// Semantics of one round: every transfer reads its source slice as it was at the START of the round
// (senders snapshot first), then every receiver applies its incoming slices, in the order they are
// listed, either overwriting (reduce == false) or adding (reduce == true) into its own buffer.
// After the last round every rank holds the reduced buffer (all-reduce: the sum over ranks).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::collectives::algorithms {

enum class Algorithm {
  kRing,              // reduce-scatter ring + all-gather ring, 2(p-1) rounds
  kRabenseifner,      // recursive halving reduce-scatter + recursive doubling all-gather (any p)
  kTorus2d,           // +Grid: reduce-scatter along X, all-reduce along Y, all-gather along X
  kHierarchical,      // intra-node reduce-scatter, inter-node ring all-reduce, intra-node all-gather
  kDoubleBinaryTree,  // two complementary binary trees, each half the data, pipelined chunks
  kNative,            // the backend's own collective (MPI_Allreduce / NCCL); no schedule
  kAuto,              // the cheapest predicted (cost_model.hpp) for the topology and size
};

const char* algorithm_name(Algorithm a);                          // "ring", "rabenseifner", "torus2d", ...
Status parse_algorithm(const std::string& name, Algorithm* out);  // error lists the valid names

struct Transfer {
  int src = 0;
  int dst = 0;
  size_t offset = 0;   // first element of the slice (same offset on both sides)
  size_t count = 0;    // elements
  bool reduce = true;  // true: dst += src slice; false: dst = src slice
};

struct Round {
  std::vector<Transfer> transfers;
};

struct ScheduleParams {
  int ranks = 1;
  size_t count = 0;         // elements in the buffer
  int grid_x = 0;           // torus2d: ranks per row (X, e.g. satellites per plane); ranks = grid_x * grid_y
  int grid_y = 0;           // torus2d: rows (Y, e.g. planes)
  int ranks_per_node = 1;   // hierarchical: consecutive ranks share a node (satellite)
  int pipeline_chunks = 0;  // double binary tree: chunks per tree; 0 = chosen from count
};

struct Schedule {
  Algorithm algorithm = Algorithm::kRing;
  int ranks = 1;
  size_t count = 0;
  std::vector<Round> rounds;
};

// All-reduce schedule for `a` (not kNative/kAuto). Errors name the parameter that does not fit
// (e.g. torus2d with grid_x * grid_y != ranks).
Status build_allreduce_schedule(Algorithm a, const ScheduleParams& params, Schedule* out);

// Checks the structure: ranks in range, slices in bounds, no rank receives the same element twice
// in one round unless all those transfers reduce. Used by tests and before execution.
Status validate_schedule(const Schedule& s);

// Runs a schedule in one process over `buffers` (one per rank, each `count` elements) with the
// round semantics above. T is float, double, int32_t or int64_t. For tests and the cost model.
template <typename T>
Status run_schedule_in_memory(const Schedule& s, std::vector<std::vector<T>>& buffers);

}  // namespace perigee::collectives::algorithms
