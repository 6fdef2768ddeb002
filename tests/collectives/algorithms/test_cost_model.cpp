// Cost models: the closed forms, the topology-aware prediction against the simulated timeline on a
// uniform mesh, a ring and a 2D torus, and the choices of `auto`.
#include <gtest/gtest.h>

#include <cmath>

#include "collectives/algorithms/cost_model.hpp"
#include "collectives/algorithms/double_binary_tree.hpp"
#include "collectives/algorithms/timing.hpp"
#include "tests/collectives/algorithms/test_routes.hpp"

namespace perigee::collectives::algorithms {
namespace {

ScheduleParams params_of(int ranks, size_t count, int gx = 0, int gy = 0, int rpn = 1) {
  ScheduleParams p;
  p.ranks = ranks;
  p.count = count;
  p.grid_x = gx;
  p.grid_y = gy;
  p.ranks_per_node = rpn;
  return p;
}

double simulated_s(Algorithm a, const ScheduleParams& p, const RouteFn& routes, double overhead_s) {
  Schedule s;
  PERIGEE_CHECK_OR_DIE(build_allreduce_schedule(a, p, &s));
  TimingOptions opt;
  opt.overhead_s = overhead_s;
  Timeline tl;
  PERIGEE_CHECK_OR_DIE(simulate_schedule(s, 4, routes, 0.0, opt, &tl));
  return tl.duration_s();
}

double predicted_s(Algorithm a, const ScheduleParams& p, const RouteFn& routes, double overhead_s) {
  Prediction pred;
  PERIGEE_CHECK_OR_DIE(predict_allreduce(a, p, 4, routes, 0.0, overhead_s, &pred));
  EXPECT_EQ(pred.algorithm, a);
  EXPECT_FALSE(pred.formula.empty());
  return pred.seconds;
}

TEST(AlgoCostModel, UniformClosedFormsByHand) {
  const AlphaBeta ab{1.0, 1e-3};  // n b = 1 s for n = 1000 B
  const size_t n = 1000;
  EXPECT_NEAR(predict_uniform_s(Algorithm::kRing, params_of(4, 250), n, ab), 6 + 1.5, 1e-12);
  EXPECT_NEAR(predict_uniform_s(Algorithm::kRabenseifner, params_of(8, 250), n, ab), 6 + 1.75, 1e-12);
  // p = 6: core of 4 (2 lg 4 a + 2 * 3/4 n b) plus fold and unfold 2 (a + n b).
  EXPECT_NEAR(predict_uniform_s(Algorithm::kRabenseifner, params_of(6, 250), n, ab), 4 + 1.5 + 2 + 2, 1e-12);
  // 2 x 4 grid: 2 a + 6 a + (2 * 1/2 + 2 * 3/8) n b.
  EXPECT_NEAR(predict_uniform_s(Algorithm::kTorus2d, params_of(8, 250, 2, 4), n, ab), 8 + 1.75, 1e-12);
  // k = 2 per node, m = 4 nodes: 2 a + 1 n b + 6 a + 2 * 3/8 n b.
  EXPECT_NEAR(predict_uniform_s(Algorithm::kHierarchical, params_of(8, 250, 0, 0, 2), n, ab), 8 + 1.75,
              1e-12);
  // p = 8: tree height 3; 2 chunks: (2 + 6 - 1)(a + n/4 b).
  ScheduleParams dbt = params_of(8, 250);
  dbt.pipeline_chunks = 2;
  EXPECT_NEAR(predict_uniform_s(Algorithm::kDoubleBinaryTree, dbt, n, ab), 7 * 1.25, 1e-12);
  EXPECT_TRUE(std::isinf(predict_uniform_s(Algorithm::kTorus2d, params_of(8, 250, 3, 3), n, ab)));
  EXPECT_EQ(predict_uniform_s(Algorithm::kRing, params_of(1, 250), n, ab), 0.0);
  EXPECT_NEAR(predict_uniform_s(Algorithm::kAuto, params_of(8, 250), n, ab),
              predict_uniform_s(Algorithm::kRabenseifner, params_of(8, 250), n, ab), 1e-12);
}

// The worked numbers of the reference (section 2.2): S = 1 GB, 8 ranks, 6.58 ms hops, 100 Gb/s.
TEST(AlgoCostModel, ReferenceWorkedNumbers) {
  const AlphaBeta ab{6.58e-3, 1.0 / 12.5e9};
  const size_t gigabyte = 1000000000;
  EXPECT_NEAR(predict_uniform_s(Algorithm::kRing, params_of(8, gigabyte / 4), gigabyte, ab), 0.232, 0.0005);
  EXPECT_NEAR(predict_uniform_s(Algorithm::kRabenseifner, params_of(8, gigabyte / 4), gigabyte, ab), 0.179,
              0.0005);
}

TEST(AlgoCostModel, TopologyAwareEqualsClosedFormOnAUniformMesh) {
  const double alpha = 2e-3;
  const double bw = 1e9;
  const RouteFn mesh = uniform_route_fn(8, alpha, bw);
  const size_t count = 1 << 16;
  const AlphaBeta ab{alpha, 1.0 / bw};
  for (const auto& [a, p] : std::vector<std::pair<Algorithm, ScheduleParams>>{
           {Algorithm::kRing, params_of(8, count)},
           {Algorithm::kRabenseifner, params_of(8, count)},
           {Algorithm::kTorus2d, params_of(8, count, 4, 2)},
           {Algorithm::kHierarchical, params_of(8, count, 0, 0, 4)}}) {
    const double closed = predict_uniform_s(a, p, count * 4, ab);
    EXPECT_NEAR(predicted_s(a, p, mesh, 0.0), closed, 1e-9 * closed) << algorithm_name(a);
  }
  const RouteFn mesh6 = uniform_route_fn(6, alpha, bw);
  const double closed6 = predict_uniform_s(Algorithm::kRabenseifner, params_of(6, count), count * 4, ab);
  EXPECT_NEAR(predicted_s(Algorithm::kRabenseifner, params_of(6, count), mesh6, 0.0), closed6,
              1e-9 * closed6);
  // The tree's closed form ignores the edges both trees use in opposite directions: at most 2x.
  ScheduleParams tree = params_of(8, count);
  tree.pipeline_chunks = 2;  // the same chunk count on both sides
  const double tree_closed = predict_uniform_s(Algorithm::kDoubleBinaryTree, tree, count * 4, ab);
  const double tree_aware = predicted_s(Algorithm::kDoubleBinaryTree, tree, mesh, 0.0);
  EXPECT_GE(tree_aware, tree_closed * (1 - 1e-9));
  EXPECT_LE(tree_aware, tree_closed * 2);
}

// pipeline_chunks = 0: the tree's chunk count is chosen per prediction, never worse than a fixed
// one; long hops want few chunks (each adds a round of latency), short hops many.
TEST(AlgoCostModel, TreeChunksFollowTheLinks) {
  const size_t count = 1 << 20;
  auto chosen = [&](double latency_s, Prediction* pred) {
    const RouteFn mesh = uniform_route_fn(8, latency_s, 12.5e9);
    ASSERT_TRUE(predict_allreduce(Algorithm::kDoubleBinaryTree, params_of(8, count), 4, mesh, 0.0, 0.0, pred)
                    .is_ok());
    for (int c = 1; c <= 64; c *= 2) {
      ScheduleParams fixed = params_of(8, count);
      fixed.pipeline_chunks = c;
      EXPECT_LE(pred->seconds, predicted_s(Algorithm::kDoubleBinaryTree, fixed, mesh, 0.0) * (1 + 1e-12))
          << c;
    }
  };
  Prediction slow, fast;
  chosen(6.58e-3, &slow);
  chosen(0.5e-6, &fast);
  EXPECT_LT(slow.pipeline_chunks, fast.pipeline_chunks);
  EXPECT_GE(slow.pipeline_chunks, 1);
  EXPECT_LE(fast.pipeline_chunks, 64);
}

struct Topology {
  const char* name;
  RouteFn routes;
};

// Large messages (4 MiB per rank, 10 us hops at 1 GB/s: bandwidth-bound): the prediction tracks
// the simulated timeline within 10 % for every algorithm on every topology.
TEST(AlgoCostModel, PredictionTracksSimulationForLargeMessages) {
  const int gx = 4;
  const int gy = 2;
  const int p = gx * gy;
  const double hop = 1e-5;
  const double bw = 1e9;
  const size_t count = 1 << 20;
  const std::vector<Topology> topologies = {{"mesh", uniform_route_fn(p, hop, bw)},
                                            {"ring", testing::ring_route_fn(p, hop, bw)},
                                            {"torus", testing::torus_route_fn(gx, gy, hop, bw)}};
  const std::vector<std::pair<Algorithm, ScheduleParams>> algos = {
      {Algorithm::kRing, params_of(p, count)},
      {Algorithm::kRabenseifner, params_of(p, count)},
      {Algorithm::kTorus2d, params_of(p, count, gx, gy)},
      {Algorithm::kHierarchical, params_of(p, count, 0, 0, 2)},
      {Algorithm::kDoubleBinaryTree, params_of(p, count)}};
  for (const Topology& t : topologies) {
    for (const auto& [a, params] : algos) {
      const double sim = simulated_s(a, params, t.routes, 1e-6);
      const double pred = predicted_s(a, params, t.routes, 1e-6);
      EXPECT_NEAR(pred, sim, 0.10 * sim) << algorithm_name(a) << " on " << t.name;
    }
  }
  // Odd world size too (fold of Rabenseifner, shifted tree).
  const RouteFn ring7 = testing::ring_route_fn(7, hop, bw);
  for (Algorithm a : {Algorithm::kRing, Algorithm::kRabenseifner, Algorithm::kDoubleBinaryTree}) {
    const double sim = simulated_s(a, params_of(7, count), ring7, 0.0);
    EXPECT_NEAR(predicted_s(a, params_of(7, count), ring7, 0.0), sim, 0.10 * sim)
        << algorithm_name(a) << " on ring of 7";
  }
}

// More pipeline chunks than elements (37 elements, 100 chunks): the empty chunks are neither
// scheduled nor predicted (the prediction counted their rounds: 5x the simulated time).
TEST(AlgoCostModel, TreeChunksBeyondTheElementCountAreNotPredicted) {
  ScheduleParams params = params_of(8, 37);
  params.pipeline_chunks = 100;
  const RouteFn mesh = uniform_route_fn(8, 1e-5, 1e9);
  const double sim = simulated_s(Algorithm::kDoubleBinaryTree, params, mesh, 1e-6);
  EXPECT_NEAR(predicted_s(Algorithm::kDoubleBinaryTree, params, mesh, 1e-6), sim, 0.10 * sim);
  EXPECT_EQ(double_binary_tree_chunks(params), 19);  // the larger tree's slice: 37 - 37 / 2
}

TEST(AlgoCostModel, RingOnARingIsPredictedWithinTwoPercent) {
  for (int p : {4, 7, 8}) {
    const RouteFn ring = testing::ring_route_fn(p, 3e-4, 2e9);
    const ScheduleParams params = params_of(p, (1 << 20) + 3);
    const double sim = simulated_s(Algorithm::kRing, params, ring, 0.0);
    EXPECT_NEAR(predicted_s(Algorithm::kRing, params, ring, 0.0), sim, 0.02 * sim) << "p=" << p;
  }
}

TEST(AlgoCostModel, RabenseifnerLosesToRingOnARingForLargeMessagesWinsOnAMeshForSmallOnes) {
  const int p = 8;
  const RouteFn ring = testing::ring_route_fn(p, 1e-5, 1e9);
  const ScheduleParams large = params_of(p, 1 << 22);
  EXPECT_GT(predicted_s(Algorithm::kRabenseifner, large, ring, 0.0),
            1.2 * predicted_s(Algorithm::kRing, large, ring, 0.0));
  EXPECT_GT(simulated_s(Algorithm::kRabenseifner, large, ring, 0.0),
            1.2 * simulated_s(Algorithm::kRing, large, ring, 0.0));

  const RouteFn mesh = uniform_route_fn(p, 5e-3, 1e9);
  const ScheduleParams small = params_of(p, 256);
  EXPECT_LT(predicted_s(Algorithm::kRabenseifner, small, mesh, 0.0),
            0.5 * predicted_s(Algorithm::kRing, small, mesh, 0.0));
  EXPECT_LT(simulated_s(Algorithm::kRabenseifner, small, mesh, 0.0),
            0.5 * simulated_s(Algorithm::kRing, small, mesh, 0.0));
}

TEST(AlgoCostModel, TreePipeliningPaysOffForLargeMessages) {
  // Bandwidth-bound mesh: one chunk per tree costs 2H rounds of half the buffer; 16 chunks cost
  // 16 + 2H - 1 rounds of 1/32 of it.
  const RouteFn mesh = uniform_route_fn(8, 1e-6, 1e9);
  ScheduleParams one = params_of(8, 1 << 20);
  one.pipeline_chunks = 1;
  ScheduleParams sixteen = one;
  sixteen.pipeline_chunks = 16;
  const double t1 = simulated_s(Algorithm::kDoubleBinaryTree, one, mesh, 0.0);
  const double t16 = simulated_s(Algorithm::kDoubleBinaryTree, sixteen, mesh, 0.0);
  EXPECT_LT(t16, 0.5 * t1);
  EXPECT_NEAR(predicted_s(Algorithm::kDoubleBinaryTree, sixteen, mesh, 0.0), t16, 0.10 * t16);
}

TEST(AlgoCostModel, AutoPicksRingOnABandwidthBoundRingAndRabenseifnerOnALatencyBoundMesh) {
  const int p = 8;
  std::vector<Prediction> ranked;
  ASSERT_TRUE(
      rank_algorithms(params_of(p, 1 << 22), 4, testing::ring_route_fn(p, 0.0, 1e9), 0.0, 0.0, &ranked)
          .is_ok());
  ASSERT_EQ(ranked.size(), 3u);  // no grid, one rank per node: torus2d and hierarchical skipped
  EXPECT_EQ(ranked[0].algorithm, Algorithm::kRing) << ranked[0].formula;
  for (size_t i = 1; i < ranked.size(); ++i) EXPECT_LE(ranked[i - 1].seconds, ranked[i].seconds);

  ASSERT_TRUE(
      rank_algorithms(params_of(p, 64), 4, uniform_route_fn(p, 6.58e-3, 12.5e9), 0.0, 1e-5, &ranked).is_ok());
  EXPECT_EQ(ranked[0].algorithm, Algorithm::kRabenseifner) << ranked[0].formula;
  Prediction chosen;
  ASSERT_TRUE(predict_allreduce(Algorithm::kAuto, params_of(p, 64), 4, uniform_route_fn(p, 6.58e-3, 12.5e9),
                                0.0, 1e-5, &chosen)
                  .is_ok());
  EXPECT_EQ(chosen.algorithm, Algorithm::kRabenseifner);

  // With a grid and nodes that fit, every algorithm is ranked.
  ASSERT_TRUE(rank_algorithms(params_of(p, 64, 4, 2, 2), 4, uniform_route_fn(p, 1e-3, 1e9), 0.0, 0.0, &ranked)
                  .is_ok());
  EXPECT_EQ(ranked.size(), 5u);
}

TEST(AlgoCostModel, MissingRoutesAndMisfitsAreErrors) {
  const RouteFn broken = [](int src, int dst, double t, Route* out) -> Status {
    if ((src == 0 && dst == 4) || (src == 4 && dst == 0)) {
      return make_error(StatusCode::kUnavailable, "no route from rank ", src, " to rank ", dst, " at t=", t);
    }
    return uniform_route_fn(8, 1e-3, 1e9)(src, dst, t, out);
  };
  Prediction pred;
  Status st = predict_allreduce(Algorithm::kRabenseifner, params_of(8, 1024), 4, broken, 0.0, 0.0, &pred);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("no route from rank"), std::string::npos) << st.message();
  // Ring needs only neighbours: auto still ranks what works.
  std::vector<Prediction> ranked;
  ASSERT_TRUE(rank_algorithms(params_of(8, 1024), 4, broken, 0.0, 0.0, &ranked).is_ok());
  for (const Prediction& p : ranked) EXPECT_NE(p.algorithm, Algorithm::kRabenseifner);
  EXPECT_EQ(
      predict_allreduce(Algorithm::kTorus2d, params_of(8, 1024, 3, 3), 4, broken, 0.0, 0.0, &pred).code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::collectives::algorithms
