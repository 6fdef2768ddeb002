// StaticGraphTopology: any fixed graph of satellites (nodes 0..n-1, optional names) and links with
// their own distance, latency and bandwidth; the geometry never changes (period 0), so only outage
// windows and the set-up delay after them take links down. Used by the "cluster" preset and by
// "file" graphs (graph_file.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "collectives/links/geometry.hpp"
#include "collectives/links/link_model.hpp"

namespace perigee::collectives::links {

struct StaticLink {
  int a = 0, b = 0;
  double distance_m = 0.0;
  double latency_s = 0.0;
  double bandwidth_Bps = 0.0;
};

class StaticGraphTopology final : public LinkModelTopology {
 public:
  StaticGraphTopology(std::string name, std::vector<std::string> node_names, std::vector<StaticLink> links);

  std::string name() const override { return name_; }
  int num_nodes() const override { return static_cast<int>(node_names_.size()); }
  GridShape grid() const override { return GridShape{}; }
  double period_s() const override { return 0.0; }
  const std::string& node_name(int n) const { return node_names_[n]; }

 protected:
  LinkState raw_link(int i, double t_s) const override;
  std::string raw_down_reason(int, double) const override { return "down"; }
  bool is_static() const override { return true; }

 private:
  std::string name_;
  std::vector<std::string> node_names_;
  std::vector<StaticLink> links_;
};

// The "cluster" preset (Suncatcher-like tight formation, static snapshot): 81 satellites on a 9x9
// planar lattice of 150 m pitch centred on the formation's centre, each moved by a fixed
// pseudo-random offset of at most 10 m per axis (so neighbours are 122-178 m apart and every
// satellite is within 863 m of the centre), links to the 4 lattice neighbours (144 links, no
// wrap-around), latency = distance / c, 1.6 Tb/s per link per direction. Node k is row k / 9,
// column k % 9, named "r<row>c<col>". `positions` (optional) receives the positions in metres
// (x, y in the formation plane, z = 0).
struct ClusterLayout {
  int rows = 9, cols = 9;
  double pitch_m = 150.0;
  double jitter_m = 10.0;
  double bandwidth_Bps = 1.6e12 / 8.0;
};
Status make_cluster_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out,
                             std::vector<Vec3>* positions = nullptr);
std::vector<Vec3> cluster_positions(const ClusterLayout& layout);

}  // namespace perigee::collectives::links
