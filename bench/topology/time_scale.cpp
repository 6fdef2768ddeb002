// Automatic time scale (see time_scale.hpp).
#include "bench/topology/time_scale.hpp"

#include <algorithm>
#include <cstdio>

namespace perigee::bench::topology {

TimeScaleChoice choose_time_scale(double predicted_s, double real_wall_s, const TimeScalePolicy& policy) {
  TimeScaleChoice c;
  char buf[200];
  if (predicted_s <= 0.0) {
    c.scale = 1.0;
    c.reason = "no prediction: real time";
    return c;
  }
  const double target = policy.target_wall_s / predicted_s;
  const double floor = policy.real_margin * real_wall_s / predicted_s;
  if (floor > target) {
    c.scale = floor;
    std::snprintf(buf, sizeof buf,
                  "real-overhead floor: %.3g x %.3g ms real (zero-delay) wall at the largest size",
                  policy.real_margin, real_wall_s * 1e3);
  } else {
    c.scale = target;
    std::snprintf(buf, sizeof buf,
                  "target: largest size's predicted %.4g ms -> %.3g s wall (real zero-delay wall %.3g ms)",
                  predicted_s * 1e3, policy.target_wall_s, real_wall_s * 1e3);
  }
  c.reason = buf;
  const double clamped = std::clamp(c.scale, policy.min_scale, policy.max_scale);
  if (clamped != c.scale) {
    c.scale = clamped;
    c.reason += " (clamped)";
  }
  return c;
}

}  // namespace perigee::bench::topology
