// The detection ladder in real training runs on real MPI ranks, with faults from the injector:
// - correctable faults (GEMM-output flips for ABFT, gradient flips for invariants + re-run) leave the
//   parameters bit-identical to the clean run, and the counters say what happened;
// - a flipped parameter on one of 3 replicas is found by the replica digest and repaired within K
//   steps (replicas bit-identical again);
// - with 2 replicas there is no majority: the run rolls back to the last checkpoint, and since the
//   replayed steps are clean it still ends bit-identical to the clean run;
// - a planned rank death fires in its launch also when the replay after a rollback reaches its step.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "collectives/mpi_communicator.hpp"
#include "runtime/trainer.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using collectives::MpiCommunicator;
using testing::CpuTrainer;
using testing::replicas_identical;
using testing::same_bits;
using testing::world_rank;
using testing::world_size;
namespace fs = std::filesystem;

// Rank 0 makes a folder with a token file and the given plan files; all ranks get the folder.
std::string shared_folder(const std::vector<std::pair<std::string, std::string>>& files) {
  return testing::shared_token_folder("perigee_ladder_", 17, files);
}

Config base_config(const std::string& dir) {
  Config c = testing::tiny_config(dir + "/train.bin", 6);  // batch divisible by 1, 2 and 3 ranks
  c.fault.window = 4;
  return c;
}

// Synchronous checkpoints into `dir` every `every` steps (rollbacks need them written at once).
void checkpoint_every(Config* c, const std::string& dir, int every) {
  c->checkpoint.dir = dir;
  c->checkpoint.every_steps = every;
  c->checkpoint.async = false;
}

struct Outcome {
  std::vector<float> params;
  FaultCounters counters;
  fault::AbftStats abft;
  uint64_t checkpoints = 0;  // saved
  int64_t adam_updates = 0;
};

// Calls body(trainer) on a fresh Trainer after its setup (own communicator with collectives that time
// out after comm_timeout_s, 0 = never; CPU backend, no run folder, no step lines).
template <typename Body>
void with_trainer(const Config& config, Body body, double comm_timeout_s = 0.0) {
  std::unique_ptr<MpiCommunicator> comm;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &comm, comm_timeout_s));
  CpuTrainer t(config, comm.get());
  PERIGEE_CHECK_OR_DIE(t.trainer.setup());
  body(t.trainer);
  // A wait for rank 0's checkpoint work raises the deadline only for itself.
  EXPECT_EQ(comm->timeout_s(), comm_timeout_s);
}

Outcome train(const Config& config, double comm_timeout_s = 0.0) {
  Outcome o;
  with_trainer(
      config,
      [&o](Trainer& t) {
        PERIGEE_CHECK_OR_DIE(t.run());
        PERIGEE_CHECK_OR_DIE(t.model().get_parameters(&o.params));
        o.counters = t.fault_counters();
        o.checkpoints = t.checkpoints_saved();
        o.adam_updates = t.adam_updates();
        if (t.abft() != nullptr) o.abft = t.abft()->stats();
      },
      comm_timeout_s);
  return o;
}

