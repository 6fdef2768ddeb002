// Data-parallel equivalence on real MPI ranks: W ranks with batch B/W each must reproduce one rank
// with batch B over the same samples, for 10 steps of AdamW: same losses (rel. 2e-5) and same
// parameters, and every replica must hold bit-identical parameters. The only difference between
// the runs is the order of the gradient summation (fp32 rounding, ~1e-7 relative); AdamW divides
// by sqrt(v), so a parameter whose gradient is at rounding level can move by a visible fraction of
// lr. Parameter tolerance: relative L2 difference <= 1e-5, every element within 1e-4 (lr / 30),
// and at most 0.01 % of elements outside 1e-5 + 1e-4 |p|.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "collectives/mpi_communicator.hpp"
#include "runtime/orbit_clock.hpp"
#include "runtime/random.hpp"
#include "runtime/token_file.hpp"
#include "runtime/trainer.hpp"
#include "tests/runtime/mpi_test_util.hpp"

namespace perigee::runtime {
namespace {

using collectives::MpiCommunicator;
using testing::CpuTrainer;
using testing::max_abs_diff;
using testing::replicas_identical;

// Rank 0 writes a token file in its scratch folder; every rank gets its path.
std::string shared_token_file() {
  return testing::rank0_string([] {
    const std::filesystem::path dir = testing::scratch_folder("perigee_dp_", /*empty=*/false);
    std::vector<int32_t> tokens(20000);
    SplitMix64 rng(99);
    // Text-like stream: mostly a repeating phrase with noise, so losses move visibly.
    const std::string phrase = "the satellite trains in orbit. ";
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = (rng.next() % 8 == 0)
                      ? static_cast<int32_t>(rng.next() % 256)
                      : static_cast<int32_t>(static_cast<unsigned char>(phrase[i % phrase.size()]));
    }
    const std::string file = (dir / "train.bin").string();
    PERIGEE_CHECK_OR_DIE(write_token_file(file, tokens, 256));
    return file;
  });
}

// The tiny run on a freshly written shared_token_file(): batch 8 (divisible by 1, 2 and 4 ranks).
Config tiny_config() {
  Config c = testing::tiny_config(shared_token_file(), 8);
  c.train.grad_clip = 1.0;
  return c;
}

struct RunResult {
  std::vector<double> losses;
  std::vector<double> grad_norms;  // of the averaged gradients, before clipping (what metrics report)
  std::vector<float> params;
  int buckets = 0;  // gradient all-reduces of the last step
  StepResult last;  // the last step's report (its bucket counts)
};

RunResult train(const Config& config, MpiCommunicator* comm) {
  CpuTrainer run(config, comm);
  Trainer& t = run.trainer;
  PERIGEE_CHECK_OR_DIE(t.setup());
  RunResult r;
  for (int i = 0; i < config.train.steps; ++i) {
    StepResult s;
    PERIGEE_CHECK_OR_DIE(t.step(&s));
    r.losses.push_back(s.loss);
    r.grad_norms.push_back(s.grad_norm);
    r.last = s;
  }
  PERIGEE_CHECK_OR_DIE(t.model().get_parameters(&r.params));
  r.buckets = t.gradient_buckets()->buckets();
  return r;
}

// The header's tolerances: losses, then parameters; `what` names the comparison in the printed line.
void expect_same_training(const RunResult& dp, const RunResult& ref, int ranks, const char* what) {
  ASSERT_EQ(dp.losses.size(), ref.losses.size());
  for (size_t i = 0; i < ref.losses.size(); ++i) {
    EXPECT_NEAR(dp.losses[i], ref.losses[i], 2e-5 * std::fabs(ref.losses[i])) << what << ", step " << i;
    // The gradients themselves, not only what AdamW makes of them (it cancels a uniform scale).
    EXPECT_NEAR(dp.grad_norms[i], ref.grad_norms[i], 1e-4 * ref.grad_norms[i]) << what << ", step " << i;
  }
  ASSERT_EQ(dp.params.size(), ref.params.size());
  size_t outside = 0;
  double worst = 0.0, diff2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < ref.params.size(); ++i) {
    const double d = std::fabs(static_cast<double>(dp.params[i]) - ref.params[i]);
    worst = std::max(worst, d);
    diff2 += d * d;
    ref2 += static_cast<double>(ref.params[i]) * ref.params[i];
    outside += d > 1e-5 + 1e-4 * std::fabs(ref.params[i]);
  }
  if (testing::world_rank() == 0) {
    std::printf(
        "[ ranks %d, %s ] loss rel. diff at step %zu: %.2e; params: rel. L2 %.2e, worst %.2e, %zu of %zu "
        "outside 1e-5 + 1e-4|p|\n",
        ranks, what, ref.losses.size(), std::fabs(dp.losses.back() - ref.losses.back()) / ref.losses.back(),
        std::sqrt(diff2 / ref2), worst, outside, ref.params.size());
  }
  EXPECT_LE(std::sqrt(diff2 / ref2), 1e-5) << what;
  EXPECT_LE(worst, 1e-4) << what;
  EXPECT_LE(outside, ref.params.size() / 10000) << what << ": worst |dp - ref| = " << worst;
}

