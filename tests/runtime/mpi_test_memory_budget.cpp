// The setup's memory check on real MPI ranks (runtime/memory_budget.hpp, Trainer::check_memory): a job
// that cannot fit is refused on every rank before anything is allocated, naming the memory, the items
// and the ranks sharing it; one rank short of memory fails them all at once; [device] memory_check =
// false only warns.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <string>

#include "collectives/mpi_communicator.hpp"
#include "runtime/log.hpp"
#include "runtime/trainer.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using collectives::MpiCommunicator;
using testing::world_rank;
using testing::world_size;

// The CPU backend reporting `available` bytes free (the real host's answer otherwise).
class ScantCpuBackend : public kernels::cpu::CpuBackend {
 public:
  explicit ScantCpuBackend(uint64_t available) : CpuBackend(1), available_(available) {}
  Status memory_info(kernels::MemoryInfo* out) const override {
    *out = kernels::MemoryInfo{available_, available_, "the test's scant memory"};
    return Status::ok();
  }

 private:
  uint64_t available_;
};

bool contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

class MemoryBudget : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &comm_, 20.0).is_ok());
    dir_ = testing::shared_token_folder("perigee_memory_budget_", 13);
    config_ = testing::tiny_config(dir_ + "/train.bin", 2 * world_size());
    config_.train.steps = 2;
  }
  void TearDown() override { log::close_file(); }
  std::unique_ptr<MpiCommunicator> comm_;
  std::string dir_;
  Config config_;
};

TEST_F(MemoryBudget, AModelTooLargeForAnyHostIsRefusedOnEveryRankBeforeAllocating) {
  config_.model.n_layer = 4096;
  config_.model.n_embd = 16384;  // 1.3e13 parameters: 4 fp32 copies are 192 TiB
  testing::CpuTrainer t(config_, comm_.get());
  const auto start = std::chrono::steady_clock::now();
  const Status s = t.trainer.setup();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
  EXPECT_TRUE(contains(s, "the job does not fit in host RAM")) << s.message();
  EXPECT_TRUE(contains(s, "TiB  parameters, gradients, AdamW m and v (4 x 13195016437760 fp32)"))
      << s.message();
  EXPECT_TRUE(contains(s, "Train a smaller [model]")) << s.message();  // the parameters dominate
  // The token file is counted too, before it is read: 12,000 tokens at 2 bytes and the order of its 749
  // samples of 16 + 1 tokens at 8 bytes, 29,992 bytes.
  EXPECT_TRUE(contains(s, format_bytes(29992) + "  token data (the train and val files")) << s.message();
  EXPECT_EQ(t.trainer.model().num_parameters(), 0u) << "the model was allocated";
  EXPECT_LT(took, 10.0);
}

TEST_F(MemoryBudget, RanksSharingTheMemoryMultiplyTheNeed) {
  // The tiny model at T 256 needs a few MiB per rank, mostly activations (the CPU's attention
  // probabilities): a million ranks on one host would need terabytes.
  config_.model.context = 256;
  config_.train.seq_len = 256;
  TrainerOptions options{.write_run_dir = false, .log_steps = false};
  options.memory_ranks = 1000000;
  kernels::cpu::CpuBackend cpu(1);
  Trainer trainer(config_, comm_.get(), &cpu, options);
  const Status s = trainer.setup();
  ASSERT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
  EXPECT_TRUE(contains(s, " per rank, x 1000000 ranks sharing it")) << s.message();
  EXPECT_TRUE(contains(s, "Lower [train] micro_batch")) << s.message();  // the activations dominate

  options.memory_ranks = 1;
  Trainer fits(config_, comm_.get(), &cpu, options);
  ASSERT_TRUE(fits.setup().is_ok());
}

TEST_F(MemoryBudget, OneRankShortOfMemoryFailsEveryRankAtOnce) {
  const bool short_rank = world_rank() == world_size() - 1;
  ScantCpuBackend cpu(short_rank ? 4096 : UINT64_MAX);
  Trainer trainer(config_, comm_.get(), &cpu, TrainerOptions{.write_run_dir = false, .log_steps = false});
  const Status s = trainer.setup();
  ASSERT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
  if (short_rank) {
    EXPECT_TRUE(contains(s, "does not fit in the test's scant memory")) << s.message();
    EXPECT_TRUE(contains(s, "4.00 KiB is free")) << s.message();
  } else {
    EXPECT_TRUE(contains(s, "another rank's job does not fit")) << s.message();
  }
  EXPECT_EQ(trainer.model().num_parameters(), 0u);
}

TEST_F(MemoryBudget, MemoryCheckOffWarnsAndTrains) {
  config_.device.memory_check = false;
  ScantCpuBackend cpu(4096);
  Trainer trainer(config_, comm_.get(), &cpu, TrainerOptions{.write_run_dir = false, .log_steps = false});
  ASSERT_TRUE(trainer.setup().is_ok());
  StepResult r;
  ASSERT_TRUE(trainer.step(&r).is_ok());
  EXPECT_TRUE(std::isfinite(r.loss));
}

}  // namespace
}  // namespace perigee::runtime
