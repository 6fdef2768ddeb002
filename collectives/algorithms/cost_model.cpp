// Topology-aware all-reduce prediction and the ranking behind `auto`. Each algorithm is a list of
// phases (cost_phases.hpp); a phase is S steps, each moving m bytes over the same pairs of ranks.
// Every pair (edge u -> v) gets its own alpha-beta terms from the topology:
//   alpha_e = latency of its route,  beta_e = max over its hops of (routes of the phase on the hop
//   / hop bandwidth)  (contention: partners 2^k apart on a ring share links)
// and the phase is evaluated along its dependency structure, as the algorithm runs: a rank waits
// only for its own partners, not for the slowest pair of the whole step,
//   ready'(v) = max(ready(v), ready(u) + m / bottleneck(u->w) for its sends u = v,
//                   ready(u) + overhead + alpha_e + m * beta_e  for its receives e = u -> v).
// On a uniform network this is exactly the textbook closed form (cost_uniform.cpp); on a ring of
// unequal hops the critical path averages the hop latencies instead of charging the worst hop every
// step (a ring whose wrap-around neighbour is 4 hops away pays 4 hops twice, not 2(p-1) times).
// The formula string also reports each phase's worst-pair alpha and busiest-link beta.
#include "collectives/algorithms/cost_model.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "collectives/algorithms/cost_phases.hpp"

namespace perigee::collectives::algorithms {
namespace {

std::string fmt(double v, const char* unit) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g%s", v, unit);
  return buf;
}

struct EdgeCost {
  int src = 0;
  int dst = 0;
  double latency_s = 0.0;
  double beta_s_per_byte = 0.0;    // max over its hops of (routes on the hop / hop bandwidth)
  double inject_s_per_byte = 0.0;  // 1 / bottleneck bandwidth
};

struct PhaseCost {
  double alpha_s = 0.0;
  double beta_s_per_byte = 0.0;
  int max_sharing = 0;  // routes on the busiest link
  std::vector<EdgeCost> edges;
};

Status phase_cost(Algorithm a, const detail::Phase& ph, const RouteFn& routes, double t_s, PhaseCost* out) {
  struct LinkUse {
    int routes = 0;
    double bandwidth_Bps = 0.0;
  };
  std::map<int, LinkUse> links;
  PhaseCost cost;
  std::vector<Route> route_of(ph.pairs.size());
  for (size_t i = 0; i < ph.pairs.size(); ++i) {
    const auto [src, dst] = ph.pairs[i];
    Route& route = route_of[i];
    Status st = routes(src, dst, t_s, &route);
    if (!st.is_ok()) {
      return make_error(st.code(), "predict_allreduce(", algorithm_name(a), "): phase ", ph.label, ", route ",
                        src, " -> ", dst, " at t=", t_s, " s: ", st.message());
    }
    cost.alpha_s = std::max(cost.alpha_s, route.latency_s());
    for (const RouteHop& h : route.hops) {
      PERIGEE_REQUIRE(h.bandwidth_Bps > 0.0, StatusCode::kInvalidArgument, "predict_allreduce(",
                      algorithm_name(a), "): link ", h.link, " on route ", src, " -> ", dst,
                      " has bandwidth ", h.bandwidth_Bps, " B/s");
      LinkUse& use = links[h.link];
      use.bandwidth_Bps = use.routes == 0 ? h.bandwidth_Bps : std::min(use.bandwidth_Bps, h.bandwidth_Bps);
      ++use.routes;
    }
  }
  for (const auto& [link, use] : links) {
    const double beta = use.routes / use.bandwidth_Bps;
    if (beta > cost.beta_s_per_byte) {
      cost.beta_s_per_byte = beta;
      cost.max_sharing = use.routes;
    }
  }
  for (size_t i = 0; i < ph.pairs.size(); ++i) {
    EdgeCost e;
    e.src = ph.pairs[i].first;
    e.dst = ph.pairs[i].second;
    e.latency_s = route_of[i].latency_s();
    e.inject_s_per_byte = 1.0 / route_of[i].bottleneck_Bps();
    for (const RouteHop& h : route_of[i].hops) {
      const LinkUse& use = links[h.link];
      e.beta_s_per_byte = std::max(e.beta_s_per_byte, use.routes / use.bandwidth_Bps);
    }
    cost.edges.push_back(e);
  }
  *out = std::move(cost);
  return Status::ok();
}

}  // namespace

