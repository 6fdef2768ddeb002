// Deterministic delay accounting of a schedule on routes: when each transfer starts and arrives,
// with per-hop latency, bytes / bandwidth and link contention. Every rank computes the same
// Timeline from the same inputs, so every rank also reaches the same verdict when a route is gone.
//
// Model (documented in docs/topologies.md):
// - Each rank has a ready time (starts at t0). A transfer starts at its sender's ready time.
// - Within a round, the bytes of every transfer crossing a directed link add up on that link; a
//   transfer takes  overhead_s + route latency + max over its hops (link load / hop bandwidth),
//   i.e. concurrent transfers share a link's bandwidth (cut-through, fair share).
// - After the round a rank is ready at max(its ready time, arrival of each transfer it receives,
//   start + bytes / bottleneck of each transfer it sends) plus reduce time (bytes * gamma_s_per_byte
//   for reducing receives).
// - Routes are looked up at each round's earliest start time, so a link that goes down
//   mid-collective reroutes the later rounds or fails the collective there.
#pragma once

#include <cstddef>
#include <vector>

#include "collectives/algorithms/route.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "core/status.hpp"

namespace perigee::collectives::algorithms {

struct TimingOptions {
  double overhead_s = 0.0;        // software cost per message (alpha not due to propagation)
  double gamma_s_per_byte = 0.0;  // reduction cost per received byte
};

struct TransferTime {
  double start_s = 0.0;
  double arrive_s = 0.0;
};

struct Timeline {
  std::vector<std::vector<TransferTime>> rounds;  // [round][transfer], same shape as the schedule
  std::vector<double> rank_ready_s;               // per rank, when it holds the final result
  double end_s = 0.0;                             // max over ranks
  double start_s = 0.0;                           // t0
  double duration_s() const { return end_s - start_s; }
};

Status simulate_schedule(const Schedule& s, size_t element_bytes, const RouteFn& routes, double t0_s,
                         const TimingOptions& opt, Timeline* out);

}  // namespace perigee::collectives::algorithms
