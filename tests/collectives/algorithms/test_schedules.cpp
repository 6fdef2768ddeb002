// All-reduce schedules: exact sums on 1..9 ranks for every algorithm and parameter choice, the
// structure (validation, round counts, bytes per rank), the trees and the parameter errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

#include "collectives/algorithms/double_binary_tree.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "tests/collectives/algorithms/schedule_cases.hpp"

namespace perigee::collectives::algorithms {
namespace {

using testing::Case;
using testing::cases_for;

// Values whose sums are exact in every type: small integers.
template <typename T>
void expect_exact_sum(const Case& c) {
  Schedule s;
  ASSERT_TRUE(build_allreduce_schedule(c.algorithm, c.params, &s).is_ok()) << c.label();
  ASSERT_TRUE(validate_schedule(s).is_ok()) << c.label() << ": " << validate_schedule(s).message();
  const int p = c.params.ranks;
  const size_t n = c.params.count;
  std::vector<std::vector<T>> buf(static_cast<size_t>(p), std::vector<T>(n));
  std::vector<T> want(n, T(0));
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < n; ++i) {
      buf[r][i] = static_cast<T>((r + 1) * 100 + static_cast<int>(i % 37) - 20);
      want[i] += buf[r][i];
    }
  }
  ASSERT_TRUE(run_schedule_in_memory(s, buf).is_ok()) << c.label();
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(buf[r][i], want[i]) << c.label() << " rank " << r << " element " << i;
    }
  }
}

TEST(AlgoSchedules, ExactSumsOnOneToNineRanks) {
  for (int p = 1; p <= 9; ++p) {
    for (size_t count : {size_t{0}, size_t{1}, size_t(p - 1), size_t(p), size_t{1007}}) {
      for (const Case& c : cases_for(p, count)) {
        expect_exact_sum<int32_t>(c);
        expect_exact_sum<int64_t>(c);
        expect_exact_sum<float>(c);
        expect_exact_sum<double>(c);
      }
    }
  }
}

int floor_log2(int p) {
  int l = 0;
  while ((2 << l) <= p) ++l;
  return l;
}

TEST(AlgoSchedules, RoundCounts) {
  const size_t count = 4096;  // large enough that no round is empty
  for (int p = 1; p <= 9; ++p) {
    for (const Case& c : cases_for(p, count)) {
      Schedule s;
      ASSERT_TRUE(build_allreduce_schedule(c.algorithm, c.params, &s).is_ok()) << c.label();
      size_t want = 0;
      switch (c.algorithm) {
        case Algorithm::kRing:
          want = 2 * (p - 1);
          break;
        case Algorithm::kRabenseifner:
          want = 2 * floor_log2(p) + ((p & (p - 1)) != 0 ? 2 : 0);
          break;
        case Algorithm::kTorus2d:
          want = 2 * (c.params.grid_x - 1) + 2 * (c.params.grid_y - 1);
          break;
        case Algorithm::kHierarchical:
          want = 2 * (c.params.ranks_per_node - 1) + 2 * (p / c.params.ranks_per_node - 1);
          break;
        case Algorithm::kDoubleBinaryTree: {
          const auto trees = double_binary_trees(p);
          const int h = std::max(trees[0].tree_height(), trees[1].tree_height());
          want = p == 1 ? 0 : double_binary_tree_chunks(c.params) + 2 * h - 1;
          break;
        }
        default:
          FAIL();
      }
      EXPECT_EQ(s.rounds.size(), want) << c.label();
    }
  }
}

TEST(AlgoSchedules, RingSendsTwoShareOfTheBufferPerRank) {
  for (int p : {2, 3, 5, 8}) {
    for (size_t n : {size_t{1000}, size_t{1003}}) {
      ScheduleParams params;
      params.ranks = p;
      params.count = n;
      Schedule s;
      ASSERT_TRUE(build_allreduce_schedule(Algorithm::kRing, params, &s).is_ok());
      std::vector<size_t> sent(static_cast<size_t>(p), 0);
      for (const Round& r : s.rounds) {
        for (const Transfer& t : r.transfers) sent[static_cast<size_t>(t.src)] += t.count;
      }
      const double ideal = 2.0 * (p - 1) / p * static_cast<double>(n);
      const double chunk = static_cast<double>((n + p - 1) / p);
      for (int r = 0; r < p; ++r) {
        EXPECT_NEAR(static_cast<double>(sent[r]), ideal, chunk) << "p=" << p << " rank " << r;
      }
    }
  }
}

TEST(AlgoSchedules, RabenseifnerHalvesTravelNearestFirst) {
  ScheduleParams params;
  params.ranks = 8;
  params.count = 800;
  Schedule s;
  ASSERT_TRUE(build_allreduce_schedule(Algorithm::kRabenseifner, params, &s).is_ok());
  ASSERT_EQ(s.rounds.size(), 6u);
  const int distance[6] = {1, 2, 4, 4, 2, 1};
  const size_t elements[6] = {400, 200, 100, 100, 200, 400};
  for (size_t r = 0; r < 6; ++r) {
    ASSERT_EQ(s.rounds[r].transfers.size(), 8u);
    for (const Transfer& t : s.rounds[r].transfers) {
      EXPECT_EQ(t.src ^ t.dst, distance[r]) << "round " << r;
      EXPECT_EQ(t.count, elements[r]) << "round " << r;
      EXPECT_EQ(t.reduce, r < 3);
    }
  }
}

