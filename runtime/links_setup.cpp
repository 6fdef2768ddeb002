#include "runtime/links_setup.hpp"

#include <charconv>
#include <sstream>

namespace perigee::runtime {
namespace {

bool parse_int(std::string_view s, int* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_double(const std::string& s, double* out) {
  std::istringstream in(s);
  in >> *out;
  return !in.fail() && in.eof();
}

}  // namespace

Status parse_outages(const std::string& text, std::vector<collectives::links::Outage>* out) {
  out->clear();
  std::istringstream in(text);
  std::string entry;
  while (std::getline(in, entry, ';')) {
    if (entry.find_first_not_of(" \t") == std::string::npos) continue;
    const auto bad = [&](const char* why) {
      return make_error(StatusCode::kInvalidArgument, "[links] outages: entry \"", entry, "\": ", why,
                        " (expected a-b@start:end, e.g. 3-4@10:25.5)");
    };
    const size_t at = entry.find('@'), dash = entry.find('-'), colon = entry.find(':', at);
    if (at == std::string::npos || dash == std::string::npos || dash > at || colon == std::string::npos) {
      return bad("not of the form a-b@start:end");
    }
    collectives::links::Outage o;
    auto trim = [](std::string s) {
      const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    if (!parse_int(trim(entry.substr(0, dash)), &o.a) ||
        !parse_int(trim(entry.substr(dash + 1, at - dash - 1)), &o.b)) {
      return bad("satellites must be integers");
    }
    if (!parse_double(trim(entry.substr(at + 1, colon - at - 1)), &o.start_s) ||
        !parse_double(trim(entry.substr(colon + 1)), &o.end_s)) {
      return bad("start and end must be numbers (seconds)");
    }
    if (o.a < 0 || o.b < 0 || o.a == o.b) return bad("satellites must be two different ids >= 0");
    if (!(o.end_s > o.start_s)) return bad("end must be after start");
    out->push_back(o);
  }
  return Status::ok();
}

Status links_specs(const LinksConfig& links, collectives::links::TopologySpec* topo,
                   collectives::links::RankMapSpec* map) {
  collectives::links::TopologySpec t;
  t.kind = links.topology;
  t.planes = links.planes;
  t.sats_per_plane = links.sats_per_plane;
  t.inclination_deg = links.inclination_deg;
  t.altitude_km = links.altitude_km;
  t.phasing = links.phasing;
  t.bandwidth_gbps = links.bandwidth_gbps;
  t.setup_delay_s = links.setup_delay_s;
  t.cross_plane_max_lat_deg = links.cross_plane_max_lat_deg;
  t.fixed_latency_s = links.fixed_latency_ms * 1e-3;
  t.file = links.file;
  PERIGEE_CHECK(parse_outages(links.outages, &t.outages));
  collectives::links::RankMapSpec m;
  m.mapping = links.mapping;
  m.ranks_per_satellite = links.ranks_per_satellite;
  *topo = std::move(t);
  *map = std::move(m);
  return Status::ok();
}

Status make_links_communicator(const CommConfig& comm, const LinksConfig& links, MPI_Comm world,
                               std::unique_ptr<collectives::EmulatedLinkCommunicator>* out,
                               std::string* description) {
  int ranks = 0;
  PERIGEE_CHECK_MPI(MPI_Comm_size(world, &ranks));
  collectives::links::TopologySpec topo_spec;
  collectives::links::RankMapSpec map_spec;
  PERIGEE_CHECK(links_specs(links, &topo_spec, &map_spec));
  std::unique_ptr<collectives::links::Topology> topo;
  PERIGEE_CHECK(collectives::links::make_topology(topo_spec, &topo));
  collectives::links::RankMap map;
  PERIGEE_CHECK(collectives::links::make_rank_map(*topo, ranks, map_spec, &map));
  collectives::EmulationOptions opt;
  PERIGEE_CHECK(collectives::algorithms::parse_algorithm(comm.algorithm, &opt.algorithm));
  PERIGEE_REQUIRE(
      opt.algorithm != collectives::algorithms::Algorithm::kTorus2d || map.grid_x > 0,
      StatusCode::kInvalidArgument, "[comm] algorithm = \"torus2d\" needs the ", ranks,
      " ranks laid out as a block of a +Grid, which [links] mapping = \"", links.mapping, "\" on ",
      topo->name(),
      " does not give: use mapping = \"grid\" on a +Grid topology (walker_*, starlink_shell1, grid), or "
      "\"linear\" filling part of one plane or whole planes");
  opt.shape.grid_x = map.grid_x;
  opt.shape.grid_y = map.grid_y;
  opt.shape.ranks_per_node = map.ranks_per_satellite;
  opt.time_scale = links.time_scale;
  opt.t0_s = links.start_s;
  opt.timeout_s = comm.timeout_s;
  opt.timing.overhead_s = links.overhead_us * 1e-6;
  const std::string topo_name = topo->name();
  std::shared_ptr<const collectives::links::Topology> shared(std::move(topo));
  auto routes = collectives::links::make_route_fn(shared, map);
  PERIGEE_CHECK(collectives::EmulatedLinkCommunicator::create(world, std::move(routes), opt, out));
  std::ostringstream sats;
  for (size_t r = 0; r < map.satellite_of_rank.size() && r < 8; ++r)
    sats << (r ? "," : "") << map.satellite_of_rank[r];
  if (map.satellite_of_rank.size() > 8) sats << ",...";
  *description = str_cat("links (", topo_name, "; ", links.mapping, " mapping, satellites ", sats.str(),
                         "; algorithm ", comm.algorithm, "; time scale ", links.time_scale,
                         "; collectives time out after ", comm.timeout_s, " s)");
  return Status::ok();
}

}  // namespace perigee::runtime
