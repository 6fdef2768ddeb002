// How fast perigee-bench runs emulated time (wall seconds per emulated second), per topology and
// algorithm.
//
// Two constraints:
//  - target: the largest size's predicted emulated time should take about target_wall_s of wall
//    time, so a 300 ms Starlink all-reduce runs in fast motion (scale < 1) and the suite stays short;
//  - floor: the real work of the schedule (MPI copies and reductions between processes on this
//    machine, measured with every link delay at zero) must stay small next to the emulated delay,
//    or the table would show this machine instead of the links. The emulated wall time of the
//    largest size is kept >= real_margin x that real time, i.e. the real work is at most
//    1/real_margin of what is measured. For the tight cluster (1.6 Tb/s links, ~1 us hops) the
//    predicted times are microseconds while a real 16 MB copy between processes takes
//    milliseconds, so the floor wins and the scale is >> 1: slow motion, the model dominates.
//    Why 3: the communicator posts a round's real transfers at the round's start and sleeps until
//    the emulated arrival, so real work hides under the emulated delay as long as each round's real
//    work fits in its window. Measured on 8 ranks / 2 cores (ring and rabenseifner, 4 MB, Starlink
//    plane): emulated wall = 1.4x real -> +15% over the timing model, 2.7x -> +0.6%, 1x -> +100%.
#pragma once

#include <string>

namespace perigee::bench::topology {

struct TimeScalePolicy {
  double target_wall_s = 0.2;  // wall time of the largest size's predicted emulated time
  double real_margin = 3.0;    // emulated wall >= real_margin x real (zero-delay) wall
  double min_scale = 1e-6;
  double max_scale = 1e7;
};

struct TimeScaleChoice {
  double scale = 1.0;
  std::string reason;  // "target 0.2 s" or "real-overhead floor: 4 x 31.2 ms real"
};

// predicted_s: the model's emulated time of the largest size; real_wall_s: its zero-delay wall time
// (0 when not measured).
TimeScaleChoice choose_time_scale(double predicted_s, double real_wall_s, const TimeScalePolicy& policy);

}  // namespace perigee::bench::topology
