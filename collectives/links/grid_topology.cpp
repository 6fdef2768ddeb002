// Abstract +Grid torus (see grid_topology.hpp).
#include "collectives/links/grid_topology.hpp"

#include <cmath>

#include "collectives/links/geometry.hpp"

namespace perigee::collectives::links {

GridTopology::GridTopology(int planes, int per_plane, double latency_s, double bandwidth_Bps)
    : planes_(planes), per_plane_(per_plane), latency_s_(latency_s), bandwidth_Bps_(bandwidth_Bps) {
  const int p = planes_, n = per_plane_;
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < n; ++j) {
      const int s = i * n + j;
      if (n >= 3 || (n == 2 && j == 0)) add_link(s, i * n + (j + 1) % n);
      if (p >= 3 || (p == 2 && i == 0)) add_link(s, ((i + 1) % p) * n + j);
    }
  }
}

std::string GridTopology::name() const {
  return str_cat("grid (", planes_, "x", per_plane_, " torus, ", latency_s_ * 1e3, " ms, ",
                 bandwidth_Bps_ * 8.0 / 1e9, " Gb/s)");
}

LinkState GridTopology::raw_link(int i, double) const {
  LinkState s;
  s.a = ends(i).first;
  s.b = ends(i).second;
  s.latency_s = latency_s_;
  s.distance_m = latency_s_ * kSpeedOfLight;
  s.bandwidth_Bps = bandwidth_Bps_;
  s.up = true;
  return s;
}

Status make_grid_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out) {
  PERIGEE_REQUIRE(spec.planes >= 1 && spec.sats_per_plane >= 1 &&
                      static_cast<long long>(spec.planes) * spec.sats_per_plane <= 100000,
                  StatusCode::kInvalidArgument,
                  "links.planes and links.sats_per_plane must be >= 1 for grid (got ", spec.planes, " x ",
                  spec.sats_per_plane, ")");
  PERIGEE_REQUIRE(spec.fixed_latency_s >= 0.0 && std::isfinite(spec.fixed_latency_s),
                  StatusCode::kInvalidArgument, "links.fixed_latency_s must be >= 0 for grid (got ",
                  spec.fixed_latency_s, ")");
  PERIGEE_REQUIRE(spec.bandwidth_gbps > 0.0, StatusCode::kInvalidArgument,
                  "links.bandwidth_gbps must be > 0 (got ", spec.bandwidth_gbps, ")");
  auto topo = std::make_unique<GridTopology>(spec.planes, spec.sats_per_plane, spec.fixed_latency_s,
                                             spec.bandwidth_gbps * 1e9 / 8.0);
  PERIGEE_CHECK(topo->set_rules(spec.setup_delay_s, spec.outages));
  *out = std::move(topo);
  return Status::ok();
}

}  // namespace perigee::collectives::links
