// Route helpers and the uniform full-mesh RouteFn used by tests and the closed-form cost model.
#include "collectives/algorithms/route.hpp"

#include <algorithm>
#include <limits>

namespace perigee::collectives::algorithms {

double Route::latency_s() const {
  double sum = 0.0;
  for (const RouteHop& h : hops) sum += h.latency_s;
  return sum;
}

double Route::bottleneck_Bps() const {
  double bw = std::numeric_limits<double>::infinity();
  for (const RouteHop& h : hops) bw = std::min(bw, h.bandwidth_Bps);
  return bw;
}

RouteFn uniform_route_fn(int ranks, double latency_s, double bandwidth_Bps) {
  return [ranks, latency_s, bandwidth_Bps](int src, int dst, double t_s, Route* out) -> Status {
    if (src < 0 || src >= ranks || dst < 0 || dst >= ranks) {
      return make_error(StatusCode::kInvalidArgument, "uniform_route_fn: route from rank ", src, " to rank ",
                        dst, " at t=", t_s, " s: ranks must be in [0, ", ranks, ")");
    }
    out->hops.clear();
    if (src != dst) out->hops.push_back(RouteHop{src * ranks + dst, latency_s, bandwidth_Bps});
    return Status::ok();
  };
}

}  // namespace perigee::collectives::algorithms
