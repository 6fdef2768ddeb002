// Suite presets of perigee-bench (see suite.hpp).
#include "bench/topology/suite.hpp"

namespace perigee::bench::topology {

namespace {

TopologyCase make_case(std::string label, std::string kind, std::string mapping,
                       int ranks_per_satellite = 1) {
  TopologyCase c;
  c.label = std::move(label);
  c.spec.kind = std::move(kind);
  c.map.mapping = std::move(mapping);
  c.map.ranks_per_satellite = ranks_per_satellite;
  return c;
}

void issue7(int ranks, const std::string& graph_file, std::vector<TopologyCase>* out) {
  // One 22-satellite plane of shell 1 (a ring of 6.58 ms hops); ranks evenly around it (satellite
  // floor(r * 22 / ranks): 8 ranks are 2-3 hops apart all the way round, the wrap included, where
  // "spread" (every 2nd satellite) would leave an 8-hop gap between the last rank and the first).
  TopologyCase plane = make_case("starlink_plane", "starlink_plane", "list");
  const int plane_sats = 22;
  for (int r = 0; r < ranks && ranks <= plane_sats; ++r)
    plane.map.satellites.push_back(r * plane_sats / ranks);
  if (ranks > plane_sats) plane.map.mapping = "spread";  // more ranks than satellites: make_rank_map says so
  out->push_back(plane);

  // Abstract 8 x 8 +Grid torus, 1 ms per hop, 100 Gb/s; ranks on a grid block (8 ranks: 4 x 2), so
  // torus2d runs along the block's rows and columns.
  TopologyCase grid = make_case("grid8x8", "grid", "grid");
  if (ranks == 8) {
    grid.map.grid_x = 4;
    grid.map.grid_y = 2;
  }
  grid.spec.planes = 8;
  grid.spec.sats_per_plane = 8;
  grid.spec.fixed_latency_s = 1e-3;
  grid.spec.bandwidth_gbps = 100.0;
  out->push_back(grid);

  // Starlink shell 1 (72 x 22, 53 deg, 550 km), ranks spread evenly over its 1584 satellites.
  out->push_back(make_case("starlink_shell1", "starlink_shell1", "spread"));

  // Tight formation (Suncatcher-like, 1.6 Tb/s between near neighbours), two ranks (GPUs) per
  // satellite so that the hierarchical algorithm has an intra-satellite level.
  out->push_back(make_case("cluster", "cluster", "linear", 2));

  // Any graph from a file (bench/topology/example_graph.txt by default).
  TopologyCase file = make_case("file_graph", "file", "linear");
  file.spec.file = graph_file;
  out->push_back(file);
}

}  // namespace

std::string suite_names() {
  return "issue7";
}

Status suite_cases(const std::string& suite, int ranks, const std::string& graph_file,
                   std::vector<TopologyCase>* out) {
  out->clear();
  if (suite == "issue7") {
    issue7(ranks, graph_file, out);
    return Status::ok();
  }
  return make_error(StatusCode::kInvalidArgument, "unknown suite '", suite, "' (known: ", suite_names(), ")");
}

}  // namespace perigee::bench::topology