TEST(DataParallel, MatchesSingleRankWithTheFullBatch) {
  std::unique_ptr<MpiCommunicator> world, self;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_SELF, &self).is_ok());
  const Config config = tiny_config();

  const RunResult dp = train(config, world.get());  // W ranks, batch 8 / W each
  const RunResult ref = train(config, self.get());  // this rank alone, batch 8
  EXPECT_LT(ref.losses.back(), ref.losses.front()) << "the model should learn in 10 steps";
  expect_same_training(dp, ref, world->size(), "W ranks vs 1");

  EXPECT_TRUE(replicas_identical(dp.params));  // replicas must be bit-identical
}

// [train] micro_batch: each rank runs its batch in passes whose gradients accumulate before one
// all-reduce and one update. Against one rank with the whole batch in one pass: the same training up
// to the order of the gradient sums (the first test's tolerances), with gradient buckets on (the
// backward passes before the last must not start any all-reduce) and bit-identical replicas.
TEST(DataParallel, MicroBatchesMatchTheWholeBatchInOnePass) {
  std::unique_ptr<MpiCommunicator> world, self;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_SELF, &self).is_ok());
  Config config = tiny_config();
  config.train.steps = 6;
  const RunResult ref = train(config, self.get());  // one rank, batch 8, one pass
  config.train.micro_batch = 1;                     // 8 / W passes of one sequence per rank
  config.comm.bucket_mb = 16e3 / (1024.0 * 1024.0);
  const RunResult micro = train(config, world.get());
  EXPECT_EQ(micro.buckets, world->size() > 1 ? 3 : 0) << "buckets of the last pass only";
  expect_same_training(micro, ref, world->size(), "micro-batch 1, buckets, vs 1 rank");
  EXPECT_TRUE(replicas_identical(micro.params));
  config.train.micro_batch = 2;
  config.comm.bucket_mb = 0.0;
  const RunResult twice = train(config, self.get());  // one rank, 4 passes of 2
  expect_same_training(twice, ref, 1, "1 rank, micro-batch 2");
}

// Gradient buckets overlapped with the backward pass ([comm] bucket_mb) change only how the buffer
// is cut into all-reduces: on 2 ranks every element is a + b either way (bit-identical runs); on
// more ranks MPI may sum in another order, so the first test's tolerances apply.
TEST(DataParallel, GradientBucketsMatchOneAllReduceAfterTheBackward) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.train.steps = 5;
  config.comm.bucket_mb = 0.0;
  const RunResult after = train(config, world.get());
  config.comm.bucket_mb = 16e3 / (1024.0 * 1024.0);  // 16 kB: a bucket per block and the embeddings
  const RunResult bucketed = train(config, world.get());
  const int p = world->size();
  EXPECT_EQ(after.buckets, p > 1 ? 1 : 0);
  // ln_f alone is too small, so: block 1 (+ ln_f), block 0, then the embeddings.
  EXPECT_EQ(bucketed.buckets, p > 1 ? 3 : 0);
  // The step report (metrics.jsonl) says the same, and that the buckets went out during the backward
  // pass (the embeddings' one too: their ready point fills a bucket), the single all-reduce after it.
  EXPECT_EQ(after.last.buckets, after.buckets);
  EXPECT_EQ(after.last.buckets_overlapped, 0);
  EXPECT_EQ(bucketed.last.buckets, bucketed.buckets);
  EXPECT_EQ(bucketed.last.buckets_overlapped, p > 1 ? 3 : 0);
  ASSERT_EQ(after.params.size(), bucketed.params.size());
  if (p <= 2) {
    EXPECT_EQ(after.losses, bucketed.losses);
    EXPECT_EQ(std::memcmp(after.params.data(), bucketed.params.data(), after.params.size() * sizeof(float)),
              0);
  } else {
    for (size_t i = 0; i < after.losses.size(); ++i) {
      EXPECT_NEAR(bucketed.losses[i], after.losses[i], 2e-5 * std::fabs(after.losses[i])) << "step " << i;
    }
    EXPECT_LE(max_abs_diff(bucketed.params, after.params), 1e-4);
  }
  EXPECT_TRUE(replicas_identical(bucketed.params));
}

