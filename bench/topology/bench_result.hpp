// Plain records of what perigee-bench measured: one row per message size, one block per
// (topology, algorithm), one entry per topology. Filled by the runner, read by the table printer
// and the JSON writer; no MPI (the links header only for TopologySpec, a plain struct).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "collectives/links/topology.hpp"

namespace perigee::bench::topology {

// One placement (out-of-place or in-place) of one size.
struct PlacementResult {
  double time_us = 0.0;   // emulated microseconds per iteration: wall / time_scale
  double wall_us = 0.0;   // measured wall microseconds per iteration (max over ranks)
  double model_us = 0.0;  // the timing model's duration (CollectiveStats::model_s), mean
  double alg_bw = 0.0;    // GB/s (1e9 B), bytes / emulated time
  double bus_bw = 0.0;    // alg_bw * 2(n-1)/n
  long long wrong = 0;    // elements that differ from the exact sum, over all ranks
};

struct RowResult {
  size_t bytes = 0;
  size_t count = 0;
  std::string type = "float";  // element type, nccl-tests' names (float, bfloat16)
  PlacementResult out_of_place;
  PlacementResult in_place;
  double predicted_us = 0.0;  // alpha-beta prediction (cost_model.hpp)
  std::string formula;        // the prediction's formula with its alpha and beta
  double meas_over_pred() const { return predicted_us > 0 ? out_of_place.time_us / predicted_us : 0.0; }
};

struct AlgorithmResult {
  std::string algorithm;  // "ring", ...
  bool skipped = false;
  std::string reason;               // why skipped
  double time_scale = 1.0;          // wall seconds per emulated second
  std::string time_scale_reason;    // how it was chosen
  double calibration_wall_s = 0.0;  // real (unemulated) wall time of the largest size, 0 if none
  std::string formula;              // prediction at the largest size
  std::string predicted_note;       // e.g. native: "ring schedule's prediction"
  std::vector<RowResult> rows;
  long long wrong_total() const;
  double avg_bus_bw() const;  // mean busbw over every out-of-place and in-place line
};

struct RankMapInfo {
  std::string mapping;
  int ranks_per_satellite = 1;
  std::vector<int> satellite_of_rank;
  int grid_x = 0, grid_y = 0;
  double intra_bandwidth_gbps = 0.0;
  double intra_latency_s = 0.0;
};

struct TopologyResult {
  std::string label;  // suite name, e.g. "starlink_plane"
  std::string name;   // Topology::name()
  collectives::links::TopologySpec spec;
  int nodes = 0;
  int links = 0;
  RankMapInfo rank_map;
  std::vector<AlgorithmResult> algorithms;
  std::vector<std::string> astra_sim_files;
  // The algorithm with the lowest emulated out-of-place time at the largest size ("" if none ran);
  // native is left out: its emulated delay is the ring schedule's.
  std::string winner() const;
};

}  // namespace perigee::bench::topology
