// The run directory on real MPI ranks: rank 0 creates it and every rank uses the same one. A folder
// rank 0 cannot create fails every rank at once (not at the next collective's deadline, which
// perigee-run would take for a dead peer and relaunch), and a long run name is used whole.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "collectives/mpi_communicator.hpp"
#include "core/read_file.hpp"
#include "runtime/log.hpp"
#include "runtime/run_name.hpp"
#include "runtime/trainer.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using collectives::MpiCommunicator;
using testing::world_rank;
namespace fs = std::filesystem;

// A Trainer that writes its run directory (no step lines), on a one-thread CPU backend.
struct RunDirTrainer {
  RunDirTrainer(const Config& config, collectives::Communicator* comm)
      : trainer(config, comm, &cpu, TrainerOptions{.write_run_dir = true, .log_steps = false}) {}
  kernels::cpu::CpuBackend cpu{1};
  Trainer trainer;
};

class RunDir : public ::testing::Test {
 protected:
  void SetUp() override {
    // A 20 s deadline: without the outcome broadcast the other ranks would wait that long.
    ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &comm_, 20.0).is_ok());
    dir_ = testing::shared_token_folder("perigee_run_dir_", 9);
  }
  void TearDown() override { log::close_file(); }
  std::unique_ptr<MpiCommunicator> comm_;
  std::string dir_;
};

TEST_F(RunDir, AFolderRank0CannotCreateFailsEveryRankAtOnce) {
  if (world_rank() == 0) std::ofstream(dir_ + "/a_file") << "x";
  MPI_Barrier(MPI_COMM_WORLD);
  Config config = testing::tiny_config(dir_ + "/train.bin", 2 * testing::world_size());
  config.run.dir = dir_ + "/a_file/runs";  // under a regular file
  config.run.name = "r";
  RunDirTrainer t(config, comm_.get());
  const auto start = std::chrono::steady_clock::now();
  const Status s = t.trainer.setup();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.to_string();
  const std::string want =
      world_rank() == 0 ? "cannot create run directory " + config.run.dir + "/r" : "rank 0 could not set up";
  EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  EXPECT_LT(took, 10.0) << "the other ranks waited for a deadline";
}

TEST_F(RunDir, ALongRunNameIsUsedWhole) {
  std::string name;
  for (int i = 0; i < 40; ++i) name += "segment" + std::to_string(100 + i) + "/";  // 440 bytes
  name += "end";
  Config config = testing::tiny_config(dir_ + "/train.bin", 2 * testing::world_size());
  config.run.dir = dir_ + "/runs";
  config.run.name = name;
  RunDirTrainer t(config, comm_.get());
  const Status s = t.trainer.setup();
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(t.trainer.run_dir(), config.run.dir + "/" + name);
  EXPECT_TRUE(fs::is_directory(t.trainer.run_dir()));
  if (world_rank() == 0) {
    EXPECT_TRUE(fs::exists(t.trainer.run_dir() + "/config.json"));
  }
}

// A launch refused at setup (here resume = "never" over the run's own checkpoints, with another learning
// rate) leaves the run folder's config.json as the run that wrote it left it: it is written only once
// every check has passed.
TEST_F(RunDir, ARefusedLaunchKeepsTheRunsConfig) {
  Config config = testing::tiny_config(dir_ + "/train.bin", 2 * testing::world_size());
  config.run.dir = dir_ + "/runs";
  config.run.name = "kept";
  config.train.steps = 2;
  config.checkpoint.every_steps = 1;
  config.checkpoint.async = false;
  {
    RunDirTrainer t(config, comm_.get());
    ASSERT_TRUE(t.trainer.setup().is_ok());
    ASSERT_TRUE(t.trainer.run().is_ok());
  }
  log::close_file();
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string path = config.run.dir + "/kept/config.json";
  std::string before;
  if (world_rank() == 0) {
    ASSERT_TRUE(read_small_file(path, "config.json", &before).is_ok());
  }
  Config again = config;
  again.train.lr = 2 * config.train.lr;
  again.checkpoint.resume = "never";
  RunDirTrainer t(again, comm_.get());
  const Status s = t.trainer.setup();
  ASSERT_FALSE(s.is_ok());
  if (world_rank() == 0) {
    EXPECT_NE(s.message().find("resume = \"never\""), std::string::npos) << s.message();
    std::string after;
    ASSERT_TRUE(read_small_file(path, "config.json", &after).is_ok());
    EXPECT_EQ(after, before) << "the refused launch rewrote " << path;
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
}

// Unnamed runs started in the same second get folders of their own, not one shared folder (whose
// checkpoints and metrics the second run would take as its own).
TEST_F(RunDir, UnnamedRunsInTheSameSecondGetTheirOwnFolders) {
  const std::string root = dir_ + "/claims" + std::to_string(world_rank());
  const long long stamp = 1795000000;  // one fixed second for every claim
  std::string a, b, c;
  ASSERT_TRUE(claim_timestamped_run_dir(root, stamp, &a).is_ok());
  ASSERT_TRUE(claim_timestamped_run_dir(root, stamp, &b).is_ok());
  ASSERT_TRUE(claim_timestamped_run_dir(root, stamp, &c).is_ok());
  EXPECT_EQ(a.rfind("run-", 0), 0u) << a;
  EXPECT_EQ(b, a + "-2");
  EXPECT_EQ(c, a + "-3");
  for (const auto& n : {a, b, c}) EXPECT_TRUE(fs::is_directory(root + "/" + n)) << n;
  std::ofstream(root + "/a_file") << "x";
  std::string none;
  const Status s = claim_timestamped_run_dir(root + "/a_file/runs", stamp, &none);
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.to_string();
  EXPECT_NE(s.message().find(root + "/a_file/runs"), std::string::npos) << s.message();

  // Two trainers without a name, one after the other: two run folders, each with its own config.
  Config config = testing::tiny_config(dir_ + "/train.bin", 2 * testing::world_size());
  config.run.dir = dir_ + "/unnamed";
  RunDirTrainer first(config, comm_.get());
  ASSERT_TRUE(first.trainer.setup().is_ok());
  log::close_file();
  RunDirTrainer second(config, comm_.get());
  ASSERT_TRUE(second.trainer.setup().is_ok());
  EXPECT_NE(first.trainer.run_dir(), second.trainer.run_dir());
  if (world_rank() == 0) {
    EXPECT_TRUE(fs::exists(first.trainer.run_dir() + "/config.json"));
    EXPECT_TRUE(fs::exists(second.trainer.run_dir() + "/config.json"));
  }
}

}  // namespace
}  // namespace perigee::runtime