// [comm] grad_dtype = "bf16": the gradients are rounded to bf16 for the all-reduce. On one rank
// nothing is sent and the run is the fp32 run bit for bit; on several ranks the run differs from
// fp32 (the rounding is real) but only by bf16 rounding of the gradients (losses within 1 %,
// parameters within lr-sized steps), it still learns, buckets do not change it on 2 ranks (every
// element is bf16(a + b) either way), and the replicas stay bit-identical.
TEST(DataParallel, Bf16GradientAllReduce) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.train.steps = 6;
  config.comm.bucket_mb = 0.0;
  const RunResult fp32 = train(config, world.get());
  config.comm.grad_dtype = "bf16";
  const RunResult bf16 = train(config, world.get());
  config.comm.bucket_mb = 16e3 / (1024.0 * 1024.0);
  const RunResult bucketed = train(config, world.get());
  const int p = world->size();
  ASSERT_EQ(fp32.params.size(), bf16.params.size());
  const bool same =
      std::memcmp(fp32.params.data(), bf16.params.data(), fp32.params.size() * sizeof(float)) == 0;
  if (p == 1) {
    EXPECT_TRUE(same) << "one rank sends nothing, so nothing may be rounded";
    EXPECT_EQ(fp32.losses, bf16.losses);
  } else {
    EXPECT_FALSE(same) << "bf16 gradients must change the parameters' bits";
    const double worst = max_abs_diff(bf16.params, fp32.params);
    // AdamW moves each parameter by at most ~lr per step; 6 steps of lr 3e-3.
    EXPECT_LE(worst, 6 * 3e-3 * 1.5);
    for (size_t i = 0; i < fp32.losses.size(); ++i) {
      EXPECT_NEAR(bf16.losses[i], fp32.losses[i], 1e-2 * std::fabs(fp32.losses[i])) << "step " << i;
      // The decoded average: a lost 1/p (gradients p times too large) would pass every check above, as
      // AdamW and clipping cancel a uniform scale. bf16 rounds each element by at most 2^-9.
      EXPECT_NEAR(bf16.grad_norms[i], fp32.grad_norms[i], 1e-2 * fp32.grad_norms[i]) << "step " << i;
    }
    EXPECT_LT(bf16.losses.back(), bf16.losses.front());
    EXPECT_EQ(bucketed.buckets, 3);
    if (p == 2) {
      EXPECT_EQ(bucketed.losses, bf16.losses);
      EXPECT_EQ(std::memcmp(bucketed.params.data(), bf16.params.data(), bf16.params.size() * sizeof(float)),
                0);
    }
    if (world->rank() == 0) {
      std::printf(
          "[ ranks %d ] bf16 vs fp32 gradients after %d steps: loss %.6f vs %.6f, worst param diff %.2e\n", p,
          static_cast<int>(config.train.steps), bf16.losses.back(), fp32.losses.back(), worst);
    }
  }
  EXPECT_TRUE(replicas_identical(bucketed.params));
}

// What Trainer::setup() says of `config` (CPU backend).
Status setup_status(const Config& config, MpiCommunicator* comm) {
  CpuTrainer t(config, comm);
  return t.trainer.setup();
}

TEST(DataParallel, RejectsBatchNotDivisibleByWorldSize) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  if (world->size() == 1) GTEST_SKIP() << "needs 2+ ranks";  // same decision on every rank
  Config config = tiny_config();
  config.train.batch_size = world->size() + 1;
  const Status s = setup_status(config, world.get());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("divisible by the world size"), std::string::npos) << s.message();
}

// Validation runs in the same passes as training: with micro_batch the model holds one pass, and the
// mean of the passes' mean losses must be the batch's mean loss (equal passes), on every rank count.
TEST(DataParallel, ValidationInMicroBatchesIsTheWholeBatchLoss) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.data.val_file = config.data.train_file;
  config.train.val_every = 1;
  config.train.val_batches = 3;
  double loss[3] = {0.0, 0.0, 0.0};
  const int micros[3] = {0, 1, 2};
  for (int i = 0; i < 3; ++i) {
    config.train.micro_batch = micros[i];
    CpuTrainer t(config, world.get());
    ASSERT_TRUE(t.trainer.setup().is_ok());
    ASSERT_TRUE(t.trainer.evaluate(&loss[i]).is_ok());
  }
  EXPECT_GT(loss[0], 1.0);  // an untrained model on 256 symbols
  EXPECT_NEAR(loss[1], loss[0], 1e-6 * loss[0]) << "passes of 1";
  EXPECT_NEAR(loss[2], loss[0], 1e-6 * loss[0]) << "passes of 2";
}

