// Timing model (timing.hpp) against hand-computed numbers: one transfer, link sharing, reduce cost,
// routes looked up at each round's earliest start (reroute), route failure, ring on a ring.
#include <gtest/gtest.h>

#include "collectives/algorithms/timing.hpp"
#include "tests/collectives/algorithms/test_routes.hpp"

namespace perigee::collectives::algorithms {
namespace {

constexpr double kTol = 1e-12;

Schedule one_round(int ranks, size_t count, std::vector<Transfer> transfers) {
  Schedule s;
  s.ranks = ranks;
  s.count = count;
  s.rounds.push_back(Round{std::move(transfers)});
  return s;
}

TEST(AlgoTiming, OneTransfer) {
  // 1000 floats = 4000 B over 1 ms latency at 1 MB/s, 0.5 ms overhead, reduce 100 ns/B.
  const Schedule s = one_round(2, 1000, {{0, 1, 0, 1000, true}});
  TimingOptions opt;
  opt.overhead_s = 0.5e-3;
  opt.gamma_s_per_byte = 1e-7;
  Timeline tl;
  ASSERT_TRUE(simulate_schedule(s, 4, uniform_route_fn(2, 1e-3, 1e6), 10.0, opt, &tl).is_ok());
  ASSERT_EQ(tl.rounds.size(), 1u);
  EXPECT_NEAR(tl.rounds[0][0].start_s, 10.0, kTol);
  EXPECT_NEAR(tl.rounds[0][0].arrive_s, 10.0 + 0.5e-3 + 1e-3 + 4e-3, kTol);
  EXPECT_NEAR(tl.rank_ready_s[0], 10.0 + 4e-3, kTol);                  // sender: injection
  EXPECT_NEAR(tl.rank_ready_s[1], 10.0 + 5.5e-3 + 4000 * 1e-7, kTol);  // arrival + reduction
  EXPECT_NEAR(tl.start_s, 10.0, kTol);
  EXPECT_NEAR(tl.duration_s(), 5.9e-3, kTol);
}

TEST(AlgoTiming, TwoTransfersSharingALinkTakeTwiceAsLong) {
  const RouteFn mesh = uniform_route_fn(3, 0.0, 1e6);
  Timeline alone;
  ASSERT_TRUE(
      simulate_schedule(one_round(3, 2000, {{0, 1, 0, 1000, true}}), 4, mesh, 0.0, {}, &alone).is_ok());
  Timeline shared;
  ASSERT_TRUE(simulate_schedule(one_round(3, 2000, {{0, 1, 0, 1000, true}, {0, 1, 1000, 1000, true}}), 4,
                                mesh, 0.0, {}, &shared)
                  .is_ok());
  EXPECT_NEAR(alone.rounds[0][0].arrive_s, 4e-3, kTol);
  EXPECT_NEAR(shared.rounds[0][0].arrive_s, 8e-3, kTol);
  EXPECT_NEAR(shared.rounds[0][1].arrive_s, 8e-3, kTol);
  // Different links (0 -> 1, 2 -> 1) do not share.
  Timeline apart;
  ASSERT_TRUE(simulate_schedule(one_round(3, 2000, {{0, 1, 0, 1000, true}, {2, 1, 1000, 1000, true}}), 4,
                                mesh, 0.0, {}, &apart)
                  .is_ok());
  EXPECT_NEAR(apart.end_s, 4e-3, kTol);
}

TEST(AlgoTiming, MultiHopRouteSharesItsBusiestHop) {
  // Ring of 4: 0 -> 2 crosses links (0,+) and (1,+); 1 -> 2 crosses (1,+): that hop carries both.
  const RouteFn ring = testing::ring_route_fn(4, 1e-3, 1e6);
  Timeline tl;
  ASSERT_TRUE(simulate_schedule(one_round(4, 2000, {{0, 2, 0, 1000, true}, {1, 2, 1000, 1000, true}}), 4,
                                ring, 0.0, {}, &tl)
                  .is_ok());
  EXPECT_NEAR(tl.rounds[0][0].arrive_s, 2e-3 + 8e-3, kTol);
  EXPECT_NEAR(tl.rounds[0][1].arrive_s, 1e-3 + 8e-3, kTol);
}

// Latency 1 ms before t = 5 ms, 5 ms from then on; records the times it was asked about.
struct SwitchingRoutes {
  std::vector<double>* asked;
  bool fail_late = false;
  Status operator()(int src, int dst, double t, Route* out) const {
    asked->push_back(t);
    if (t >= 5e-3 && fail_late) {
      return make_error(StatusCode::kUnavailable, "no route from rank ", src, " to rank ", dst,
                        ": link 3 down");
    }
    out->hops = {RouteHop{src * 2 + dst, t < 5e-3 ? 1e-3 : 5e-3, 1e6}};
    return Status::ok();
  }
};

Schedule there_and_back() {
  Schedule s;
  s.ranks = 2;
  s.count = 1000;
  s.rounds.push_back(Round{{{0, 1, 0, 1000, true}}});
  s.rounds.push_back(Round{{{1, 0, 0, 1000, false}}});
  return s;
}

TEST(AlgoTiming, RoutesAreLookedUpAtEachRoundsStart) {
  std::vector<double> asked;
  Timeline tl;
  ASSERT_TRUE(simulate_schedule(there_and_back(), 4, SwitchingRoutes{&asked}, 0.0, {}, &tl).is_ok());
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_NEAR(asked[0], 0.0, kTol);
  EXPECT_NEAR(asked[1], 5e-3, kTol);  // rank 1 ready: 1 ms + 4 ms
  EXPECT_NEAR(tl.rounds[1][0].start_s, 5e-3, kTol);
  EXPECT_NEAR(tl.rounds[1][0].arrive_s, 5e-3 + 5e-3 + 4e-3, kTol);  // the slower route
  EXPECT_NEAR(tl.end_s, 14e-3, kTol);
}

TEST(AlgoTiming, RouteFailurePropagatesUnavailable) {
  std::vector<double> asked;
  Timeline tl;
  Status st = simulate_schedule(there_and_back(), 4, SwitchingRoutes{&asked, true}, 0.0, {}, &tl);
  ASSERT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("link 3 down"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("round 1"), std::string::npos) << st.message();
}

TEST(AlgoTiming, RingOnARingMatchesTheClosedForm) {
  // p = 6, 6000 doubles: every round each rank moves 1000 doubles one hop, no link shared.
  const int p = 6;
  ScheduleParams params;
  params.ranks = p;
  params.count = 6000;
  Schedule s;
  ASSERT_TRUE(build_allreduce_schedule(Algorithm::kRing, params, &s).is_ok());
  TimingOptions opt;
  opt.overhead_s = 2e-4;
  Timeline a;
  Timeline b;
  const RouteFn ring = testing::ring_route_fn(p, 1e-3, 1e7);
  ASSERT_TRUE(simulate_schedule(s, 8, ring, 3.0, opt, &a).is_ok());
  ASSERT_TRUE(simulate_schedule(s, 8, ring, 3.0, opt, &b).is_ok());
  EXPECT_NEAR(a.duration_s(), 2 * (p - 1) * (2e-4 + 1e-3 + 8000 / 1e7), 1e-12);
  EXPECT_EQ(a.end_s, b.end_s);  // deterministic
  EXPECT_EQ(a.rank_ready_s, b.rank_ready_s);
}

TEST(AlgoTiming, EmptyScheduleTakesNoTime) {
  Schedule s;
  s.ranks = 3;
  Timeline tl;
  ASSERT_TRUE(simulate_schedule(s, 4, uniform_route_fn(3, 1.0, 1.0), 7.0, {}, &tl).is_ok());
  EXPECT_EQ(tl.duration_s(), 0.0);
  EXPECT_EQ(tl.rank_ready_s, std::vector<double>(3, 7.0));
}

}  // namespace
}  // namespace perigee::collectives::algorithms