TEST(FaultLadder, CorrectableFaultsLeaveTrainingBitIdentical) {
  // Exponent-bit flips: in GEMM outputs (forward and backward, several steps) for ABFT, and in one
  // rank's gradients before the allreduce (after the invariants' window is warm) for re-run.
  const std::string plan =
      "seed 7\n"
      "fault target=gemm_output step=1 occurrence=0 bit=30\n"
      "fault target=gemm_output step=2 occurrence=5 bit=29\n"
      "fault target=gemm_output step=4 occurrence=9 bit=27 burst=4\n"
      "fault target=gemm_output step=6 occurrence=14 bit=30 rank=0\n"
      "fault target=gradient_pre_allreduce step=5 bit=30 rank=0\n"
      "fault target=gradient_post_allreduce step=8 bit=30\n";
  const std::string dir = shared_folder({{"plan.txt", plan}});
  const Outcome clean = train(base_config(dir));
  Config faulty = base_config(dir);
  faulty.fault.abft = true;
  faulty.fault.plan = dir + "/plan.txt";
  const Outcome hit = train(faulty);

  EXPECT_TRUE(same_bits(hit.params, clean.params)) << "correctable faults must leave no trace";
  EXPECT_GE(hit.counters.injected, 3u);
  EXPECT_EQ(hit.counters.triggers, 2u);   // the two gradient faults
  EXPECT_EQ(hit.counters.transient, 2u);  // both gone on the re-run
  EXPECT_EQ(hit.counters.skipped, 0u);
  EXPECT_GE(hit.abft.faults_detected, 3u);
  EXPECT_EQ(hit.abft.escalated, 0u);
  EXPECT_GE(hit.abft.corrected + hit.abft.recomputed, hit.abft.faults_detected);
  EXPECT_EQ(clean.counters.triggers, 0u);  // no false alarm in the clean run
}

// An upset in one replica's gradients after the all-reduce: that rank's norm explodes, the others' does
// not. Every rank takes the largest norm, so all fire, all re-run together and keep the clean re-run:
// the run ends bit-identical to the clean one (before, the hit rank re-ran alone and its collectives
// paired with the others' next ones).
TEST(FaultLadder, GradientUpsetOnOneReplicaIsCaughtByEveryRank) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
  const std::string dir =
      shared_folder({{"plan.txt", "fault target=gradient_post_allreduce step=5 bit=30 rank=1\n"}});
  const Outcome clean = train(base_config(dir));
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.injected, world_rank() == 1 ? 1u : 0u);
  EXPECT_EQ(o.counters.triggers, 1u) << "rank " << world_rank();
  EXPECT_EQ(o.counters.transient, 1u) << "rank " << world_rank();
  EXPECT_EQ(o.counters.skipped, 0u);
  EXPECT_TRUE(replicas_identical(o.params));
  EXPECT_TRUE(same_bits(o.params, clean.params)) << "the re-run is clean on every rank";
}

TEST(FaultLadder, FlippedParameterOnOneOfThreeReplicasIsRepairedWithinK) {
  if (world_size() != 3) GTEST_SKIP() << "needs exactly 3 ranks";  // same decision on every rank
  const std::string dir = shared_folder({{"plan.txt", "fault target=parameter step=3 rank=1 bit=30\n"}});
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  c.fault.digest_every = 2;
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.replica_repairs, 1u);  // after step 4, within K = 2 steps of the flip
  EXPECT_EQ(o.counters.replica_checks, 5u);
  EXPECT_TRUE(replicas_identical(o.params));
}

TEST(FaultLadder, TwoReplicasWithoutMajorityRollBackAndEndClean) {
  if (world_size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string dir = shared_folder({{"plan.txt", "fault target=parameter step=3 rank=1 bit=30\n"}});
  const Outcome clean = train(base_config(dir));
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  c.fault.digest_every = 2;
  checkpoint_every(&c, dir + "/ckpt", 2);
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.rollbacks, 1u);
  EXPECT_TRUE(replicas_identical(o.params));
  EXPECT_TRUE(same_bits(o.params, clean.params)) << "the replayed steps are clean";
}

// A rollback replays the upsets that already ran without them, and only those: the digest after step 4
// rolls back to checkpoint 2, and the gradient upset planned for step index 4 (the fifth step), which
// never ran before the rollback, comes in the replay; the invariants catch it and the re-run clears it.
// (Before, every upset of step index 4 was taken for a replayed one and dropped.)
TEST(FaultLadder, TheReplayAfterADigestRollbackMeetsTheUpsetsThatNeverRan) {
  if (world_size() != 2) GTEST_SKIP() << "needs exactly 2 ranks";
  const std::string dir = shared_folder({{"plan.txt",
                                          "fault target=parameter step=3 rank=1 bit=30\n"
                                          "fault target=gradient_post_allreduce step=4 bit=30 element=5\n"}});
  const Outcome clean = train(base_config(dir));
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  c.fault.digest_every = 2;
  checkpoint_every(&c, dir + "/ckpt_replay", 2);
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.rollbacks, 1u);
  EXPECT_EQ(o.counters.injected, world_rank() == 1 ? 2u : 1u);  // the parameter flip only once
  EXPECT_EQ(o.counters.triggers, 1u);
  EXPECT_EQ(o.counters.transient, 1u);
  EXPECT_TRUE(same_bits(o.params, clean.params));
}

