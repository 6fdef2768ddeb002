// Bit-exact resume on real MPI ranks: a run cut after a checkpoint and resumed in fresh Trainers
// (new model, new loaders, state from the HDF5 file only) ends with parameters and AdamW moments
// bit-identical to an uninterrupted run; corrupt or missing newer checkpoints are skipped for an older
// good one, and with no good one the resume refuses, naming the file.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/store.hpp"
#include "collectives/mpi_communicator.hpp"
#include "runtime/trainer.hpp"
#include "runtime/trainer_checkpoint.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using collectives::MpiCommunicator;
using testing::CpuTrainer;
using testing::same_bits;
using testing::world_rank;
namespace fs = std::filesystem;

Config config_for(const std::string& dir, const std::string& ckpt) {
  Config c = testing::tiny_config(dir + "/train.bin", 4);
  c.train.warmup_steps = 3;
  c.checkpoint.dir = ckpt;
  c.checkpoint.every_steps = ckpt.empty() ? 0 : 3;
  return c;
}

struct State {
  std::vector<float> params, m, v;
};

State state_of(Trainer& t) {
  State s;
  auto& model = t.model();
  const size_t n = model.num_parameters();
  for (auto [dst, src] : {std::pair{&s.params, model.params()}, std::pair{&s.m, model.adam_m()},
                          std::pair{&s.v, model.adam_v()}}) {
    dst->resize(n);
    std::memcpy(dst->data(), src, n * sizeof(float));  // CPU backend: host memory
  }
  return s;
}

// Parameters and both AdamW moments, bit for bit.
void expect_bit_identical(const State& got, const State& want) {
  EXPECT_TRUE(same_bits(got.params, want.params)) << "parameters differ";
  EXPECT_TRUE(same_bits(got.m, want.m)) << "adam_m differs";
  EXPECT_TRUE(same_bits(got.v, want.v)) << "adam_v differs";
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &comm_).is_ok());
    dir_ = testing::shared_token_folder("perigee_resume_", 5);  // a token file for every rank
  }
  // Runs `steps` steps (or to the end with run()) in a fresh Trainer; returns its final state.
  State train(const Config& config, int steps, bool checkpoint_at_end, int64_t* resumed_from = nullptr) {
    CpuTrainer run(config, comm_.get());
    Trainer& t = run.trainer;
    PERIGEE_CHECK_OR_DIE(t.setup());
    if (resumed_from != nullptr) *resumed_from = t.resumed_from_step();
    if (steps < 0) {
      PERIGEE_CHECK_OR_DIE(t.run());
    } else {
      for (int i = 0; i < steps; ++i) PERIGEE_CHECK_OR_DIE(t.step(nullptr));
      if (checkpoint_at_end) PERIGEE_CHECK_OR_DIE(t.save_checkpoint());
      PERIGEE_CHECK_OR_DIE(t.finish_checkpoints());
    }
    return state_of(t);
  }
  std::unique_ptr<MpiCommunicator> comm_;
  std::string dir_;
};

TEST_F(Resume, CutAndResumedRunIsBitIdentical) {
  const State reference = train(config_for(dir_, ""), -1, false);  // 10 steps, no checkpoints
  const std::string ckpt = dir_ + "/ckpt_a";
  const Config config = config_for(dir_, ckpt);
  train(config, 4, true);  // steps 1..4, checkpoint at 4, then the "power cut"
  int64_t resumed = -1;
  const State resumed_state = train(config, -1, false, &resumed);  // steps 5..10 from the file
  EXPECT_EQ(resumed, 4);
  expect_bit_identical(resumed_state, reference);
}

// [train] micro_batch: the passes' accumulation is part of the step, so a cut run resumes bit for bit
// too; and a run may resume with another micro_batch (another number of passes over the same samples).
TEST_F(Resume, CutAndResumedRunInMicroBatchesIsBitIdentical) {
  Config plain = config_for(dir_, "");
  plain.train.micro_batch = 1;
  const State reference = train(plain, -1, false);
  const std::string ckpt = dir_ + "/ckpt_micro";
  Config config = config_for(dir_, ckpt);
  config.train.micro_batch = 1;
  train(config, 4, true);
  int64_t resumed = -1;
  const State resumed_state = train(config, -1, false, &resumed);
  EXPECT_EQ(resumed, 4);
  expect_bit_identical(resumed_state, reference);

  const std::string ckpt2 = dir_ + "/ckpt_micro2";
  config = config_for(dir_, ckpt2);
  config.train.micro_batch = 1;
  train(config, 4, true);
  config.train.micro_batch = 0;  // the rest of the run in one pass per step
  const State switched = train(config, -1, false, &resumed);
  EXPECT_EQ(resumed, 4);
  EXPECT_LE(testing::max_abs_diff(switched.params, reference.params), 1e-4)
      << "only the order of the gradient sums differs";
}