Status predict_allreduce(Algorithm a, const ScheduleParams& p, size_t element_bytes, const RouteFn& routes,
                         double t_s, double overhead_s, Prediction* out) {
  PERIGEE_REQUIRE(static_cast<bool>(routes), StatusCode::kInvalidArgument, "predict_allreduce(",
                  algorithm_name(a), "): no RouteFn");
  if (a == Algorithm::kAuto) {
    std::vector<Prediction> ranked;
    PERIGEE_CHECK(rank_algorithms(p, element_bytes, routes, t_s, overhead_s, &ranked));
    *out = ranked.front();
    return Status::ok();
  }
  if (a == Algorithm::kDoubleBinaryTree && p.pipeline_chunks == 0) {
    Prediction best;
    bool have = false;
    for (int chunks = 1; chunks <= 64; chunks *= 2) {
      ScheduleParams q = p;
      q.pipeline_chunks = chunks;
      Prediction pred;
      PERIGEE_CHECK(predict_allreduce(a, q, element_bytes, routes, t_s, overhead_s, &pred));
      if (!have || pred.seconds < best.seconds) best = std::move(pred), have = true;
      if (static_cast<size_t>(2 * chunks) > p.count) break;  // no more chunks to split into
    }
    *out = std::move(best);
    return Status::ok();
  }
  std::vector<detail::Phase> phases;
  PERIGEE_CHECK(detail::allreduce_phases(a, p, element_bytes, &phases));
  Prediction pred;
  pred.algorithm = a;
  pred.pipeline_chunks = p.pipeline_chunks;
  pred.formula = std::string(algorithm_name(a)) + ": " + detail::symbolic_formula(a);
  if (a == Algorithm::kDoubleBinaryTree) pred.formula += str_cat(", C = ", p.pipeline_chunks, " chunks");
  if (p.count == 0) phases.clear();  // nothing to move
  std::vector<double> ready(static_cast<size_t>(p.ranks), 0.0);
  std::vector<double> next;
  for (const detail::Phase& ph : phases) {
    PhaseCost c;
    PERIGEE_CHECK(phase_cost(a, ph, routes, t_s, &c));
    const double before = *std::max_element(ready.begin(), ready.end());
    {
      for (int step = 0; step < static_cast<int>(ph.steps); ++step) {
        next = ready;
        for (const EdgeCost& e : c.edges) {
          const double start = ready[static_cast<size_t>(e.src)];
          double& s_next = next[static_cast<size_t>(e.src)];
          s_next = std::max(s_next, start + ph.bytes * e.inject_s_per_byte);
          double& d_next = next[static_cast<size_t>(e.dst)];
          d_next = std::max(d_next, start + overhead_s + e.latency_s + ph.bytes * e.beta_s_per_byte);
        }
        ready.swap(next);
      }
    }
    const double after = *std::max_element(ready.begin(), ready.end());
    pred.formula +=
        str_cat("; ", ph.label, ": ", ph.steps, " x (", fmt(overhead_s, "s"), " + ", fmt(c.alpha_s, "s"),
                " + ", fmt(ph.bytes, "B"), " x ", fmt(c.beta_s_per_byte, "s/B"), ", busiest link shared by ",
                c.max_sharing, ph.pipelined ? ", pipelined" : "", ") -> +", fmt(after - before, "s"));
  }
  pred.seconds = *std::max_element(ready.begin(), ready.end());
  pred.formula += str_cat(" = ", fmt(pred.seconds, "s"));
  *out = std::move(pred);
  return Status::ok();
}

Status rank_algorithms(const ScheduleParams& p, size_t element_bytes, const RouteFn& routes, double t_s,
                       double overhead_s, std::vector<Prediction>* out) {
  std::vector<Prediction> ranked;
  Status first_failure;
  for (Algorithm a : {Algorithm::kRing, Algorithm::kRabenseifner, Algorithm::kTorus2d,
                      Algorithm::kHierarchical, Algorithm::kDoubleBinaryTree}) {
    if (a == Algorithm::kTorus2d && !detail::torus2d_fits(p)) continue;
    if (a == Algorithm::kHierarchical && !detail::hierarchical_fits(p)) continue;
    Prediction pred;
    Status st = predict_allreduce(a, p, element_bytes, routes, t_s, overhead_s, &pred);
    if (st.code() == StatusCode::kUnavailable) {  // a route it needs is down: others may work
      if (first_failure.is_ok()) first_failure = std::move(st);
      continue;
    }
    PERIGEE_CHECK(st);
    ranked.push_back(std::move(pred));
  }
  if (ranked.empty()) {
    PERIGEE_REQUIRE(!first_failure.is_ok(), StatusCode::kInvalidArgument,
                    "rank_algorithms: no algorithm fits ", p.ranks, " ranks");
    return make_error(StatusCode::kUnavailable,
                      "rank_algorithms: no algorithm has its routes: ", first_failure.message());
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const Prediction& x, const Prediction& y) { return x.seconds < y.seconds; });
  *out = std::move(ranked);
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms
