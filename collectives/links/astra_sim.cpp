// ASTRA-sim export (see astra_sim.hpp). Dimensions, fastest-varying first as ASTRA-sim orders NPUs:
//   - ranks_per_satellite > 1: a Switch of the ranks of one satellite (intra-satellite link);
//   - a grid rank map (grid_x, grid_y): Ring X (satellites along a plane), Ring Y (planes);
//   - otherwise one Ring of the satellites in rank order.
// Per Ring dimension, latency is the mean route latency between ring neighbours at t and bandwidth
// the smallest bottleneck of those routes. Dimensions of one NPU are left out.
#include "collectives/links/astra_sim.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

namespace perigee::collectives::links {

namespace {

struct Dim {
  std::string topology;  // "Ring" or "Switch"
  int npus = 1;
  double bandwidth_GBps = 0.0;
  double latency_ns = 0.0;
};

// Ring dimension over `pairs` of (rank, next rank in the ring).
Status ring_dim(const algorithms::RouteFn& routes, const std::vector<std::pair<int, int>>& pairs, int npus,
                double t_s, Dim* out) {
  double sum = 0.0, bw = std::numeric_limits<double>::infinity();
  for (const auto& [a, b] : pairs) {
    algorithms::Route r;
    PERIGEE_CHECK(routes(a, b, t_s, &r));
    for (const auto& h : r.hops) {
      sum += h.latency_s;
      bw = std::min(bw, h.bandwidth_Bps);
    }
  }
  out->topology = "Ring";
  out->npus = npus;
  out->latency_ns = pairs.empty() ? 0.0 : sum / pairs.size() * 1e9;
  out->bandwidth_GBps = std::isfinite(bw) ? bw / 1e9 : 0.0;
  return Status::ok();
}

const char* implementation(algorithms::Algorithm a) {
  switch (a) {
    case algorithms::Algorithm::kRabenseifner:
      return "halvingDoubling";
    case algorithms::Algorithm::kDoubleBinaryTree:
      return "doubleBinaryTree";
    default:  // ring, torus2d and hierarchical (ring per dimension); native and auto as ring
      return "ring";
  }
}

std::string number(double v) {
  std::ostringstream os;
  os << std::setprecision(12) << v;
  std::string s = os.str();
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

Status write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  PERIGEE_REQUIRE(f.good(), StatusCode::kIoError, "write_astra_sim: cannot open '", path, "' for writing");
  f << text;
  f.flush();
  PERIGEE_REQUIRE(f.good(), StatusCode::kIoError, "write_astra_sim: write to '", path, "' failed");
  return Status::ok();
}

}  // namespace

Status write_astra_sim(const Topology& topo, const RankMap& map, algorithms::Algorithm a, double t_s,
                       const std::string& prefix) {
  const int ranks = static_cast<int>(map.satellite_of_rank.size());
  PERIGEE_REQUIRE(ranks >= 1, StatusCode::kInvalidArgument, "write_astra_sim: the rank map is empty");
  PERIGEE_REQUIRE(!prefix.empty(), StatusCode::kInvalidArgument, "write_astra_sim: empty output prefix");
  // Routes over the caller's topology without taking ownership of it.
  std::shared_ptr<const Topology> view(&topo, [](const Topology*) {});
  const algorithms::RouteFn routes = make_route_fn(view, map, /*cache_s=*/0.0);

  int rps = std::max(1, map.ranks_per_satellite);
  if (ranks % rps != 0) rps = 1;  // a partly filled satellite: one flat ring of every rank
  const int groups = ranks / rps;
  std::vector<Dim> dims;
  if (rps > 1) {
    dims.push_back(Dim{"Switch", rps, map.intra_bandwidth_Bps / 1e9, map.intra_latency_s * 1e9});
  }
  const bool grid = map.grid_x > 0 && map.grid_y > 0 &&
                    static_cast<long long>(map.grid_x) * map.grid_y == ranks && map.grid_x % rps == 0;
  if (grid) {
    const int gx = map.grid_x / rps, gy = map.grid_y;
    auto rank_of = [&](int x, int y) { return y * map.grid_x + x * rps; };
    std::vector<std::pair<int, int>> xs, ys;
    for (int y = 0; y < gy; ++y) {
      for (int x = 0; x < gx; ++x) {
        if (gx > 1) xs.emplace_back(rank_of(x, y), rank_of((x + 1) % gx, y));
        if (gy > 1) ys.emplace_back(rank_of(x, y), rank_of(x, (y + 1) % gy));
      }
    }
    Dim dx, dy;
    PERIGEE_CHECK(ring_dim(routes, xs, gx, t_s, &dx));
    PERIGEE_CHECK(ring_dim(routes, ys, gy, t_s, &dy));
    dims.push_back(dx);
    dims.push_back(dy);
  } else {
    std::vector<std::pair<int, int>> ring;
    for (int g = 0; g < groups && groups > 1; ++g) ring.emplace_back(g * rps, ((g + 1) % groups) * rps);
    Dim d;
    PERIGEE_CHECK(ring_dim(routes, ring, groups, t_s, &d));
    dims.push_back(d);
  }
  std::erase_if(dims, [](const Dim& d) { return d.npus <= 1; });
  if (dims.empty()) dims.push_back(Dim{"Ring", 1, map.intra_bandwidth_Bps / 1e9, 0.0});

  std::ostringstream yml;
  yml << "# ASTRA-sim analytical network written by Perigee\n"
      << "# topology: " << topo.name() << "\n"
      << "# " << ranks << " ranks, " << rps << " per satellite, at t = " << t_s
      << " s; bandwidth in GB/s per link "
      << "per direction, latency in ns (mean route latency between ring neighbours)\n";
  auto list = [&](const char* key, auto field) {
    yml << key << ": [ ";
    for (size_t i = 0; i < dims.size(); ++i) yml << (i ? ", " : "") << field(dims[i]);
    yml << " ]\n";
  };
  list("topology", [](const Dim& d) { return d.topology; });
  list("npus_count", [](const Dim& d) { return std::to_string(d.npus); });
  list("bandwidth", [](const Dim& d) { return number(d.bandwidth_GBps); });
  list("latency", [](const Dim& d) { return number(d.latency_ns); });
  PERIGEE_CHECK(write_file(prefix + ".network.yml", yml.str()));

  nlohmann::json impl = nlohmann::json::array(), ring = nlohmann::json::array();
  for (size_t i = 0; i < dims.size(); ++i) {
    impl.push_back(implementation(a));
    ring.push_back("ring");
  }
  nlohmann::json sys = {
      {"scheduling-policy", "LIFO"},
      {"endpoint-delay", 10},
      {"active-chunks-per-dimension", 1},
      {"preferred-dataset-splits", 4},
      {"all-reduce-implementation", impl},
      {"all-gather-implementation", ring},
      {"reduce-scatter-implementation", ring},
      {"all-to-all-implementation", ring},
      {"collective-optimization", "localBWAware"},
      {"local-mem-bw", 1600},
      {"boost-mode", 0},
      {"roofline-enabled", 0},
      {"peak-perf", 900},
  };
  PERIGEE_CHECK(write_file(prefix + ".system.json", sys.dump(2) + "\n"));
  return Status::ok();
}

}  // namespace perigee::collectives::links