TEST_F(Resume, OnlyCheckpointCorruptRefusesWithTheFileNamed) {
  const std::string ckpt = dir_ + "/ckpt_b";
  const Config config = config_for(dir_, ckpt);
  train(config, 7, true);  // step() loop: no scheduled checkpoints, one explicit at step 7
  MPI_Barrier(MPI_COMM_WORLD);
  const int rank = world_rank();
  if (rank == 0) {
    // Flip one byte in the middle of the newest file (tensor data).
    const std::string newest = ckpt + "/ckpt-00000007.h5";
    ASSERT_TRUE(fs::exists(newest));
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = fs::file_size(newest);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&c, 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // Without a schedule-made checkpoint at 3 or 6 only step 7 exists: the resume must refuse.
  CpuTrainer t(config, comm_.get());
  Status s = t.trainer.setup();
  ASSERT_FALSE(s.is_ok());
  if (rank == 0) {
    EXPECT_NE(s.message().find("ckpt-00000007.h5"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("to start fresh"), std::string::npos) << s.message();
  }
}

// resume = "never" over a folder with checkpoints refuses on every rank at setup, naming the newest, and
// the file stays as it was (a fresh run's first commit, at step 3, would delete step 4 as abandoned).
TEST_F(Resume, NeverOverAFolderWithCheckpointsRefusesAndKeepsThem) {
  const std::string ckpt = dir_ + "/ckpt_never";
  Config config = config_for(dir_, ckpt);
  train(config, 4, true);  // step() loop: one checkpoint, at step 4
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string newest = ckpt + "/ckpt-00000004.h5";
  const auto size_before = world_rank() == 0 ? fs::file_size(newest) : 0;
  config.checkpoint.resume = "never";
  CpuTrainer t(config, comm_.get());
  const Status s = t.trainer.setup();
  ASSERT_FALSE(s.is_ok());
  if (world_rank() == 0) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.message().find("resume = \"never\""), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(newest), std::string::npos) << s.message();
    EXPECT_EQ(fs::file_size(newest), size_before);
  } else {
    EXPECT_NE(s.message().find("opening the checkpoint folder"), std::string::npos) << s.message();
  }
  // The same folder emptied: resume = "never" starts fresh there.
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    for (const auto& e : fs::directory_iterator(ckpt)) fs::remove(e.path());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  CpuTrainer fresh(config, comm_.get());
  const Status ok = fresh.trainer.setup();
  EXPECT_TRUE(ok.is_ok()) << ok.to_string();
}

// A checkpoint folder where nothing can be written is refused at setup on every rank (rank 0 naming
// it), not at the first background write a whole checkpoint interval later. The probe's own name,
// taken by a folder, makes the creation fail even for root.
TEST_F(Resume, UnwritableCheckpointFolderIsRefusedAtSetup) {
  const std::string ckpt = dir_ + "/ckpt_unwritable";
  if (world_rank() == 0) fs::create_directories(ckpt + "/" + checkpoint::CheckpointStore::kProbeName);
  MPI_Barrier(MPI_COMM_WORLD);
  CpuTrainer t(config_for(dir_, ckpt), comm_.get());
  const Status s = t.trainer.setup();
  ASSERT_FALSE(s.is_ok());
  const std::string want = world_rank() == 0 ? "is not writable" : "opening the checkpoint folder";
  EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
}

TEST_F(Resume, CheckpointThatRank0CannotRestoreFailsEveryRankAtOnce) {
  // A file that verifies (valid manifest) but holds half of the invariant window: rank 0 refuses it
  // while restoring, after the load; every other rank must hear of it, not wait on a collective.
  const std::string ckpt = dir_ + "/ckpt_d";
  const Config config = config_for(dir_, ckpt);
  train(config, 4, true);
  MPI_Barrier(MPI_COMM_WORLD);
  const int rank = world_rank();
  int window = -1;  // what rank 0 found in the file, for every rank (no ASSERT before the barrier)
  if (rank == 0) {
    const std::string file = ckpt + "/ckpt-00000004.h5";
    checkpoint::Snapshot s;
    PERIGEE_CHECK_OR_DIE(checkpoint::read_snapshot(file, &s));
    const auto losses = s.meta.series.find(kInvariantLossesSeries);
    window = losses == s.meta.series.end() ? -1 : static_cast<int>(losses->second.size());
    if (s.meta.series.erase(kInvariantNormsSeries) != 1) window = -2;
    PERIGEE_CHECK_OR_DIE(checkpoint::write_snapshot(file, s));
  }
  MPI_Bcast(&window, 1, MPI_INT, 0, MPI_COMM_WORLD);
  ASSERT_EQ(window, 4) << "the checkpoint should hold the window of the 4 accepted steps, both series";
  CpuTrainer t(config, comm_.get());
  const Status s = t.trainer.setup();
  ASSERT_FALSE(s.is_ok());
  const std::string want = rank == 0 ? "'invariant_losses' without its partner 'invariant_grad_norms'"
                                     : "rank 0 could not restore its checkpoint";
  EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
}