// A plan's faults are the training steps': validation between steps (its forward GEMMs run with the
// next step's index) neither meets them nor shifts their occurrence counts. The same plan hits the same
// GEMM output element, with the same value, with validation every step as without it (before, the
// validation's 9 forward GEMMs took occurrences 0-8 of the next step).
TEST(FaultLadder, ValidationNeitherMeetsNorShiftsThePlannedFaults) {
  const std::string dir = shared_folder({{"plan.txt",
                                          "fault target=gemm_output step=2 occurrence=5 bit=30\n"
                                          "fault target=gemm_output step=4 occurrence=12 bit=29\n"}});
  auto records = [&](int val_every) {
    Config c = base_config(dir);
    c.fault.abft = true;
    c.fault.plan = dir + "/plan.txt";
    c.data.val_file = c.data.train_file;
    c.train.val_every = val_every;
    c.train.val_batches = 1;
    std::vector<fault::FaultRecord> out;
    with_trainer(c, [&](Trainer& t) {
      PERIGEE_CHECK_OR_DIE(t.run());
      out.assign(t.injector()->records().begin(), t.injector()->records().end());
      EXPECT_EQ(t.abft()->stats().faults_detected, 2u) << "val_every " << val_every;
    });
    return out;
  };
  const auto plain = records(0), validated = records(1);
  ASSERT_EQ(plain.size(), 2u);
  ASSERT_EQ(validated.size(), plain.size());
  for (size_t k = 0; k < plain.size(); ++k) {
    EXPECT_EQ(validated[k].step, plain[k].step);
    EXPECT_EQ(validated[k].occurrence, plain[k].occurrence);
    EXPECT_EQ(validated[k].index, plain[k].index);
    EXPECT_EQ(validated[k].old_value, plain[k].old_value) << "fault " << k << " hit another GEMM";
  }
}

// A checkpoint holds rank 0's state. An upset in it between two digests (a parameter of rank 0 after
// step 3; digests every 4 steps, checkpoints every step) must not reach checkpoint 3, from where the
// rollback after the next digest, or a resume, would copy it to every replica: the replicas are compared
// before each checkpoint. With 2 there is no majority and the run rolls back to checkpoint 2; with 3
// rank 0 is repaired from the others first. Either way the run, and every checkpoint it leaves, match the
// same run without the upset.
TEST(FaultLadder, ACheckpointNeverSavesAReplicaTheOthersDisagreeWith) {
  if (world_size() == 1) GTEST_SKIP() << "one replica: nothing to compare it with";
  const std::string dir =
      shared_folder({{"plan.txt", "fault target=parameter step=3 rank=0 bit=22 element=5\n"}});
  Config c = base_config(dir);
  c.fault.digest_every = 4;
  c.checkpoint.keep_last = 100;  // all of them, to compare
  checkpoint_every(&c, dir + "/ckpt_agree_clean", 1);
  const Outcome clean = train(c);
  c.fault.plan = dir + "/plan.txt";
  checkpoint_every(&c, dir + "/ckpt_agree_hit", 1);
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.rollbacks, world_size() == 2 ? 1u : 0u);
  EXPECT_EQ(o.counters.replica_repairs, world_size() == 2 ? 0u : 1u);
  EXPECT_TRUE(same_bits(o.params, clean.params));
  if (world_rank() != 0) return;
  for (const char* file : {"/ckpt-00000003.h5", "/ckpt-00000004.h5", "/ckpt-00000010.h5"}) {
    checkpoint::Snapshot want, got;
    PERIGEE_CHECK_OR_DIE(checkpoint::read_snapshot(dir + "/ckpt_agree_clean" + file, &want));
    PERIGEE_CHECK_OR_DIE(checkpoint::read_snapshot(dir + "/ckpt_agree_hit" + file, &got));
    ASSERT_EQ(got.buffers.size(), want.buffers.size()) << file;
    for (size_t i = 0; i < want.buffers.size(); ++i) {
      EXPECT_TRUE(same_bits(got.buffers[i].data, want.buffers[i].data))
          << file << " " << want.buffers[i].name;
    }
  }
}

