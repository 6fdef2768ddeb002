// Walker delta / Walker star shells with +Grid ISLs: every satellite links to its two neighbours in
// its plane and to the satellite with the same index in each adjacent plane. Walker star leaves the
// seam open (no links between the last and the first plane). A link is physically possible while
// its chord stays above Earth radius + min_grazing_km; cross-plane links are also off while either
// end is above cross_plane_max_lat_deg (|latitude|).
#pragma once

#include <memory>
#include <string>

#include "collectives/links/geometry.hpp"
#include "collectives/links/link_model.hpp"

namespace perigee::collectives::links {

struct WalkerOptions {
  WalkerShell shell;
  bool seam_open = false;
  double grazing_m = 80e3;
  double bandwidth_Bps = 12.5e9;
  double cross_plane_max_lat_deg = 90.0;
  std::string name;
};

class WalkerTopology final : public LinkModelTopology {
 public:
  explicit WalkerTopology(const WalkerOptions& opt);

  std::string name() const override { return opt_.name; }
  int num_nodes() const override { return opt_.shell.planes * opt_.shell.per_plane; }
  GridShape grid() const override;
  double period_s() const override { return opt_.shell.period_s(); }

  const WalkerShell& shell() const { return opt_.shell; }
  bool is_cross_plane(int i) const { return cross_[i]; }
  // Satellite id of (plane, index): plane * per_plane + index.
  int satellite(int plane, int index) const { return plane * opt_.shell.per_plane + index; }
  Vec3 position(int sat, double t_s) const;

 protected:
  LinkState raw_link(int i, double t_s) const override;
  std::string raw_down_reason(int i, double t_s) const override;
  bool is_static() const override { return false; }

 private:
  WalkerOptions opt_;
  std::vector<bool> cross_;  // per link: joins two planes
};

// Validates the Walker fields of a spec (kind walker_delta / walker_star or a preset already
// filled in) and builds the topology; errors name the key.
Status make_walker_topology(const TopologySpec& spec, bool star, std::unique_ptr<LinkModelTopology>* out);

}  // namespace perigee::collectives::links
