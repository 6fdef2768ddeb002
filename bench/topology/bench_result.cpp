// Summaries over perigee-bench results: wrong-element totals, average bus bandwidth, winners.
#include "bench/topology/bench_result.hpp"

#include <limits>

namespace perigee::bench::topology {

long long AlgorithmResult::wrong_total() const {
  long long n = 0;
  for (const auto& r : rows) n += r.out_of_place.wrong + r.in_place.wrong;
  return n;
}

double AlgorithmResult::avg_bus_bw() const {
  double sum = 0.0;
  int lines = 0;
  for (const auto& r : rows) {
    sum += r.out_of_place.bus_bw + r.in_place.bus_bw;
    lines += 2;
  }
  return lines ? sum / lines : 0.0;
}

std::string TopologyResult::winner() const {
  std::string best;
  double best_us = std::numeric_limits<double>::infinity();
  for (const auto& a : algorithms) {
    // native charges the ring schedule's emulated delay (MPI moves the data): not a candidate.
    if (a.skipped || a.rows.empty() || a.algorithm == "native") continue;
    const double t = a.rows.back().out_of_place.time_us;
    if (t < best_us) {
      best_us = t;
      best = a.algorithm;
    }
  }
  return best;
}

}  // namespace perigee::bench::topology