// The validation loss is the mean loss of the first val_batches global batches of the val file, in file
// order (samples of seq_len + 1 tokens at stride seq_len), on every rank count: computed here sample by
// sample with the trainer's own model from a val file unlike the training file (a validation that read
// the training data, summed its batches or skipped the reset between calls would differ).
TEST(DataParallel, ValidationLossIsTheMeanOverTheValFilesFirstBatches) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.data.val_file = testing::rank0_string([] {
    const std::filesystem::path dir = testing::scratch_folder("perigee_dp_val_", /*empty=*/false);
    std::vector<int32_t> tokens(3000);
    SplitMix64 rng(7);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng.next() % 256);  // unlike the training text
    const std::string file = (dir / "val.bin").string();
    PERIGEE_CHECK_OR_DIE(write_token_file(file, tokens, 256));
    return file;
  });
  config.train.val_every = 1;
  config.train.val_batches = 3;
  CpuTrainer t(config, world.get());
  ASSERT_TRUE(t.trainer.setup().is_ok());
  PERIGEE_CHECK_OR_DIE(t.trainer.step(nullptr));  // parameters that are no longer the seed's
  double got = 0.0, again = 0.0;
  ASSERT_TRUE(t.trainer.evaluate(&got).is_ok());
  ASSERT_TRUE(t.trainer.evaluate(&again).is_ok());
  EXPECT_EQ(got, again) << "each validation starts at the file's first batch";

  std::vector<int32_t> tokens;
  TokenFileHeader header;
  PERIGEE_CHECK_OR_DIE(read_token_file(config.data.val_file, &tokens, &header));
  const int T = config.train.seq_len;
  const int samples = config.train.val_batches * config.train.batch_size;
  ASSERT_LE(static_cast<size_t>(samples) * T + 1, tokens.size());
  double sum = 0.0;
  for (int j = 0; j < samples; ++j) {
    const int32_t* s = tokens.data() + static_cast<size_t>(j) * T;
    std::vector<int32_t> x(s, s + T), y(s + 1, s + T + 1);
    double loss = 0.0;
    PERIGEE_CHECK_OR_DIE(t.trainer.model().evaluate(x.data(), y.data(), 1, T, &loss));
    sum += loss;
  }
  const double want = sum / samples;
  EXPECT_NEAR(got, want, 1e-6 * want);
  EXPECT_GT(want, 4.0);  // random bytes: near ln 256 = 5.5, far from the training text's loss
}

// A byte-level file for a 128-token model: refused at setup on every rank (each loads the whole
// file), not when one rank's batch first holds a byte >= 128 and its peers wait in the all-reduce.
TEST(DataParallel, RejectsDataOutsideTheModelVocabularyAtSetup) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.model.vocab_size = 128;
  config.model.padded_vocab = 128;
  const Status s = setup_status(config, world.get());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  for (const std::string& want :
       {config.data.train_file, std::string("outside the model's vocabulary [0, 128)")})
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
}

