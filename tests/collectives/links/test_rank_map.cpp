// Rank maps (linear, spread, grid, list and their errors) and routes: shortest latency over the
// links that are up, directed link ids, intra-satellite hops, rerouting around a down link, a clear
// error when the graph is cut, latency changing over the orbit, the time-bucket cache.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectives/links/link_model.hpp"
#include "collectives/links/rank_map.hpp"
#include "collectives/links/topology.hpp"

namespace perigee::collectives::links {
namespace {

std::shared_ptr<const Topology> build(const TopologySpec& spec) {
  std::unique_ptr<Topology> t;
  const Status st = make_topology(spec, &t);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return std::shared_ptr<const Topology>(std::move(t));
}

TopologySpec kind(const std::string& k) {
  TopologySpec s;
  s.kind = k;
  return s;
}

RankMap map_of(const Topology& t, int ranks, const RankMapSpec& spec) {
  RankMap m;
  const Status st = make_rank_map(t, ranks, spec, &m);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return m;
}

Status map_error(const Topology& t, int ranks, const RankMapSpec& spec) {
  RankMap m;
  return make_rank_map(t, ranks, spec, &m);
}

double latency(const algorithms::Route& r) {
  double s = 0.0;
  for (const auto& h : r.hops) s += h.latency_s;
  return s;
}

TEST(LinksRankMap, LinearSpreadList) {
  auto t = build(kind("starlink_shell1"));
  RankMapSpec spec;
  RankMap m = map_of(*t, 5, spec);
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(m.grid_x, 5);
  EXPECT_EQ(m.grid_y, 1);
  EXPECT_DOUBLE_EQ(m.intra_bandwidth_Bps, 450e9);
  EXPECT_DOUBLE_EQ(m.intra_latency_s, 1e-6);

  spec.ranks_per_satellite = 2;
  m = map_of(*t, 5, spec);
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{0, 0, 1, 1, 2}));
  EXPECT_EQ(m.ranks_per_satellite, 2);

  spec.ranks_per_satellite = 1;
  m = map_of(*t, 44, spec);  // two whole planes
  EXPECT_EQ(m.grid_x, 22);
  EXPECT_EQ(m.grid_y, 2);

  spec.mapping = "spread";
  m = map_of(*t, 4, spec);
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{0, 396, 792, 1188}));
  EXPECT_EQ(m.grid_x, 0);

  spec.mapping = "list";
  spec.satellites = {7, 3, 100};
  m = map_of(*t, 3, spec);
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{7, 3, 100}));
}

TEST(LinksRankMap, GridBlocksAreMostSquareAndContiguous) {
  auto t = build(kind("starlink_shell1"));
  RankMapSpec spec;
  spec.mapping = "grid";
  RankMap m = map_of(*t, 12, spec);
  EXPECT_EQ(m.grid_x, 4);
  EXPECT_EQ(m.grid_y, 3);
  // rank = y * grid_x + x on satellite (plane y, index x).
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{0, 1, 2, 3, 22, 23, 24, 25, 44, 45, 46, 47}));

  spec.grid_x = 6;
  spec.grid_y = 2;
  m = map_of(*t, 12, spec);
  EXPECT_EQ(m.grid_x, 6);
  EXPECT_EQ(m.grid_y, 2);
  EXPECT_EQ(m.satellite_of_rank[6], 22);

  // Two ranks per satellite: X counts ranks, so grid_x = 2 * satellites along the plane.
  spec = RankMapSpec{};
  spec.mapping = "grid";
  spec.ranks_per_satellite = 2;
  m = map_of(*t, 8, spec);
  EXPECT_EQ(m.grid_x, 4);
  EXPECT_EQ(m.grid_y, 2);
  EXPECT_EQ(m.satellite_of_rank, (std::vector<int>{0, 0, 1, 1, 22, 22, 23, 23}));

  // A full plane by full planes: torus neighbours are all one hop apart.
  spec = RankMapSpec{};
  spec.mapping = "grid";
  spec.grid_x = 22;
  spec.grid_y = 72;
  m = map_of(*t, 22 * 72, spec);
  auto routes = make_route_fn(t, m);
  algorithms::Route r;
  for (int y = 0; y < 72; y += 7) {
    for (int x = 0; x < 22; ++x) {
      const int rank = y * 22 + x;
      ASSERT_TRUE(routes(rank, y * 22 + (x + 1) % 22, 0.0, &r).is_ok());
      EXPECT_EQ(r.hops.size(), 1u);
      ASSERT_TRUE(routes(rank, ((y + 1) % 72) * 22 + x, 0.0, &r).is_ok());
      EXPECT_EQ(r.hops.size(), 1u);
    }
  }
}

