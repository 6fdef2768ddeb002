// check_ranks_agree on real MPI ranks: identical jobs pass; a job that differs on the last rank
// fails every rank, and rank 0's message names the key, both values and their ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "runtime/rank_agreement.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using testing::world_rank;
using testing::world_size;

JobDescription job() {
  return {{"train.lr", "0.001"}, {"model.n_layer", "2"}, {"job.backend", "cpu"}};
}

TEST(CheckRanksAgree, IdenticalJobsPass) {
  const Status s = check_ranks_agree(job(), MPI_COMM_WORLD);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
}

TEST(CheckRanksAgree, ALastRankWithAnotherLearningRateFailsEveryRank) {
  const int rank = world_rank(), world = world_size();
  JobDescription mine = job();
  if (world > 1 && rank == world - 1) mine["train.lr"] = "0.002";
  const Status s = check_ranks_agree(mine, MPI_COMM_WORLD);
  if (world == 1) {
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return;
  }
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  if (rank == 0) {
    const std::string others = world == 2 ? "rank 0" : "ranks 0-" + std::to_string(world - 2);
    const std::string expected =
        "  train.lr: 0.001 on " + others + "; 0.002 on rank " + std::to_string(world - 1);
    EXPECT_NE(s.message().find(expected), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find("n_layer"), std::string::npos) << s.message();
  } else {
    EXPECT_NE(s.message().find("rank 0's message"), std::string::npos) << s.message();
  }
}

TEST(CheckRanksAgree, LongDescriptionsOfDifferentLengthsArrive) {
  // Rank r carries r extra keys of growing size: the gather must place each text at its offset.
  const int rank = world_rank();
  JobDescription mine = job();
  for (int i = 0; i < rank; ++i) mine["extra." + std::to_string(i)] = std::string(1000 * (i + 1), 'x');
  const Status s = check_ranks_agree(mine, MPI_COMM_WORLD);
  if (world_size() == 1) {
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  } else if (rank == 0) {
    ASSERT_FALSE(s.is_ok());
    EXPECT_NE(s.message().find("  extra.0: (absent) on rank 0; "), std::string::npos)
        << s.message().substr(0, 300);
  } else {
    EXPECT_FALSE(s.is_ok());
  }
}

}  // namespace
}  // namespace perigee::runtime
