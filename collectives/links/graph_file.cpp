// Parser of the text link-graph format (see graph_file.hpp).
#include "collectives/links/graph_file.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "collectives/links/geometry.hpp"
#include "collectives/links/static_graph.hpp"
#include "core/read_file.hpp"

namespace perigee::collectives::links {

namespace {

bool parse_int(const std::string& s, long long* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

}  // namespace

Status parse_graph_text(const std::string& text, const std::string& source, double default_bandwidth_gbps,
                        std::unique_ptr<LinkModelTopology>* out) {
  constexpr long long kMaxNodes = 1000000;
  std::vector<std::string> names;  // by id; empty slot = not declared
  std::vector<bool> declared;
  std::vector<StaticLink> links;
  std::set<std::pair<int, int>> pairs;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const auto where = [&] { return str_cat(source, ":", lineno, ": "); };
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (tok.empty()) continue;
    if (tok[0] == "node") {
      PERIGEE_REQUIRE(tok.size() == 2 || tok.size() == 3, StatusCode::kInvalidArgument, where(),
                      "expected 'node <id> [name]', got ", tok.size() - 1, " fields");
      long long id = 0;
      PERIGEE_REQUIRE(parse_int(tok[1], &id) && id >= 0 && id < kMaxNodes, StatusCode::kInvalidArgument,
                      where(), "node id '", tok[1], "' is not an integer in [0, ", kMaxNodes, ")");
      if (id >= static_cast<long long>(declared.size())) {
        declared.resize(id + 1, false);
        names.resize(id + 1);
      }
      PERIGEE_REQUIRE(!declared[id], StatusCode::kInvalidArgument, where(), "node ", id, " declared twice");
      declared[id] = true;
      names[id] = tok.size() == 3 ? tok[2] : str_cat("n", id);
    } else if (tok[0] == "link") {
      PERIGEE_REQUIRE(tok.size() >= 4, StatusCode::kInvalidArgument, where(),
                      "expected 'link <a> <b> latency_ms=<x>|distance_km=<x> [bandwidth_gbps=<y>]'");
      long long ab[2] = {0, 0};
      for (int k = 0; k < 2; ++k) {
        PERIGEE_REQUIRE(parse_int(tok[1 + k], &ab[k]), StatusCode::kInvalidArgument, where(), "link end '",
                        tok[1 + k], "' is not an integer node id");
        PERIGEE_REQUIRE(ab[k] >= 0 && ab[k] < static_cast<long long>(declared.size()) && declared[ab[k]],
                        StatusCode::kInvalidArgument, where(), "link end ", ab[k],
                        " is not a node declared above");
      }
      PERIGEE_REQUIRE(ab[0] != ab[1], StatusCode::kInvalidArgument, where(), "link joins node ", ab[0],
                      " to itself");
      const int a = static_cast<int>(ab[0]), b = static_cast<int>(ab[1]);
      PERIGEE_REQUIRE(pairs.insert({std::min(a, b), std::max(a, b)}).second, StatusCode::kInvalidArgument,
                      where(), "second link between nodes ", a, " and ", b);
      double latency_ms = -1.0, distance_km = -1.0, bandwidth_gbps = default_bandwidth_gbps;
      for (size_t k = 3; k < tok.size(); ++k) {
        const size_t eq = tok[k].find('=');
        PERIGEE_REQUIRE(eq != std::string::npos, StatusCode::kInvalidArgument, where(),
                        "expected key=value, got '", tok[k], "'");
        const std::string key = tok[k].substr(0, eq), value = tok[k].substr(eq + 1);
        double v = 0.0;
        PERIGEE_REQUIRE(parse_double(value, &v), StatusCode::kInvalidArgument, where(), key, "='", value,
                        "' is not a number");
        if (key == "latency_ms") {
          PERIGEE_REQUIRE(latency_ms < 0.0, StatusCode::kInvalidArgument, where(), "latency_ms given twice");
          PERIGEE_REQUIRE(v >= 0.0, StatusCode::kInvalidArgument, where(), "latency_ms must be >= 0 (got ", v,
                          ")");
          latency_ms = v;
        } else if (key == "distance_km") {
          PERIGEE_REQUIRE(distance_km < 0.0, StatusCode::kInvalidArgument, where(),
                          "distance_km given twice");
          PERIGEE_REQUIRE(v >= 0.0, StatusCode::kInvalidArgument, where(), "distance_km must be >= 0 (got ",
                          v, ")");
          distance_km = v;
        } else if (key == "bandwidth_gbps") {
          PERIGEE_REQUIRE(v > 0.0, StatusCode::kInvalidArgument, where(), "bandwidth_gbps must be > 0 (got ",
                          v, ")");
          bandwidth_gbps = v;
        } else {
          return make_error(StatusCode::kInvalidArgument, where(), "unknown key '", key,
                            "' (expected latency_ms, distance_km or bandwidth_gbps)");
        }
      }
      PERIGEE_REQUIRE((latency_ms >= 0.0) != (distance_km >= 0.0), StatusCode::kInvalidArgument, where(),
                      "give exactly one of latency_ms and distance_km");
      StaticLink l;
      l.a = a;
      l.b = b;
      if (latency_ms >= 0.0) {
        l.latency_s = latency_ms * 1e-3;
        l.distance_m = l.latency_s * kSpeedOfLight;
      } else {
        l.distance_m = distance_km * 1e3;
        l.latency_s = l.distance_m / kSpeedOfLight;
      }
      l.bandwidth_Bps = bandwidth_gbps * 1e9 / 8.0;
      links.push_back(l);
    } else {
      return make_error(StatusCode::kInvalidArgument, where(), "unknown statement '", tok[0],
                        "' (expected node or link)");
    }
  }
  PERIGEE_REQUIRE(!declared.empty(), StatusCode::kInvalidArgument, source, ": no nodes declared");
  for (size_t id = 0; id < declared.size(); ++id) {
    PERIGEE_REQUIRE(declared[id], StatusCode::kInvalidArgument, source, ": node ", id,
                    " is missing (node ids must be 0..", declared.size() - 1, ")");
  }
  const size_t n = names.size(), m = links.size();
  *out = std::make_unique<StaticGraphTopology>(str_cat("file ", source, " (", n, " nodes, ", m, " links)"),
                                               std::move(names), std::move(links));
  return Status::ok();
}

Status make_file_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out) {
  PERIGEE_REQUIRE(!spec.file.empty(), StatusCode::kInvalidArgument,
                  "links.file must name a graph file for kind file");
  std::string text;
  PERIGEE_CHECK(read_small_file(spec.file, "links.file", &text));
  std::unique_ptr<LinkModelTopology> topo;
  PERIGEE_CHECK(parse_graph_text(text, spec.file, spec.bandwidth_gbps, &topo));
  PERIGEE_CHECK(topo->set_rules(spec.setup_delay_s, spec.outages));
  *out = std::move(topo);
  return Status::ok();
}

}  // namespace perigee::collectives::links