TEST(AlgoDoubleBinaryTree, TreesAreComplementary) {
  for (int p = 2; p <= 64; ++p) {
    const auto trees = double_binary_trees(p);
    int lg = floor_log2(p);
    for (int t = 0; t < 2; ++t) {
      const BinaryTree& tree = trees[t];
      int roots = 0;
      for (int r = 0; r < p; ++r) {
        if (tree.parent[r] < 0) ++roots;
        EXPECT_LE(tree.children[r].size(), 2u);
      }
      EXPECT_EQ(roots, 1) << "p=" << p;
      EXPECT_LE(tree.tree_height(), lg + 1) << "p=" << p << " tree " << t;
    }
    for (int r = 0; r < p; ++r) {
      const bool interior0 = !trees[0].children[r].empty();
      const bool interior1 = !trees[1].children[r].empty();
      EXPECT_FALSE(interior0 && interior1) << "p=" << p << ": rank " << r << " interior in both";
    }
  }
}

TEST(AlgoSchedules, ParameterErrorsNameTheParameter) {
  ScheduleParams params;
  params.ranks = 6;
  params.count = 10;
  params.grid_x = 4;
  params.grid_y = 2;
  Schedule s;
  Status st = build_allreduce_schedule(Algorithm::kTorus2d, params, &s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("grid_x"), std::string::npos) << st.message();
  params.ranks_per_node = 4;
  st = build_allreduce_schedule(Algorithm::kHierarchical, params, &s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("ranks_per_node"), std::string::npos) << st.message();
  EXPECT_FALSE(build_allreduce_schedule(Algorithm::kAuto, params, &s).is_ok());
  EXPECT_FALSE(build_allreduce_schedule(Algorithm::kNative, params, &s).is_ok());
  params.ranks = 0;
  EXPECT_FALSE(build_allreduce_schedule(Algorithm::kRing, params, &s).is_ok());
}

TEST(AlgoSchedules, ValidationCatchesBadSchedules) {
  Schedule s;
  s.ranks = 3;
  s.count = 10;
  s.rounds.resize(1);
  s.rounds[0].transfers = {{0, 1, 0, 5, true}, {2, 1, 3, 5, true}};
  EXPECT_TRUE(validate_schedule(s).is_ok()) << "overlapping reduces are allowed";
  s.rounds[0].transfers = {{0, 1, 0, 5, true}, {2, 1, 4, 5, false}};
  Status st = validate_schedule(s);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("rank 1"), std::string::npos) << st.message();
  s.rounds[0].transfers = {{0, 1, 0, 5, false}, {2, 1, 4, 5, true}};
  EXPECT_FALSE(validate_schedule(s).is_ok());
  s.rounds[0].transfers = {{0, 1, 0, 5, false}, {2, 1, 5, 5, false}};
  EXPECT_TRUE(validate_schedule(s).is_ok()) << "adjacent overwrites do not overlap";
  s.rounds[0].transfers = {{0, 3, 0, 5, true}};
  EXPECT_FALSE(validate_schedule(s).is_ok());
  s.rounds[0].transfers = {{0, 1, 6, 5, true}};
  EXPECT_FALSE(validate_schedule(s).is_ok());
  s.rounds[0].transfers = {{1, 1, 0, 5, true}};
  EXPECT_FALSE(validate_schedule(s).is_ok());
}

TEST(AlgoSchedules, InMemoryRejectsWrongBuffers) {
  ScheduleParams params;
  params.ranks = 3;
  params.count = 4;
  Schedule s;
  ASSERT_TRUE(build_allreduce_schedule(Algorithm::kRing, params, &s).is_ok());
  std::vector<std::vector<float>> two(2, std::vector<float>(4));
  EXPECT_EQ(run_schedule_in_memory(s, two).code(), StatusCode::kInvalidArgument);
  std::vector<std::vector<float>> short_one(3, std::vector<float>(4));
  short_one[1].resize(3);
  EXPECT_EQ(run_schedule_in_memory(s, short_one).code(), StatusCode::kInvalidArgument);
}

TEST(AlgoSchedules, RoundSemanticsSnapshotSourcesAtRoundStart) {
  // Rank 0 and 1 swap their values in one round: each must receive the other's old value.
  Schedule s;
  s.ranks = 2;
  s.count = 1;
  s.rounds.resize(1);
  s.rounds[0].transfers = {{0, 1, 0, 1, false}, {1, 0, 0, 1, false}};
  std::vector<std::vector<int32_t>> buf = {{5}, {7}};
  ASSERT_TRUE(run_schedule_in_memory(s, buf).is_ok());
  EXPECT_EQ(buf[0][0], 7);
  EXPECT_EQ(buf[1][0], 5);
}

TEST(AlgoNames, RoundTrip) {
  for (Algorithm a :
       {Algorithm::kRing, Algorithm::kRabenseifner, Algorithm::kTorus2d, Algorithm::kHierarchical,
        Algorithm::kDoubleBinaryTree, Algorithm::kNative, Algorithm::kAuto}) {
    Algorithm back = Algorithm::kRing;
    ASSERT_TRUE(parse_algorithm(algorithm_name(a), &back).is_ok()) << algorithm_name(a);
    EXPECT_EQ(back, a);
  }
  Algorithm out = Algorithm::kAuto;
  Status st = parse_algorithm("butterfly", &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("double_binary_tree"), std::string::npos) << st.message();
  EXPECT_EQ(out, Algorithm::kAuto);
}

}  // namespace
}  // namespace perigee::collectives::algorithms
