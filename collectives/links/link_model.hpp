// LinkModelTopology: the part every topology kind shares. A concrete kind lists its links (satellite
// pairs) and says, per link and time, its geometry and whether it is physically possible (line of
// sight, latitude rule). This base class adds the availability rules of TopologySpec:
//   available(t) = physically possible at t AND not inside an outage window [start, end)
//   up(t)        = available over the whole of [t - setup_delay_s, t]
// i.e. a link that became available at time u is usable from u + setup_delay_s. Static kinds (no
// geometry changes) check outages analytically; orbiting kinds sample the geometry back in time
// in steps of at most 1 s (line of sight changes on orbital time scales, minutes).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "collectives/links/topology.hpp"
#include "core/status.hpp"

namespace perigee::collectives::links {

class LinkModelTopology : public Topology {
 public:
  LinkState link(int i, double t_s) const final;
  int num_links() const final { return static_cast<int>(ends_.size()); }

  // Why link i is down at t ("no line of sight (chord dips to 6420.3 km < 6458.1 km)",
  // "outage [10, 20) s", "setting up until t=12.0 s"); "up" when it is up.
  std::string down_reason(int i, double t_s) const;

  // Index of the link between satellites a and b (either order), or -1.
  int find_link(int a, int b) const;
  const std::pair<int, int>& ends(int i) const { return ends_[i]; }

  // Installs the outage windows and set-up delay; errors name the outage without a link.
  Status set_rules(double setup_delay_s, const std::vector<Outage>& outages);
  double last_rule_change_s(double t_s) const final;

 protected:
  // Geometry and physical possibility of link i at t (ignoring outages and the set-up delay).
  virtual LinkState raw_link(int i, double t_s) const = 0;
  // Why raw_link(i, t).up is false.
  virtual std::string raw_down_reason(int i, double t_s) const = 0;
  // True when raw_link's `up` never changes with time.
  virtual bool is_static() const = 0;

  // Adds link a-b (a != b, no duplicates: callers dedupe); returns its index.
  int add_link(int a, int b);

 private:
  bool in_outage(int i, double from_s, double to_s, const Outage** which) const;

  std::vector<std::pair<int, int>> ends_;
  std::vector<std::vector<Outage>> outages_;  // per link
  double setup_delay_s_ = 0.0;
  std::vector<double> rule_changes_;  // sorted: every outage's start and end + setup_delay_s_
};

}  // namespace perigee::collectives::links
