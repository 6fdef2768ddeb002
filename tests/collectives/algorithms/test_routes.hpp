// Test RouteFns: ranks on a physical ring or a 2D torus, shortest direction (ties go the positive
// way), dimension-order routing on the torus (X first), one directed link id per hop, every hop the
// same latency and bandwidth.
#pragma once

#include "collectives/algorithms/route.hpp"

namespace perigee::collectives::algorithms::testing {

// Steps from a to b on a ring of n: positive = forward.
inline int ring_steps(int a, int b, int n) {
  const int fwd = ((b - a) % n + n) % n;
  return fwd <= n - fwd ? fwd : -(n - fwd);
}

// Directed link id of the hop leaving `node` in direction dir (0..3: +X, -X, +Y, -Y).
inline int hop_link(int node, int dir) {
  return node * 4 + dir;
}

inline RouteFn torus_route_fn(int gx, int gy, double hop_latency_s, double hop_bandwidth_Bps) {
  return [=](int src, int dst, double, Route* out) -> Status {
    PERIGEE_REQUIRE(src >= 0 && src < gx * gy && dst >= 0 && dst < gx * gy, StatusCode::kInvalidArgument,
                    "torus_route_fn: ", src, " -> ", dst);
    out->hops.clear();
    int x = src % gx;
    int y = src / gx;
    const int dx = ring_steps(x, dst % gx, gx);
    const int dy = ring_steps(y, dst / gx, gy);
    for (int i = 0; i < (dx < 0 ? -dx : dx); ++i) {
      out->hops.push_back(RouteHop{hop_link(y * gx + x, dx > 0 ? 0 : 1), hop_latency_s, hop_bandwidth_Bps});
      x = ((x + (dx > 0 ? 1 : -1)) % gx + gx) % gx;
    }
    for (int i = 0; i < (dy < 0 ? -dy : dy); ++i) {
      out->hops.push_back(RouteHop{hop_link(y * gx + x, dy > 0 ? 2 : 3), hop_latency_s, hop_bandwidth_Bps});
      y = ((y + (dy > 0 ? 1 : -1)) % gy + gy) % gy;
    }
    return Status::ok();
  };
}

// A ring of n ranks is a torus of n x 1.
inline RouteFn ring_route_fn(int n, double hop_latency_s, double hop_bandwidth_Bps) {
  return torus_route_fn(n, 1, hop_latency_s, hop_bandwidth_Bps);
}

}  // namespace perigee::collectives::algorithms::testing
