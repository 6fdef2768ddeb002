// simulate_schedule: the deterministic delay model of timing.hpp, round by round.
#include "collectives/algorithms/timing.hpp"

#include <algorithm>
#include <unordered_map>

namespace perigee::collectives::algorithms {

Status simulate_schedule(const Schedule& s, size_t element_bytes, const RouteFn& routes, double t0_s,
                         const TimingOptions& opt, Timeline* out) {
  PERIGEE_REQUIRE(s.ranks >= 1, StatusCode::kInvalidArgument, "simulate_schedule(",
                  algorithm_name(s.algorithm), "): ranks = ", s.ranks, " must be >= 1");
  PERIGEE_REQUIRE(static_cast<bool>(routes), StatusCode::kInvalidArgument, "simulate_schedule(",
                  algorithm_name(s.algorithm), "): no RouteFn");
  Timeline tl;
  tl.start_s = t0_s;
  tl.rank_ready_s.assign(static_cast<size_t>(s.ranks), t0_s);
  tl.rounds.resize(s.rounds.size());

  std::vector<Route> route_of;
  std::unordered_map<int, double> link_load;  // bytes on each directed link in this round
  std::vector<double> next_ready;
  for (size_t r = 0; r < s.rounds.size(); ++r) {
    const auto& transfers = s.rounds[r].transfers;
    auto& times = tl.rounds[r];
    times.resize(transfers.size());
    if (transfers.empty()) continue;
    for (const Transfer& t : transfers) {
      PERIGEE_REQUIRE(t.src >= 0 && t.src < s.ranks && t.dst >= 0 && t.dst < s.ranks,
                      StatusCode::kInvalidArgument, "simulate_schedule(", algorithm_name(s.algorithm),
                      "): round ", r, ": transfer ", t.src, " -> ", t.dst, " outside [0, ", s.ranks, ")");
    }
    double round_start = tl.rank_ready_s[static_cast<size_t>(transfers.front().src)];
    for (const Transfer& t : transfers) {
      round_start = std::min(round_start, tl.rank_ready_s[static_cast<size_t>(t.src)]);
    }
    route_of.assign(transfers.size(), Route{});
    link_load.clear();
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      Status st = routes(t.src, t.dst, round_start, &route_of[i]);
      if (!st.is_ok()) {
        return make_error(st.code(), "simulate_schedule(", algorithm_name(s.algorithm), "): round ", r,
                          " of ", s.rounds.size(), ", transfer ", t.src, " -> ", t.dst, " at t=", round_start,
                          " s: ", st.message());
      }
      const double bytes = static_cast<double>(t.count * element_bytes);
      for (const RouteHop& h : route_of[i].hops) link_load[h.link] += bytes;
    }
    next_ready = tl.rank_ready_s;
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      const Route& route = route_of[i];
      const double bytes = static_cast<double>(t.count * element_bytes);
      double transmit = 0.0;
      for (const RouteHop& h : route.hops) {
        PERIGEE_REQUIRE(h.bandwidth_Bps > 0.0, StatusCode::kInvalidArgument, "simulate_schedule(",
                        algorithm_name(s.algorithm), "): round ", r, ": link ", h.link, " on route ", t.src,
                        " -> ", t.dst, " has bandwidth ", h.bandwidth_Bps, " B/s");
        transmit = std::max(transmit, link_load[h.link] / h.bandwidth_Bps);
      }
      const double start = tl.rank_ready_s[static_cast<size_t>(t.src)];
      const double arrive = start + opt.overhead_s + route.latency_s() + transmit;
      times[i] = TransferTime{start, arrive};
      double& src_ready = next_ready[static_cast<size_t>(t.src)];
      src_ready = std::max(src_ready, start + bytes / route.bottleneck_Bps());
      double& dst_ready = next_ready[static_cast<size_t>(t.dst)];
      dst_ready = std::max(dst_ready, arrive);
    }
    // Reduction cost after every message of the round has arrived.
    for (const Transfer& t : transfers) {
      if (t.reduce) {
        next_ready[static_cast<size_t>(t.dst)] +=
            static_cast<double>(t.count * element_bytes) * opt.gamma_s_per_byte;
      }
    }
    tl.rank_ready_s.swap(next_ready);
  }
  tl.end_s = *std::max_element(tl.rank_ready_s.begin(), tl.rank_ready_s.end());
  *out = std::move(tl);
  return Status::ok();
}

}  // namespace perigee::collectives::algorithms
