// "grid": an abstract planes x per_plane +Grid torus (wrap-around in both directions) with one
// fixed per-hop latency and bandwidth and no geometry; links never lose line of sight (outages and
// the set-up delay after an outage still apply). Link order as in WalkerTopology: per satellite
// (plane * per_plane + index), the link to the next index, then the link to the next plane.
#pragma once

#include <memory>

#include "collectives/links/link_model.hpp"

namespace perigee::collectives::links {

class GridTopology final : public LinkModelTopology {
 public:
  GridTopology(int planes, int per_plane, double latency_s, double bandwidth_Bps);

  std::string name() const override;
  int num_nodes() const override { return planes_ * per_plane_; }
  GridShape grid() const override { return GridShape{planes_, per_plane_, false}; }
  double period_s() const override { return 0.0; }

 protected:
  LinkState raw_link(int i, double t_s) const override;
  std::string raw_down_reason(int, double) const override { return "down"; }
  bool is_static() const override { return true; }

 private:
  int planes_, per_plane_;
  double latency_s_, bandwidth_Bps_;
};

Status make_grid_topology(const TopologySpec& spec, std::unique_ptr<LinkModelTopology>* out);

}  // namespace perigee::collectives::links
