// Which satellite each rank runs on, and routes between ranks over a topology. Several ranks may
// share a satellite (GPUs in one satellite), joined by an intra-satellite link (NVLink-like).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/algorithms/route.hpp"
#include "collectives/links/topology.hpp"
#include "core/status.hpp"

namespace perigee::collectives::links {

struct RankMapSpec {
  std::string mapping = "linear";  // "linear": rank r on satellite r / ranks_per_satellite;
                                   // "spread": satellites spread evenly over the topology
                                   // (every k-th satellite, k = nodes / satellites used);
                                   // "grid": a gx x gy block of a +Grid (planes x per_plane)
                                   // "list": explicit satellites in `satellites`
  int ranks_per_satellite = 1;
  std::vector<int> satellites;           // "list"
  double intra_bandwidth_gbps = 3600.0;  // intra-satellite link (NVLink4-like, 450 GB/s)
  double intra_latency_s = 1e-6;
  int grid_x = 0, grid_y = 0;  // "grid": block of grid_x satellites along a plane by grid_y
                               // planes; 0 x 0 = the most square shape that fits
};

struct RankMap {
  std::vector<int> satellite_of_rank;
  int ranks_per_satellite = 1;
  double intra_bandwidth_Bps = 0.0;
  double intra_latency_s = 0.0;
  int grid_x = 0, grid_y = 0;  // ranks laid out as a grid_x x grid_y block (torus2d); 0 when not
};

// Maps `ranks` ranks onto the topology. Errors when there are more satellites needed than nodes.
Status make_rank_map(const Topology& topo, int ranks, const RankMapSpec& spec, RankMap* out);

// Shortest-latency routes over the links that are up at time t (Dijkstra), between the satellites
// of two ranks; ranks on one satellite use the intra-satellite link (directed ids after the ISLs).
// Route snapshots are cached per time bucket of `cache_s` seconds. The returned function keeps the
// topology alive.
algorithms::RouteFn make_route_fn(std::shared_ptr<const Topology> topo, RankMap map, double cache_s = 1.0);

}  // namespace perigee::collectives::links