TEST(LinksRankMap, Errors) {
  auto plane = build(kind("starlink_plane"));
  RankMapSpec spec;
  Status st = map_error(*plane, 23, spec);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("need 23 satellites"), std::string::npos) << st.message();
  spec.ranks_per_satellite = 2;
  EXPECT_TRUE(map_error(*plane, 44, spec).is_ok());
  spec.mapping = "diagonal";
  st = map_error(*plane, 4, spec);
  EXPECT_NE(st.message().find("'diagonal'"), std::string::npos) << st.message();
  spec = RankMapSpec{};
  spec.mapping = "list";
  spec.satellites = {1, 1};
  st = map_error(*plane, 2, spec);
  EXPECT_NE(st.message().find("listed twice"), std::string::npos) << st.message();
  spec.satellites = {1, 22};
  st = map_error(*plane, 2, spec);
  EXPECT_NE(st.message().find("outside"), std::string::npos) << st.message();
  spec.satellites = {1};
  st = map_error(*plane, 2, spec);
  EXPECT_NE(st.message().find("the list has 1"), std::string::npos) << st.message();

  spec = RankMapSpec{};
  spec.mapping = "grid";
  st = map_error(*build(kind("cluster")), 4, spec);
  EXPECT_NE(st.message().find("needs a +Grid"), std::string::npos) << st.message();
  spec.grid_x = 5;
  spec.grid_y = 2;
  st = map_error(*plane, 12, spec);
  EXPECT_NE(st.message().find("must equal"), std::string::npos) << st.message();
  spec.grid_x = 2;
  spec.grid_y = 6;
  st = map_error(*plane, 12, spec);  // one plane only
  EXPECT_NE(st.message().find("does not fit"), std::string::npos) << st.message();
  spec.grid_x = spec.grid_y = 0;
  st = map_error(*build(kind("starlink_shell1")), 23 * 2,
                 spec);  // 46 = 2 * 23: no X <= 22 with Y = 46/X... X=2,Y=23 fits
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  st = map_error(*build(kind("starlink_shell1")), 23 * 73, spec);  // 1679 > 1584 satellites
  EXPECT_FALSE(st.is_ok());
  st = map_error(*plane, 0, spec);
  EXPECT_FALSE(st.is_ok());
}

