// nccl-tests-style text output of perigee-bench (rank 0 only): a header block per topology, then
// per algorithm the column header, one row per size (out-of-place | in-place | predicted,
// meas/pred), and the closing "# Out of bounds values" / "# Avg bus bandwidth" lines; a final
// summary with the winner per topology. Times are emulated microseconds.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "bench/topology/bench_result.hpp"

namespace perigee::bench::topology {

struct RunInfo {
  int ranks = 1;
  size_t min_bytes = 0, max_bytes = 0;
  double factor = 2.0;
  size_t step_bytes = 0;
  int warmup = 1, iters = 5;
  std::string suite;       // "" when a single topology was given
  std::string time_scale;  // "auto" or the fixed value
};

class TablePrinter {
 public:
  explicit TablePrinter(std::FILE* out) : out_(out) {}

  void run_header(const RunInfo& info);
  void topology_header(const TopologyResult& t);
  void algorithm_header(const AlgorithmResult& a);
  void row(const RowResult& r);
  void algorithm_footer(const AlgorithmResult& a);
  void skipped(const AlgorithmResult& a);
  void summary(const std::vector<TopologyResult>& topologies);
  void note(const std::string& line);  // "# <line>"

 private:
  std::FILE* out_;
};

// Right-aligned number in `width` characters with as many decimals (<= 2) as fit.
std::string format_fixed(double v, int width);

}  // namespace perigee::bench::topology