// A re-run that differs from the first run but still fires hands on its own loss and norm: the
// gradients are the re-run's. The loss threshold fires on every step here (as in
// LevelAboveTheThresholdIsAppliedAfterTwoSkipsNotRolledBack below), and a gradient upset hits the first
// run of step index 4, whose update is the third reproducible trigger's, applied: clipped by the
// re-run's norm it leaves the run bit-identical to the same run without the upset. (With the first run's
// norm, about 1e34, the clip scaled that update to nothing and the window took the 1e34 in.)
TEST(FaultLadder, AReRunThatStillFiresHandsOnItsOwnNorm) {
  const std::string dir =
      shared_folder({{"plan.txt", "fault target=gradient_post_allreduce step=4 bit=30 element=5\n"}});
  Config c = base_config(dir);
  c.fault.loss_spike = 0.5;
  c.train.grad_clip = 1.0;
  const Outcome clean = train(c);
  c.fault.plan = dir + "/plan.txt";
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.injected, 1u);
  EXPECT_EQ(o.counters.transient, 0u);
  EXPECT_EQ(o.counters.instabilities, clean.counters.instabilities);
  EXPECT_EQ(o.adam_updates, clean.adam_updates);
  EXPECT_TRUE(same_bits(o.params, clean.params));
}

}  // namespace
}  // namespace perigee::runtime

