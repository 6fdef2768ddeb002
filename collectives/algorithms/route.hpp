// Routes between ranks as the timing and cost models see them. The algorithms know nothing of
// satellites: a RouteFn (built by collectives/links from a topology and a rank-to-satellite map)
// answers "how does a message from rank a reach rank b at time t": total latency, and the directed
// links it crosses with their bandwidths (for contention).
#pragma once

#include <functional>
#include <vector>

#include "core/status.hpp"

namespace perigee::collectives::algorithms {

struct RouteHop {
  int link = 0;              // directed link id, unique within the topology (for contention)
  double latency_s = 0.0;    // propagation delay of this hop
  double bandwidth_Bps = 0;  // bytes per second of this hop
};

struct Route {
  std::vector<RouteHop> hops;     // empty when src == dst
  double latency_s() const;       // sum of hop latencies
  double bottleneck_Bps() const;  // min hop bandwidth (infinity when no hops)
};

// Fills *out with the route from rank src to rank dst at emulated time t_s (seconds since the
// constellation epoch). Returns kUnavailable with a message naming the ranks, satellites, time and
// the links that are down when no route exists.
using RouteFn = std::function<Status(int src, int dst, double t_s, Route* out)>;

// A RouteFn for tests and models: ranks on a uniform full mesh (every pair one hop, its own link).
RouteFn uniform_route_fn(int ranks, double latency_s, double bandwidth_Bps);

}  // namespace perigee::collectives::algorithms
