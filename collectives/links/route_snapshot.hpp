// RouteSnapshot: the links of a topology frozen at one time, with shortest-latency paths (Dijkstra
// over the links that are up) computed lazily per source satellite, each search stopping once the
// asked-for satellite is settled and resuming from there for later queries. Directed link ids: link i
// crossed from its first end to its second is 2i, the other way 2i+1.
#pragma once

#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "collectives/algorithms/route.hpp"
#include "collectives/links/topology.hpp"

namespace perigee::collectives::links {

class RouteSnapshot {
 public:
  RouteSnapshot(const Topology& topo, double t_s);

  double time_s() const { return t_s_; }
  const LinkState& link(int i) const { return links_[i]; }
  int num_down() const { return num_down_; }

  // Hops of the shortest-latency path from satellite a to b (a != b); false when b is unreachable.
  // Not thread-safe (fills the per-source cache): callers hold a lock.
  bool path(int a, int b, std::vector<algorithms::RouteHop>* hops);

  // "17-18 (no line of sight ...), 17-39 (outage [10, 20) s)": the down links at satellite s.
  std::string down_links_at(int s) const;

 private:
  // Dijkstra from one source, run only as far as the queries so far needed (resumable).
  struct Tree {
    std::vector<double> dist;
    std::vector<int> via;  // directed link id used to reach the node, -1 at the source / unreached
    std::vector<bool> settled;
    std::priority_queue<std::pair<double, int>, std::vector<std::pair<double, int>>,
                        std::greater<std::pair<double, int>>>
        queue;  // (distance, node): ties broken by node id, deterministically
  };
  Tree& tree(int source);
  void settle_until(Tree& t, int target);

  const Topology& topo_;
  double t_s_;
  std::vector<LinkState> links_;
  std::vector<std::vector<int>> incident_;  // per satellite: indices of every link touching it
  int num_down_ = 0;
  std::unordered_map<int, Tree> trees_;
};

}  // namespace perigee::collectives::links
