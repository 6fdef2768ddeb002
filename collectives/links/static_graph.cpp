// Fixed graphs and the "cluster" preset (see static_graph.hpp).
#include "collectives/links/static_graph.hpp"

#include <random>
#include <utility>

namespace perigee::collectives::links {

StaticGraphTopology::StaticGraphTopology(std::string name, std::vector<std::string> node_names,
                                         std::vector<StaticLink> links)
    : name_(std::move(name)), node_names_(std::move(node_names)), links_(std::move(links)) {
  for (const StaticLink& l : links_) add_link(l.a, l.b);
}

LinkState StaticGraphTopology::raw_link(int i, double) const {
  const StaticLink& l = links_[i];
  LinkState s;
  s.a = l.a;
  s.b = l.b;
  s.distance_m = l.distance_m;
  s.latency_s = l.latency_s;
  s.bandwidth_Bps = l.bandwidth_Bps;
  s.up = true;
  return s;
}

std::vector<Vec3> cluster_positions(const ClusterLayout& layout) {
  // minstd_rand's sequence is fixed by the standard, so the layout is the same everywhere.
  std::minstd_rand rng(81);
  auto jitter = [&] { return (static_cast<double>(rng() % 2001) - 1000.0) / 1000.0 * layout.jitter_m; };
  std::vector<Vec3> pos;
  const double cx = (layout.cols - 1) / 2.0, cy = (layout.rows - 1) / 2.0;
  for (int r = 0; r < layout.rows; ++r) {
    for (int c = 0; c < layout.cols; ++c) {
      const double dx = jitter(), dy = jitter();
      pos.push_back(Vec3{(c - cx) * layout.pitch_m + dx, (r - cy) * layout.pitch_m + dy, 0.0});
    }
  }
  return pos;
}

Status make_cluster_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out,
                             std::vector<Vec3>* positions) {
  const ClusterLayout layout;
  const std::vector<Vec3> pos = cluster_positions(layout);
  std::vector<std::string> names;
  for (int r = 0; r < layout.rows; ++r) {
    for (int c = 0; c < layout.cols; ++c) names.push_back(str_cat("r", r, "c", c));
  }
  std::vector<StaticLink> links;
  auto join = [&](int a, int b) {
    const double d = distance_m(pos[a], pos[b]);
    links.push_back(StaticLink{a, b, d, d / kSpeedOfLight, layout.bandwidth_Bps});
  };
  for (int r = 0; r < layout.rows; ++r) {
    for (int c = 0; c < layout.cols; ++c) {
      const int k = r * layout.cols + c;
      if (c + 1 < layout.cols) join(k, k + 1);
      if (r + 1 < layout.rows) join(k, k + layout.cols);
    }
  }
  auto topo = std::make_unique<StaticGraphTopology>(
      "cluster (81 satellites, 9x9 lattice, 150 m pitch, 650 km, 1.6 Tb/s)", std::move(names),
      std::move(links));
  PERIGEE_CHECK(topo->set_rules(spec.setup_delay_s, spec.outages));
  if (positions) *positions = pos;
  *out = std::move(topo);
  return Status::ok();
}

}  // namespace perigee::collectives::links