namespace perigee::runtime {
namespace {

TEST(FaultLadder, CorruptMomentOnEveryReplicaRollsBackPastTheCheckpointsThatHoldIt) {
  // A sign flip in adam_v (wte row of a token the data uses) on every replica (digests agree)
  // after step 3: the next update writes
  // NaN parameters, checkpoint 4 holds them, steps 5.. fail their invariants reproducibly. After
  // 3 skipped steps the run rolls back to 4, fails again at once, and goes further back to 2; the
  // replay is clean, so the run ends bit-identical to the clean one.
  const std::string dir = shared_folder({{"plan.txt", "fault target=adam_v step=3 bit=31 element=3108\n"}});
  const Outcome clean = train(base_config(dir));
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  checkpoint_every(&c, dir + "/ckpt", 2);
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.rollbacks, 2u);
  EXPECT_GE(o.counters.reproducible, 6u);
  EXPECT_TRUE(same_bits(o.params, clean.params));
  // 2 and 4, then after the rollbacks 4 (the bad one replaced), 6, 8 and the final 10; the loaded
  // checkpoints are not written again.
  EXPECT_EQ(o.checkpoints, 6u);
}

TEST(FaultLadder, PlannedDeathFiresWhenTheReplayAfterARollbackReachesIt) {
  // The moment flip above, with a planned death of rank 0 at step 7, and the Trainer run in-process
  // without PERIGEE_LAUNCH: a fresh run is launch 1. The run rolls back to 4, then to 2, before it ever
  // completes step 7; the rollbacks load checkpoints, but the process is still launch 1, so rank 0 dies
  // when the replay completes step 7 (before, the rollback made it a resumed run, which meets no
  // planned death). The death in launch 2 is not this run's.
  const std::string dir = shared_folder({{"plan.txt",
                                          "fault target=adam_v step=3 bit=31 element=3108\n"
                                          "death rank=0 step=7\n"
                                          "death rank=0 step=2 launch=2\n"}});
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  checkpoint_every(&c, dir + "/ckpt_death", 2);
  std::unique_ptr<MpiCommunicator> comm;
  PERIGEE_CHECK_OR_DIE(MpiCommunicator::create(MPI_COMM_WORLD, &comm));
  std::vector<int64_t> deaths;      // steps after which this rank would have been killed
  kernels::cpu::CpuBackend cpu{1};  // declared first: the trainer uses it until it is gone
  Trainer t(c, comm.get(), &cpu,
            TrainerOptions{.write_run_dir = false,
                           .log_steps = false,
                           .planned_death = [&deaths](int64_t step) { deaths.push_back(step); }});
  PERIGEE_CHECK_OR_DIE(t.setup());
  PERIGEE_CHECK_OR_DIE(t.run());
  EXPECT_EQ(t.fault_counters().rollbacks, 2u);
  EXPECT_EQ(t.resumed_from_step(), -1) << "the rollbacks made the fresh launch look resumed";
  if (world_rank() == 0) {
    ASSERT_FALSE(deaths.empty()) << "the planned death of rank 0 at step 7 never fired";
    EXPECT_EQ(deaths.front(), 7);
    EXPECT_EQ(deaths.size(), 1u) << "a rank dies once";
  } else {
    EXPECT_TRUE(deaths.empty()) << "rank " << world_rank();
  }
}

TEST(FaultLadder, FaultInEveryCheckpointEndsTheRunAsPersistent) {
  // The same moment flip, but before the first checkpoint: checkpoint 4 holds the NaN parameters,
  // the rollback to it fails again at once and there is nothing older. The run gives up with
  // kFaultPersists (perigee-train's exit status 4).
  const std::string dir = shared_folder({{"plan.txt", "fault target=adam_v step=3 bit=31 element=3108\n"}});
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  checkpoint_every(&c, dir + "/ckpt_persist", 4);
  with_trainer(c, [](Trainer& t) {
    const Status s = t.run();
    EXPECT_EQ(s.code(), StatusCode::kFaultPersists) << s.to_string();
    EXPECT_NE(s.message().find("right after the rollback to step 4"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("holds no older checkpoint"), std::string::npos) << s.message();
    EXPECT_EQ(t.fault_counters().rollbacks, 1u);
  });
}

// The same flip with nothing to roll back to (checkpointing off, or none written yet): the ladder has
// given up too, kFaultPersists, which perigee-run relaunches once, not until its restarts run out.
TEST(FaultLadder, NothingToRollBackToEndsTheRunAsPersistent) {
  const std::string dir = shared_folder({{"plan.txt", "fault target=adam_v step=3 bit=31 element=3108\n"}});
  for (const bool checkpoints : {false, true}) {
    Config c = base_config(dir);
    c.fault.plan = dir + "/plan.txt";
    if (checkpoints) checkpoint_every(&c, dir + "/ckpt_none_yet", 100);  // none by the rollback
    with_trainer(c, [&](Trainer& t) {
      const Status s = t.run();
      EXPECT_EQ(s.code(), StatusCode::kFaultPersists) << s.to_string();
      const std::string want = checkpoints ? "holds no checkpoint to roll back to" : "checkpointing is off";
      EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
    });
  }
}

TEST(FaultLadder, LevelAboveTheThresholdIsAppliedAfterTwoSkipsNotRolledBack) {
  // A loss threshold below the training's own level (loss > 0.5 x window mean: every step once the
  // window is warm) fires reproducibly on a sound state, as a real instability does (a gradient norm
  // 40x the window's after step 100 of a tiny model at lr 3e-3). Rolling back would replay into the
  // same trigger until the run gives up; instead every third such step is applied (after a replica
  // check that agrees, on 2 or 3 ranks) and enters the window. Steps 1-2 warm the window, 3-10 fire:
  // skip, skip, apply, skip, skip, apply, skip, skip.
  const std::string dir = shared_folder({});
  Config c = base_config(dir);
  c.fault.loss_spike = 0.5;
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.triggers, 8u);
  EXPECT_EQ(o.counters.reproducible, 8u);
  EXPECT_EQ(o.counters.instabilities, 2u);
  EXPECT_EQ(o.counters.skipped, 6u);
  EXPECT_EQ(o.counters.rollbacks, 0u);
  EXPECT_EQ(o.counters.replica_checks, world_size() > 1 ? 2u : 0u);
  EXPECT_EQ(o.counters.replica_repairs, 0u);
  EXPECT_EQ(o.adam_updates, 4);  // AdamW's bias correction counts the 4 applied updates, not 10 steps
  EXPECT_TRUE(replicas_identical(o.params));
}

// The checkpoint carries the count of applied AdamW updates: a run cut after step 5 (steps 1, 2 and 5
// applied, 3 and 4 skipped, as above) and resumed ends bit-identical to the uninterrupted one. A resume
// that counted its steps instead would give steps 6-10 another bias correction.
TEST(FaultLadder, ResumeAfterSkippedStepsKeepsTheUpdateCount) {
  const std::string dir = shared_folder({});
  Config c = base_config(dir);
  c.fault.loss_spike = 0.5;
  const Outcome whole = train(c);
  checkpoint_every(&c, dir + "/ckpt_updates", 100);  // only the explicit checkpoint below
  with_trainer(c, [](Trainer& first) {
    for (int i = 0; i < 5; ++i) PERIGEE_CHECK_OR_DIE(first.step(nullptr));
    EXPECT_EQ(first.adam_updates(), 3);
    PERIGEE_CHECK_OR_DIE(first.save_checkpoint());
    PERIGEE_CHECK_OR_DIE(first.finish_checkpoints());
  });
  const Outcome resumed = train(c);
  EXPECT_EQ(resumed.counters.skipped, 4u);  // steps 6, 7, 9, 10
  EXPECT_EQ(resumed.adam_updates, 4);
  EXPECT_TRUE(same_bits(resumed.params, whole.params));
}

TEST(FaultLadder, EscalationRepairsAFlippedReplicaInsteadOfApplying) {
  // As above, with rank 1's parameter flipped after step 3 (rung 4 off): the third trigger's replica
  // check finds rank 1 apart and repairs it from the majority; that batch stays skipped and the count
  // starts anew (steps 3-4 skipped, 5 repaired and skipped, 6-7 skipped, 8 applied, 9-10 skipped).
  if (world_size() != 3) GTEST_SKIP() << "needs exactly 3 ranks";
  const std::string dir = shared_folder({{"plan.txt", "fault target=parameter step=3 rank=1 bit=30\n"}});
  Config c = base_config(dir);
  c.fault.loss_spike = 0.5;
  c.fault.plan = dir + "/plan.txt";
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.replica_checks, 2u);
  EXPECT_EQ(o.counters.replica_repairs, 1u);
  EXPECT_EQ(o.counters.instabilities, 1u);
  EXPECT_EQ(o.counters.skipped, 7u);
  EXPECT_EQ(o.counters.rollbacks, 0u);
  EXPECT_TRUE(replicas_identical(o.params));
}

