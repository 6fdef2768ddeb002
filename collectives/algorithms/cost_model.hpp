// Alpha-beta cost models of the all-reduce algorithms, and `auto`: the cheapest predicted one.
// Textbook forms (Thakur, Rabenseifner & Gropp 2005) with alpha = per-message latency and
// beta = seconds per byte, made topology-aware by deriving, per phase of each algorithm, alpha from
// the latency of the routes its partners use and beta from the bottleneck bandwidth divided by the
// number of that phase's routes sharing the busiest link (contention: recursive halving partners 2^k
// apart on a ring share links; ring neighbours do not).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "collectives/algorithms/route.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "core/status.hpp"

namespace perigee::collectives::algorithms {

// Uniform network: one alpha and one beta for every pair of ranks.
struct AlphaBeta {
  double alpha_s = 0.0;
  double beta_s_per_byte = 0.0;
};

// Closed form on a uniform network (bytes = size of the whole buffer per rank).
double predict_uniform_s(Algorithm a, const ScheduleParams& p, size_t bytes, const AlphaBeta& ab);

struct Prediction {
  Algorithm algorithm = Algorithm::kRing;
  double seconds = 0.0;
  std::string formula;      // human-readable, e.g. "2(p-1)a + 2(p-1)/p n b, a=6.58ms b=80ps/B"
  int pipeline_chunks = 0;  // double binary tree: the chunk count this prediction assumes
};

// Topology-aware closed form: alpha/beta per phase from `routes` at time t_s (see above), plus
// overhead_s per message. Fails when a needed route is missing or the algorithm does not fit p.
// Double binary tree with p.pipeline_chunks == 0: the chunk count (1, 2, 4, ... 64) with the
// lowest prediction, returned in Prediction::pipeline_chunks (long hops want few chunks: every
// chunk adds a round of latency; fast hops want many: the tree's depth is hidden).
Status predict_allreduce(Algorithm a, const ScheduleParams& p, size_t element_bytes, const RouteFn& routes,
                         double t_s, double overhead_s, Prediction* out);

// Every algorithm that fits p (skips kNative, kAuto), cheapest first.
Status rank_algorithms(const ScheduleParams& p, size_t element_bytes, const RouteFn& routes, double t_s,
                       double overhead_s, std::vector<Prediction>* out);

}  // namespace perigee::collectives::algorithms