// The count of applied AdamW updates (the bias correction's) travels in the checkpoint: a count past
// the step is refused while restoring, and a file without it (an older run) counts every step, which
// for a run that skipped nothing resumes bit for bit.
TEST_F(Resume, AdamUpdateCountIsCheckedAndOlderFilesCountTheSteps) {
  const State reference = train(config_for(dir_, ""), -1, false);
  const std::string ckpt = dir_ + "/ckpt_u";
  const Config config = config_for(dir_, ckpt);
  train(config, 4, true);
  const std::string file = ckpt + "/ckpt-00000004.h5";
  const int rank = world_rank();
  auto rewrite = [&](auto change) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
      checkpoint::Snapshot s;
      PERIGEE_CHECK_OR_DIE(checkpoint::read_snapshot(file, &s));
      change(&s.meta.series);
      PERIGEE_CHECK_OR_DIE(checkpoint::write_snapshot(file, s));
    }
    MPI_Barrier(MPI_COMM_WORLD);
  };
  double stored = -1.0;
  rewrite([&](auto* series) {
    stored = series->at(kAdamUpdatesSeries).at(0);
    (*series)[kAdamUpdatesSeries] = {5.0};
  });
  MPI_Bcast(&stored, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  EXPECT_EQ(stored, 4.0);
  {
    CpuTrainer t(config, comm_.get());
    const Status s = t.trainer.setup();
    ASSERT_FALSE(s.is_ok());
    EXPECT_NE(s.message().find(rank == 0 ? "'adam_updates' must be one whole number in [0, step 4]"
                                         : "rank 0 could not restore its checkpoint"),
              std::string::npos)
        << s.message();
  }
  rewrite([](auto* series) { series->erase(kAdamUpdatesSeries); });
  int64_t resumed = -1;
  const State s = train(config, -1, false, &resumed);
  EXPECT_EQ(resumed, 4);
  expect_bit_identical(s, reference);
}

TEST_F(Resume, CheckpointBeforeTheFirstStepHasNoWindowAndResumesBitIdentical) {
  const State reference = train(config_for(dir_, ""), -1, false);
  const std::string ckpt = dir_ + "/ckpt_e";
  const Config config = config_for(dir_, ckpt);
  train(config, 0, true);  // a checkpoint of step 0: the window is empty
  int64_t resumed = -1;
  const State s = train(config, -1, false, &resumed);
  EXPECT_EQ(resumed, 0);
  expect_bit_identical(s, reference);
}

TEST_F(Resume, ScheduledCheckpointsAndFallbackStillBitIdentical) {
  const State reference = train(config_for(dir_, ""), -1, false);
  const std::string ckpt = dir_ + "/ckpt_c";
  Config config = config_for(dir_, ckpt);
  config.checkpoint.keep_last = 5;
  {
    // A full scheduled run writes 3, 6, 9, 10; then drop 10 and corrupt 9: resume must use 6.
    train(config, -1, false);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const int rank = world_rank();
  if (rank == 0) {
    ASSERT_TRUE(fs::remove(ckpt + "/ckpt-00000010.h5"));
    fs::resize_file(ckpt + "/ckpt-00000009.h5", fs::file_size(ckpt + "/ckpt-00000009.h5") / 2);  // truncated
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // The unreadable 9 is set aside, not deleted by the commit at 7 (it may have failed for a transient
  // reason); the commit that reaches step 9 removes it.
  const std::string aside = ckpt + "/ckpt-00000009.h5.unreadable";
  int64_t resumed = -1;
  train(config, 1, true, &resumed);  // step 7, checkpoint at 7
  EXPECT_EQ(resumed, 6);
  if (rank == 0) {
    EXPECT_TRUE(fs::exists(aside));
    EXPECT_FALSE(fs::exists(ckpt + "/ckpt-00000009.h5"));
    EXPECT_TRUE(fs::exists(ckpt + "/ckpt-00000007.h5"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const State s = train(config, -1, false, &resumed);
  EXPECT_EQ(resumed, 7);
  expect_bit_identical(s, reference);
  if (rank == 0) {
    EXPECT_FALSE(fs::exists(aside));
  }
}

}  // namespace
}  // namespace perigee::runtime
