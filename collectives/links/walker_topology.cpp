// +Grid Walker shells (see walker_topology.hpp).
#include "collectives/links/walker_topology.hpp"

#include <cmath>
#include <sstream>

namespace perigee::collectives::links {

WalkerTopology::WalkerTopology(const WalkerOptions& opt) : opt_(opt) {
  const int p = opt_.shell.planes, n = opt_.shell.per_plane;
  // Per satellite: the link to the next one in its plane, then the one to the next plane. A ring
  // of two has one link, not two; a plane (or a ring of planes) of one has none.
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < n; ++j) {
      const int s = satellite(i, j);
      if (n >= 3 || (n == 2 && j == 0)) {
        add_link(s, satellite(i, (j + 1) % n));
        cross_.push_back(false);
      }
      const bool last = (i == p - 1);
      const bool wrap_ok = !opt_.seam_open && p >= 3;
      if ((!last && p >= 2) || (last && wrap_ok)) {
        add_link(s, satellite((i + 1) % p, j));
        cross_.push_back(true);
      }
    }
  }
}

GridShape WalkerTopology::grid() const {
  return GridShape{opt_.shell.planes, opt_.shell.per_plane, opt_.seam_open};
}

Vec3 WalkerTopology::position(int sat, double t_s) const {
  const int n = opt_.shell.per_plane;
  return opt_.shell.position(sat / n, sat % n, t_s);
}

LinkState WalkerTopology::raw_link(int i, double t_s) const {
  const auto& [a, b] = ends(i);
  const Vec3 pa = position(a, t_s), pb = position(b, t_s);
  LinkState s;
  s.a = a;
  s.b = b;
  s.distance_m = distance_m(pa, pb);
  s.latency_s = s.distance_m / kSpeedOfLight;
  s.bandwidth_Bps = opt_.bandwidth_Bps;
  s.up = line_of_sight(pa, pb, opt_.grazing_m);
  if (s.up && cross_[i] && opt_.cross_plane_max_lat_deg < 90.0) {
    s.up = std::abs(latitude_deg(pa)) <= opt_.cross_plane_max_lat_deg &&
           std::abs(latitude_deg(pb)) <= opt_.cross_plane_max_lat_deg;
  }
  return s;
}

std::string WalkerTopology::raw_down_reason(int i, double t_s) const {
  const auto& [a, b] = ends(i);
  const Vec3 pa = position(a, t_s), pb = position(b, t_s);
  if (!line_of_sight(pa, pb, opt_.grazing_m)) {
    return str_cat("no line of sight (chord dips to ", segment_min_radius_m(pa, pb) / 1e3, " km < ",
                   (kEarthRadiusM + opt_.grazing_m) / 1e3, " km from Earth's centre)");
  }
  return str_cat("cross-plane link above ", opt_.cross_plane_max_lat_deg, " deg latitude (", latitude_deg(pa),
                 ", ", latitude_deg(pb), " deg)");
}

Status make_walker_topology(const TopologySpec& spec, bool star, std::unique_ptr<LinkModelTopology>* out) {
  const char* kind = star ? "walker_star" : "walker_delta";
  PERIGEE_REQUIRE(spec.planes >= 1, StatusCode::kInvalidArgument, "links.planes must be >= 1 for ", kind,
                  " (got ", spec.planes, ")");
  PERIGEE_REQUIRE(spec.sats_per_plane >= 1, StatusCode::kInvalidArgument,
                  "links.sats_per_plane must be >= 1 for ", kind, " (got ", spec.sats_per_plane, ")");
  PERIGEE_REQUIRE(spec.altitude_km > 0.0 && std::isfinite(spec.altitude_km), StatusCode::kInvalidArgument,
                  "links.altitude_km must be > 0 (got ", spec.altitude_km, ")");
  PERIGEE_REQUIRE(spec.inclination_deg >= 0.0 && spec.inclination_deg <= 180.0, StatusCode::kInvalidArgument,
                  "links.inclination_deg must be in [0, 180] (got ", spec.inclination_deg, ")");
  const long long total = static_cast<long long>(spec.planes) * spec.sats_per_plane;
  PERIGEE_REQUIRE(spec.phasing >= 0 && (spec.phasing < spec.planes || spec.planes == 1),
                  StatusCode::kInvalidArgument, "links.phasing (Walker F) must be in [0, planes) (got ",
                  spec.phasing, " with ", spec.planes, " planes)");
  PERIGEE_REQUIRE(total <= 100000, StatusCode::kInvalidArgument, "links: ", total,
                  " satellites is more than this model handles (100000)");
  PERIGEE_REQUIRE(spec.bandwidth_gbps > 0.0, StatusCode::kInvalidArgument,
                  "links.bandwidth_gbps must be > 0 (got ", spec.bandwidth_gbps, ")");
  PERIGEE_REQUIRE(spec.min_grazing_km >= 0.0 && spec.min_grazing_km < spec.altitude_km,
                  StatusCode::kInvalidArgument, "links.min_grazing_km must be in [0, altitude_km) (got ",
                  spec.min_grazing_km, ")");
  PERIGEE_REQUIRE(spec.cross_plane_max_lat_deg >= 0.0, StatusCode::kInvalidArgument,
                  "links.cross_plane_max_lat_deg must be >= 0 (got ", spec.cross_plane_max_lat_deg, ")");
  WalkerOptions opt;
  opt.shell.planes = spec.planes;
  opt.shell.per_plane = spec.sats_per_plane;
  opt.shell.altitude_m = spec.altitude_km * 1e3;
  opt.shell.inclination_deg = spec.inclination_deg;
  opt.shell.raan_span_deg = star ? 180.0 : 360.0;
  opt.shell.phasing = spec.phasing;
  opt.seam_open = star;
  opt.grazing_m = spec.min_grazing_km * 1e3;
  opt.bandwidth_Bps = spec.bandwidth_gbps * 1e9 / 8.0;
  opt.cross_plane_max_lat_deg = spec.cross_plane_max_lat_deg;
  std::ostringstream name;
  name << (spec.kind.empty() ? kind : spec.kind) << " (" << spec.planes << "x" << spec.sats_per_plane << ", "
       << spec.inclination_deg << " deg, " << spec.altitude_km << " km";
  if (spec.kind != "starlink_plane" && spec.kind != "starlink_shell1") name << ", F=" << spec.phasing;
  name << ")";
  opt.name = name.str();
  auto topo = std::make_unique<WalkerTopology>(opt);
  PERIGEE_CHECK(topo->set_rules(spec.setup_delay_s, spec.outages));
  *out = std::move(topo);
  return Status::ok();
}

}  // namespace perigee::collectives::links