// [orbit] eclipse checkpoints before each shadow; on an orbit with none (|beta| above the critical
// angle) it alone would never checkpoint, which setup refuses; with periodic checkpoints it is fine.
TEST(DataParallel, EclipseCheckpointsOnAnOrbitWithoutShadowNeedAnotherSchedule) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  const std::filesystem::path dir = std::filesystem::path(config.data.train_file).parent_path() / "noshadow";
  config.checkpoint.dir = dir.string();
  config.checkpoint.every_steps = 0;
  config.orbit.eclipse = "checkpoint";
  config.orbit.beta_deg = 80.0;
  const Status s = setup_status(config, world.get());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("is never in shadow"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[checkpoint] every_steps or every_seconds"), std::string::npos) << s.message();
  config.checkpoint.every_steps = 5;
  EXPECT_TRUE(setup_status(config, world.get()).is_ok());
  config.checkpoint.every_steps = 0;
  config.orbit.beta_deg = 20.0;  // a shadow every orbit
  EXPECT_TRUE(setup_status(config, world.get()).is_ok());
  // A margin as long as the sunlit arc would put a shadow's checkpoint inside the shadow before.
  config.orbit.beta_deg = 0.0;
  config.orbit.margin_s = 3610.0;  // the sunlit arc at 550 km and beta 0 is 3602 s
  const Status margin = setup_status(config, world.get());
  EXPECT_EQ(margin.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(
      margin.message().find("[orbit] margin_s = 3610 s is not shorter than the sunlit part of the orbit "
                            "(3602 s at 550 km, beta 0 deg)"),
      std::string::npos)
      << margin.message();
  config.orbit.margin_s = 3600.0;
  EXPECT_TRUE(setup_status(config, world.get()).is_ok());
  MPI_Barrier(MPI_COMM_WORLD);
  if (world->rank() == 0) std::filesystem::remove_all(dir);
}

// The eclipse policy's orbit clock goes on across launches (orbit_clock.hpp): a relaunch whose run's
// first launch was long enough ago to put the satellite 30 s before a shadow entry checkpoints at its
// first gate; the same launch on a fresh clock, half an hour from the shadow, does not. A further
// relaunch before the same shadow resumes from a checkpoint that already covers it: no new one. The
// continued clock's folder also holds the orbit.json.tmp of a cut write, which rank 0 removes at setup.
TEST(DataParallel, EclipseClockContinuesFromTheFirstLaunch) {
  namespace fs = std::filesystem;
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.train.steps = 2;
  config.orbit.eclipse = "checkpoint";
  config.orbit.margin_s = 60.0;
  checkpoint::EclipseModel model;
  ASSERT_TRUE(checkpoint::EclipseModel::from_beta(550.0, 0.0, 0.0, &model).is_ok());
  const double entry = model.next_shadow(0.0)->entry_s;  // mission s from phase 0 to the first shadow
  ASSERT_GT(entry, 600.0);
  const fs::path base = fs::path(config.data.train_file).parent_path() / "orbit";
  for (bool continued : {false, true}) {
    const fs::path dir = base / (continued ? "continued" : "fresh");
    config.checkpoint.dir = dir.string();
    if (world->rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
      if (continued) {
        const OrbitEpoch early{unix_now() - (entry - 30.0), 550.0, 0.0, 0.0, 1.0};
        PERIGEE_CHECK_OR_DIE(write_orbit_epoch(dir.string(), early));   // no rank may leave the test alone
        std::ofstream(dir / "orbit.json.tmp") << "{\"epoch_unix\": 1";  // a later write, cut
      }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    {
      CpuTrainer t(config, world.get());
      PERIGEE_CHECK_OR_DIE(t.trainer.setup());
      PERIGEE_CHECK_OR_DIE(t.trainer.run());
    }
    if (world->rank() == 0) {
      EXPECT_EQ(fs::exists(dir / "ckpt-00000000.h5"), continued) << (continued ? "continued" : "fresh");
      EXPECT_TRUE(fs::exists(dir / "ckpt-00000002.h5"));  // the final one
      OrbitEpoch kept;
      PERIGEE_CHECK_OR_DIE(read_orbit_epoch(dir.string(), &kept));
      EXPECT_NEAR(kept.epoch_unix, continued ? unix_now() - (entry - 30.0) : unix_now(), 60.0);
      EXPECT_FALSE(fs::exists(dir / "orbit.json.tmp")) << "a cut write's leftover stayed";
    }
  }
  {  // the continued run relaunched for 2 more steps, still before the shadow
    config.checkpoint.dir = (base / "continued").string();
    config.train.steps = 4;
    CpuTrainer t(config, world.get());
    PERIGEE_CHECK_OR_DIE(t.trainer.setup());
    PERIGEE_CHECK_OR_DIE(t.trainer.run());
    EXPECT_EQ(t.trainer.checkpoints_saved(), 1u);  // the final one
    if (world->rank() == 0) {
      EXPECT_FALSE(fs::exists(base / "continued" / "ckpt-00000003.h5"));
      EXPECT_TRUE(fs::exists(base / "continued" / "ckpt-00000004.h5"));
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world->rank() == 0) fs::remove_all(base);
}

TEST(DataParallel, RejectsMicroBatchNotDividingTheRankBatch) {
  std::unique_ptr<MpiCommunicator> world;
  ASSERT_TRUE(MpiCommunicator::create(MPI_COMM_WORLD, &world).is_ok());
  Config config = tiny_config();
  config.train.micro_batch = 3;  // per-rank batches of 8, 4 and 2 on 1, 2 and 4 ranks
  const Status s = setup_status(config, world.get());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("must divide the per-rank batch " + std::to_string(8 / world->size())),
            std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace perigee::runtime