TEST(LinksRoutes, ShortestPathWithDirectedIds) {
  auto t = build(kind("starlink_plane"));
  const RankMap m = map_of(*t, 22, RankMapSpec{});
  auto routes = make_route_fn(t, m);
  algorithms::Route r;
  ASSERT_TRUE(routes(0, 1, 0.0, &r).is_ok());
  ASSERT_EQ(r.hops.size(), 1u);
  // Link 0 joins satellites 0 -> 1: forward id 0, backward id 1.
  EXPECT_EQ(r.hops[0].link, 0);
  EXPECT_NEAR(r.hops[0].latency_s, 6.58e-3, 6.58e-3 * 0.005);
  EXPECT_DOUBLE_EQ(r.hops[0].bandwidth_Bps, 12.5e9);
  ASSERT_TRUE(routes(1, 0, 0.0, &r).is_ok());
  EXPECT_EQ(r.hops[0].link, 1);
  // 0 -> 20 goes backwards round the ring: 0-21-20.
  ASSERT_TRUE(routes(0, 20, 0.0, &r).is_ok());
  ASSERT_EQ(r.hops.size(), 2u);
  const LinkModelTopology& lm = dynamic_cast<const LinkModelTopology&>(*t);
  EXPECT_EQ(r.hops[0].link / 2, lm.find_link(0, 21));
  EXPECT_EQ(r.hops[1].link / 2, lm.find_link(21, 20));
  // 11 hops to the far side either way; 0 -> 0 has no hops.
  ASSERT_TRUE(routes(0, 11, 0.0, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 11u);
  ASSERT_TRUE(routes(5, 5, 0.0, &r).is_ok());
  EXPECT_TRUE(r.hops.empty());
  EXPECT_EQ(routes(0, 22, 0.0, &r).code(), StatusCode::kInvalidArgument);
}

TEST(LinksRoutes, IntraSatelliteHops) {
  auto t = build(kind("starlink_plane"));
  RankMapSpec spec;
  spec.ranks_per_satellite = 4;
  spec.intra_latency_s = 2e-6;
  const RankMap m = map_of(*t, 8, spec);
  auto routes = make_route_fn(t, m);
  algorithms::Route r;
  ASSERT_TRUE(routes(1, 3, 0.0, &r).is_ok());
  ASSERT_EQ(r.hops.size(), 1u);
  EXPECT_EQ(r.hops[0].link, 2 * t->num_links() + 1);
  EXPECT_DOUBLE_EQ(r.hops[0].latency_s, 2e-6);
  EXPECT_DOUBLE_EQ(r.hops[0].bandwidth_Bps, 450e9);
  ASSERT_TRUE(routes(6, 4, 0.0, &r).is_ok());
  EXPECT_EQ(r.hops[0].link, 2 * t->num_links() + 6);
  // Across satellites: the ISL between them, no intra hop.
  ASSERT_TRUE(routes(2, 5, 0.0, &r).is_ok());
  ASSERT_EQ(r.hops.size(), 1u);
  EXPECT_LT(r.hops[0].link, 2 * t->num_links());
}

TEST(LinksRoutes, RerouteAroundADownLinkThenFailWhenCut) {
  TopologySpec spec = kind("starlink_plane");
  spec.outages = {Outage{0, 1, 10.0, 20.0}, Outage{0, 21, 15.0, 20.0}};
  auto t = build(spec);
  const RankMap m = map_of(*t, 22, RankMapSpec{});
  auto routes = make_route_fn(t, m);
  algorithms::Route r;
  ASSERT_TRUE(routes(0, 1, 5.0, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 1u);
  ASSERT_TRUE(routes(0, 1, 12.0, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 21u) << "the long way round";
  EXPECT_NEAR(latency(r), 21 * 6.578e-3, 21 * 6.578e-3 * 0.005);
  const Status st = routes(3, 0, 16.0, &r);
  ASSERT_EQ(st.code(), StatusCode::kUnavailable);
  const std::string& msg = st.message();
  EXPECT_NE(msg.find("rank 3 (sat 3) to rank 0 (sat 0)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("t=16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0-1 (outage [10, 20) s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("21-0 (outage [15, 20) s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 of 22 links down"), std::string::npos) << msg;
  ASSERT_TRUE(routes(3, 0, 21.0, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 3u);
}

TEST(LinksRoutes, LatencyFollowsTheOrbitAndTheCacheBucket) {
  auto t = build(kind("starlink_shell1"));
  RankMapSpec spec;
  spec.mapping = "list";
  spec.satellites = {0, 22};  // plane 0 and plane 1, index 0: one cross-plane hop
  const RankMap m = map_of(*t, 2, spec);
  auto routes = make_route_fn(t, m, /*cache_s=*/10.0);
  algorithms::Route r;
  ASSERT_TRUE(routes(0, 1, 0.0, &r).is_ok());
  ASSERT_EQ(r.hops.size(), 1u);
  const double at_equator = latency(r);
  ASSERT_TRUE(routes(0, 1, t->period_s() / 4, &r).is_ok());
  const double at_top = latency(r);
  EXPECT_NEAR(at_equator, 2.015e-3, 2.015e-3 * 0.005);
  EXPECT_NEAR(at_top, 1.214e-3, 1.214e-3 * 0.005);
  // Any time within one 10 s bucket answers as at the bucket's start.
  algorithms::Route a, b;
  ASSERT_TRUE(routes(0, 1, 600.0, &a).is_ok());
  ASSERT_TRUE(routes(0, 1, 609.9, &b).is_ok());
  EXPECT_EQ(latency(a), latency(b));
  EXPECT_NEAR(latency(a), t->link(a.hops[0].link / 2, 600.0).latency_s, 1e-15);
  ASSERT_TRUE(routes(0, 1, 610.0, &b).is_ok());
  EXPECT_NE(latency(a), latency(b));
}

TEST(LinksRoutes, OutagesApplyAtTheirExactTimesInsideACacheBucket) {
  // Outages of a fraction of the 1 s cache bucket: down from 100.005, up again at 100.9 + 0.05 set-up
  // (was: the snapshot at the bucket's start, 100.0, answered for all of it).
  TopologySpec spec = kind("starlink_plane");
  spec.setup_delay_s = 0.05;
  spec.outages = {Outage{0, 1, 100.005, 100.9}};
  auto t = build(spec);
  auto routes = make_route_fn(t, map_of(*t, 22, RankMapSpec{}));
  algorithms::Route r;
  for (const auto& [at, hops] : std::vector<std::pair<double, size_t>>{
           {100.0, 1}, {100.004, 1}, {100.005, 21}, {100.5, 21}, {100.949, 21}, {100.95, 1}, {100.99, 1}}) {
    ASSERT_TRUE(routes(0, 1, at, &r).is_ok()) << at;
    EXPECT_EQ(r.hops.size(), hops) << "t = " << at;
  }
  // A cut whose end falls inside a bucket: routed again from that instant on.
  spec.setup_delay_s = 0.0;
  spec.outages = {Outage{0, 1, 99.0, 100.001}, Outage{1, 2, 99.0, 100.001}};
  t = build(spec);
  routes = make_route_fn(t, map_of(*t, 22, RankMapSpec{}));
  EXPECT_EQ(routes(0, 1, 100.0, &r).code(), StatusCode::kUnavailable);
  ASSERT_TRUE(routes(0, 1, 100.022, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 1u);
}

TEST(LinksRoutes, ClusterRoutesAreSubMicrosecondPerHop) {
  auto t = build(kind("cluster"));
  const RankMap m = map_of(*t, 81, RankMapSpec{});
  auto routes = make_route_fn(t, m);
  algorithms::Route r;
  ASSERT_TRUE(routes(0, 80, 0.0, &r).is_ok());
  EXPECT_EQ(r.hops.size(), 16u);  // corner to corner on a 9x9 lattice
  for (const auto& h : r.hops) {
    EXPECT_LT(h.latency_s, 0.67e-6);
    EXPECT_DOUBLE_EQ(h.bandwidth_Bps, 200e9);
  }
}

}  // namespace
}  // namespace perigee::collectives::links