TEST(FaultLadder, RunEndingOnSkippedStepsWritesNoFinalCheckpoint) {
  // The moment flip after step 7 turns step 8's update into NaN parameters; steps 9 and 10 fail
  // reproducibly and are skipped (2 in a row: no rollback yet). The run ends there, and its state is
  // suspect: the final checkpoint must not be written (it would become the newest).
  const std::string dir = shared_folder({{"plan.txt", "fault target=adam_v step=7 bit=31 element=3108\n"}});
  Config c = base_config(dir);
  c.fault.plan = dir + "/plan.txt";
  checkpoint_every(&c, dir + "/ckpt_final", 4);
  const Outcome o = train(c);
  EXPECT_EQ(o.counters.skipped, 2u);
  EXPECT_EQ(o.counters.rollbacks, 0u);
  EXPECT_TRUE(fs::exists(c.checkpoint.dir + "/ckpt-00000004.h5"));
  EXPECT_FALSE(fs::exists(c.checkpoint.dir + "/ckpt-00000010.h5")) << "suspect state was checkpointed";
}

TEST(FaultLadder, ResumedRunKeepsTheInvariantWindowAndCatchesAFaultAtOnce) {
  // The checkpoint carries the window of accepted steps. A run cut at step 6 and resumed must check
  // its first step (index 6) for spikes as the uninterrupted run does; with an empty window (no
  // spike check until 2 steps are accepted) the flipped gradient would be applied.
  const std::string dir =
      shared_folder({{"plan.txt", "fault target=gradient_post_allreduce step=6 bit=30\n"}});
  const Outcome clean = train(base_config(dir));
  Config c = base_config(dir);
  checkpoint_every(&c, dir + "/ckpt_window", 100);  // only the explicit checkpoint below
  with_trainer(c, [](Trainer& first) {              // cut after step 6
    for (int i = 0; i < 6; ++i) PERIGEE_CHECK_OR_DIE(first.step(nullptr));
    PERIGEE_CHECK_OR_DIE(first.save_checkpoint());
    PERIGEE_CHECK_OR_DIE(first.finish_checkpoints());
  });
  c.fault.plan = dir + "/plan.txt";
  const Outcome resumed = train(c);
  EXPECT_EQ(resumed.counters.injected, 1u);
  EXPECT_EQ(resumed.counters.triggers, 1u);   // caught on the first step after the resume
  EXPECT_EQ(resumed.counters.transient, 1u);  // and gone on the re-run
  EXPECT_TRUE(same_bits(resumed.params, clean.params));
}

