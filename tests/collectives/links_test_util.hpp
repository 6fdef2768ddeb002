// Route functions shared by the emulated-link tests.
#pragma once

#include "collectives/algorithms/route.hpp"
#include "core/status.hpp"

namespace perigee::collectives {

// Uniform fast links between p ranks except that ranks 0 and 1 cannot reach each other: every query
// for that pair fails with kUnavailable "... link 0-1 down".
inline algorithms::RouteFn route_fn_without_link_0_1(int p) {
  auto base = algorithms::uniform_route_fn(p, 1e-6, 1e12);
  return [base](int src, int dst, double t, algorithms::Route* out) -> Status {
    if ((src == 0 && dst == 1) || (src == 1 && dst == 0)) {
      return make_error(StatusCode::kUnavailable, "no route from rank ", src, " to rank ", dst, " at t=", t,
                        " s: link 0-1 down");
    }
    return base(src, dst, t, out);
  };
}

}  // namespace perigee::collectives
