// Every algorithm with every parameter choice that fits a world size, for the tests.
#pragma once

#include <string>
#include <vector>

#include "collectives/algorithms/schedule.hpp"

namespace perigee::collectives::algorithms::testing {

struct Case {
  Algorithm algorithm;
  ScheduleParams params;
  std::string label() const {
    return str_cat(algorithm_name(algorithm), " p=", params.ranks, " count=", params.count,
                   " grid=", params.grid_x, "x", params.grid_y, " rpn=", params.ranks_per_node,
                   " chunks=", params.pipeline_chunks);
  }
};

inline std::vector<Case> cases_for(int ranks, size_t count) {
  std::vector<Case> out;
  ScheduleParams base;
  base.ranks = ranks;
  base.count = count;
  out.push_back({Algorithm::kRing, base});
  out.push_back({Algorithm::kRabenseifner, base});
  for (int chunks : {0, 1, 3}) {
    ScheduleParams p = base;
    p.pipeline_chunks = chunks;
    out.push_back({Algorithm::kDoubleBinaryTree, p});
  }
  for (int d = 1; d <= ranks; ++d) {
    if (ranks % d != 0) continue;
    ScheduleParams torus = base;
    torus.grid_x = d;
    torus.grid_y = ranks / d;
    out.push_back({Algorithm::kTorus2d, torus});
    ScheduleParams hier = base;
    hier.ranks_per_node = d;
    out.push_back({Algorithm::kHierarchical, hier});
  }
  return out;
}

}  // namespace perigee::collectives::algorithms::testing
