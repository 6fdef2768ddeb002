// make_rank_map: which satellite each rank runs on (linear, spread, grid, list; see rank_map.hpp).
// Ranks of one satellite are consecutive: rank r belongs to satellite group r / ranks_per_satellite.
#include <cmath>
#include <cstdlib>
#include <set>

#include "collectives/links/rank_map.hpp"

namespace perigee::collectives::links {

namespace {

// Most square gx x gy = sats with gx <= per_plane and gy <= planes; ties prefer the longer X.
bool square_block(int sats, int per_plane, int planes, int* gx, int* gy) {
  int best = -1;
  for (int x = 1; x <= per_plane && x <= sats; ++x) {
    if (sats % x != 0 || sats / x > planes) continue;
    const int y = sats / x;
    if (best < 0 || std::abs(x - y) < std::abs(*gx - *gy) ||
        (std::abs(x - y) == std::abs(*gx - *gy) && x > *gx)) {
      *gx = x;
      *gy = y;
      best = x;
    }
  }
  return best > 0;
}

Status grid_satellites(const Topology& topo, int sats, const RankMapSpec& spec, std::vector<int>* out,
                       int* gx, int* gy) {
  const GridShape g = topo.grid();
  PERIGEE_REQUIRE(g.planes > 0 && g.per_plane > 0, StatusCode::kInvalidArgument,
                  "rank map 'grid' needs a +Grid topology (walker_delta, walker_star, starlink_*, grid); ",
                  topo.name(), " is not one");
  if (spec.grid_x > 0 || spec.grid_y > 0) {
    PERIGEE_REQUIRE(
        spec.grid_x > 0 && spec.grid_y > 0 && static_cast<long long>(spec.grid_x) * spec.grid_y == sats,
        StatusCode::kInvalidArgument, "rank map 'grid': grid_x * grid_y = ", spec.grid_x, " * ", spec.grid_y,
        " must equal the ", sats, " satellites in use");
    PERIGEE_REQUIRE(spec.grid_x <= g.per_plane && spec.grid_y <= g.planes, StatusCode::kInvalidArgument,
                    "rank map 'grid': a ", spec.grid_x, " x ", spec.grid_y, " block does not fit in ",
                    g.per_plane, " satellites per plane x ", g.planes, " planes");
    *gx = spec.grid_x;
    *gy = spec.grid_y;
  } else {
    PERIGEE_REQUIRE(square_block(sats, g.per_plane, g.planes, gx, gy), StatusCode::kInvalidArgument,
                    "rank map 'grid': ", sats, " satellites cannot form a gx x gy block within ", g.per_plane,
                    " satellites per plane x ", g.planes, " planes");
  }
  out->clear();
  for (int y = 0; y < *gy; ++y) {
    for (int x = 0; x < *gx; ++x) out->push_back(y * g.per_plane + x);
  }
  return Status::ok();
}

}  // namespace

Status make_rank_map(const Topology& topo, int ranks, const RankMapSpec& spec, RankMap* out) {
  PERIGEE_REQUIRE(ranks >= 1, StatusCode::kInvalidArgument, "rank map: ranks must be >= 1 (got ", ranks, ")");
  const int rps = spec.ranks_per_satellite;
  PERIGEE_REQUIRE(rps >= 1, StatusCode::kInvalidArgument, "rank map: ranks_per_satellite must be >= 1 (got ",
                  rps, ")");
  PERIGEE_REQUIRE(spec.intra_bandwidth_gbps > 0.0 && spec.intra_latency_s >= 0.0,
                  StatusCode::kInvalidArgument,
                  "rank map: intra_bandwidth_gbps must be > 0 and intra_latency_s >= 0 (got ",
                  spec.intra_bandwidth_gbps, ", ", spec.intra_latency_s, ")");
  const int nodes = topo.num_nodes();
  const int sats = (ranks + rps - 1) / rps;
  PERIGEE_REQUIRE(sats <= nodes, StatusCode::kInvalidArgument, "rank map: ", ranks, " ranks at ", rps,
                  " per satellite need ", sats, " satellites, but ", topo.name(), " has ", nodes);

  RankMap m;
  m.ranks_per_satellite = rps;
  m.intra_bandwidth_Bps = spec.intra_bandwidth_gbps * 1e9 / 8.0;
  m.intra_latency_s = spec.intra_latency_s;
  std::vector<int> group_sat;  // satellite of each group of rps ranks
  const GridShape g = topo.grid();
  if (spec.mapping == "linear") {
    for (int s = 0; s < sats; ++s) group_sat.push_back(s);
    // Satellites 0..sats-1 of a +Grid are whole planes (or part of the first): a per_plane x planes block.
    if (g.per_plane > 0 && ranks % rps == 0) {
      if (sats <= g.per_plane) {
        m.grid_x = sats * rps;
        m.grid_y = 1;
      } else if (sats % g.per_plane == 0) {
        m.grid_x = g.per_plane * rps;
        m.grid_y = sats / g.per_plane;
      }
    }
  } else if (spec.mapping == "spread") {
    const int k = nodes / sats;
    for (int s = 0; s < sats; ++s) group_sat.push_back(s * k);
  } else if (spec.mapping == "grid") {
    PERIGEE_REQUIRE(ranks % rps == 0, StatusCode::kInvalidArgument, "rank map 'grid': ranks (", ranks,
                    ") must be a multiple of ranks_per_satellite (", rps, ")");
    int gx = 0, gy = 0;
    PERIGEE_CHECK(grid_satellites(topo, sats, spec, &group_sat, &gx, &gy));
    m.grid_x = gx * rps;
    m.grid_y = gy;
  } else if (spec.mapping == "list") {
    PERIGEE_REQUIRE(static_cast<int>(spec.satellites.size()) >= sats, StatusCode::kInvalidArgument,
                    "rank map 'list': ", ranks, " ranks at ", rps, " per satellite need ", sats,
                    " satellites, the list has ", spec.satellites.size());
    std::set<int> seen;
    for (int s = 0; s < sats; ++s) {
      const int sat = spec.satellites[s];
      PERIGEE_REQUIRE(sat >= 0 && sat < nodes, StatusCode::kInvalidArgument, "rank map 'list': entry ", s,
                      " is satellite ", sat, ", outside [0, ", nodes, ")");
      PERIGEE_REQUIRE(seen.insert(sat).second, StatusCode::kInvalidArgument, "rank map 'list': satellite ",
                      sat, " is listed twice (use ranks_per_satellite for several ranks on one satellite)");
      group_sat.push_back(sat);
    }
  } else {
    return make_error(StatusCode::kInvalidArgument, "rank map: mapping '", spec.mapping,
                      "' is not one of linear, spread, grid, list");
  }
  for (int r = 0; r < ranks; ++r) m.satellite_of_rank.push_back(group_sat[r / rps]);
  *out = std::move(m);
  return Status::ok();
}

}  // namespace perigee::collectives::links