TEST(FaultLadder, SlowCheckpointWritesOutlastTheCommTimeout) {
  // Rank 0's storage takes 4 s more per checkpoint (the plan's checkpoint_delay) while a collective
  // may take 2.5 s. The other ranks wait for rank 0's synchronous writes, for the background write
  // the final checkpoint must wait for, for the eclipse checkpoint and for the final write under
  // [checkpoint] timeout_s instead, and the run ends as the same run with fast storage and no deadline
  // does. (The deadline leaves room for a loaded 2-core CI machine; the delay is well past it.)
  if (world_size() == 1) GTEST_SKIP() << "no other rank waits";
  const std::string dir = shared_folder({{"slow.txt", "checkpoint_delay 4\n"}});
  const Outcome clean = train(base_config(dir));
  for (const std::string schedule : {"sync", "async", "eclipse"}) {
    Config c = base_config(dir);
    c.fault.plan = dir + "/slow.txt";
    checkpoint_every(&c, dir + "/ckpt_slow_" + schedule, schedule == "eclipse" ? 0 : 5);
    c.checkpoint.async = schedule != "sync";
    std::vector<std::string> files = {"/ckpt-00000005.h5", "/ckpt-00000010.h5"};
    if (schedule == "eclipse") {  // a margin that reaches the first shadow entry at once: step 0 and the end
      c.orbit.eclipse = "checkpoint";
      c.orbit.margin_s = 3000.0;  // under the sunlit arc (3602 s), over the 1801 s to the first entry
      files = {"/ckpt-00000000.h5", "/ckpt-00000010.h5"};
    }
    const Outcome o = train(c, /*comm_timeout_s=*/2.5);
    EXPECT_TRUE(same_bits(o.params, clean.params)) << schedule;
    if (world_rank() == 0) {
      for (const auto& name : files)
        EXPECT_TRUE(fs::exists(c.checkpoint.dir + name)) << name << " " << schedule;
    }
  }
}

}  // namespace
}  // namespace perigee::runtime
