// Dijkstra over a frozen link state (see route_snapshot.hpp).
#include "collectives/links/route_snapshot.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <utility>

#include "collectives/links/link_model.hpp"

namespace perigee::collectives::links {

RouteSnapshot::RouteSnapshot(const Topology& topo, double t_s) : topo_(topo), t_s_(t_s) {
  const int m = topo.num_links();
  links_.reserve(m);
  incident_.assign(topo.num_nodes(), {});
  for (int i = 0; i < m; ++i) {
    links_.push_back(topo.link(i, t_s));
    const LinkState& s = links_.back();
    incident_[s.a].push_back(i);
    incident_[s.b].push_back(i);
    if (!s.up) ++num_down_;
  }
}

RouteSnapshot::Tree& RouteSnapshot::tree(int source) {
  if (auto it = trees_.find(source); it != trees_.end()) return it->second;
  const int n = static_cast<int>(incident_.size());
  Tree t;
  t.dist.assign(n, std::numeric_limits<double>::infinity());
  t.via.assign(n, -1);
  t.settled.assign(n, false);
  t.dist[source] = 0.0;
  t.queue.push({0.0, source});
  return trees_.emplace(source, std::move(t)).first->second;
}

void RouteSnapshot::settle_until(Tree& t, int target) {
  while (!t.settled[target] && !t.queue.empty()) {
    const auto [d, u] = t.queue.top();
    t.queue.pop();
    if (t.settled[u]) continue;
    t.settled[u] = true;
    for (int i : incident_[u]) {
      const LinkState& s = links_[i];
      if (!s.up) continue;
      const bool forward = (s.a == u);
      const int v = forward ? s.b : s.a;
      const double nd = d + s.latency_s;
      if (nd < t.dist[v]) {
        t.dist[v] = nd;
        t.via[v] = forward ? 2 * i : 2 * i + 1;
        t.queue.push({nd, v});
      }
    }
  }
}

bool RouteSnapshot::path(int a, int b, std::vector<algorithms::RouteHop>* hops) {
  Tree& t = tree(a);
  settle_until(t, b);
  hops->clear();
  if (t.via[b] < 0) return false;
  for (int v = b; v != a;) {
    const int id = t.via[v];
    const LinkState& s = links_[id / 2];
    hops->push_back(algorithms::RouteHop{id, s.latency_s, s.bandwidth_Bps});
    v = (id % 2 == 0) ? s.a : s.b;  // the node the hop left from
  }
  std::reverse(hops->begin(), hops->end());
  return true;
}

std::string RouteSnapshot::down_links_at(int s) const {
  const auto* model = dynamic_cast<const LinkModelTopology*>(&topo_);
  std::ostringstream os;
  int n = 0;
  for (int i : incident_[s]) {
    const LinkState& l = links_[i];
    if (l.up) continue;
    os << (n++ ? ", " : "") << l.a << "-" << l.b;
    if (model) os << " (" << model->down_reason(i, t_s_) << ")";
  }
  if (n == 0) return "none";
  return os.str();
}

}  // namespace perigee::collectives::links
