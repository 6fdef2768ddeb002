// Topology presets of perigee-bench: a suite is a list of named (topology spec, rank map spec)
// cases. "issue7": one Starlink plane, an 8x8 +Grid, Starlink shell 1 sampled to the ranks, the
// tight cluster and a graph read from a file.
#pragma once

#include <string>
#include <vector>

#include "collectives/links/rank_map.hpp"
#include "collectives/links/topology.hpp"
#include "core/status.hpp"

namespace perigee::bench::topology {

struct TopologyCase {
  std::string label;  // short name for tables, JSON and file names
  collectives::links::TopologySpec spec;
  collectives::links::RankMapSpec map;
};

// The cases of a named suite for `ranks` ranks; graph_file is the "file" topology's graph. Errors
// list the suites.
Status suite_cases(const std::string& suite, int ranks, const std::string& graph_file,
                   std::vector<TopologyCase>* out);

// Names of the suites, for help texts.
std::string suite_names();

}  // namespace perigee::bench::topology
