// make_topology: builds the kind a TopologySpec names (see topology.hpp); presets fill in their
// shell and keep the spec's set-up delay, grazing height and outages.
#include "collectives/links/topology.hpp"

#include "collectives/links/graph_file.hpp"
#include "collectives/links/grid_topology.hpp"
#include "collectives/links/static_graph.hpp"
#include "collectives/links/walker_topology.hpp"

namespace perigee::collectives::links {

namespace {

// Starlink shell 1 (Hypatia main_starlink_550.py): 72 x 22, 53 deg, 550 km, F = 0. The geometry is
// the preset's; the link bandwidth (a property of the terminals, 100 Gb/s by default) is the spec's.
TopologySpec starlink_shell1(const TopologySpec& spec, int planes) {
  TopologySpec s = spec;
  s.planes = planes;
  s.sats_per_plane = 22;
  s.inclination_deg = 53.0;
  s.altitude_km = 550.0;
  s.phasing = 0;
  return s;
}

}  // namespace

Status make_topology(const TopologySpec& spec, std::unique_ptr<Topology>* out) {
  std::unique_ptr<LinkModelTopology> topo;
  if (spec.kind == "walker_delta") {
    PERIGEE_CHECK(make_walker_topology(spec, /*star=*/false, &topo));
  } else if (spec.kind == "walker_star") {
    PERIGEE_CHECK(make_walker_topology(spec, /*star=*/true, &topo));
  } else if (spec.kind == "starlink_shell1") {
    PERIGEE_CHECK(make_walker_topology(starlink_shell1(spec, 72), false, &topo));
  } else if (spec.kind == "starlink_plane") {
    PERIGEE_CHECK(make_walker_topology(starlink_shell1(spec, 1), false, &topo));
  } else if (spec.kind == "grid") {
    PERIGEE_CHECK(make_grid_topology(spec, &topo));
  } else if (spec.kind == "cluster") {
    PERIGEE_CHECK(make_cluster_topology(spec, &topo));
  } else if (spec.kind == "file") {
    PERIGEE_CHECK(make_file_topology(spec, &topo));
  } else {
    return make_error(StatusCode::kInvalidArgument, "links.kind '", spec.kind,
                      "' is not one of walker_delta, walker_star, starlink_shell1, starlink_plane, grid, "
                      "cluster, file");
  }
  *out = std::move(topo);
  return Status::ok();
}

}  // namespace perigee::collectives::links
