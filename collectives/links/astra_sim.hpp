// ASTRA-sim cross-check: writes the analytical network YAML (topology per dimension, npus_count,
// bandwidth in GB/s, latency in ns) and the system JSON (all-reduce implementation per dimension)
// that describe a topology + rank map, so users can compare our emulated times with the simulator.
#pragma once

#include <string>

#include "collectives/algorithms/schedule.hpp"
#include "collectives/links/rank_map.hpp"
#include "collectives/links/topology.hpp"
#include "core/status.hpp"

namespace perigee::collectives::links {

// Writes <prefix>.network.yml and <prefix>.system.json. Grids become [Ring, Ring] (X = per plane,
// Y = planes), other graphs a one-dimensional Ring of the ranks with the mean route latency.
Status write_astra_sim(const Topology& topo, const RankMap& map, algorithms::Algorithm a, double t_s,
                       const std::string& prefix);

}  // namespace perigee::collectives::links
