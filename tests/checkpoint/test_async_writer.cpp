// AsyncCheckpointWriter: the stage copy is independent of the live state, the stall is measured,
// at most one write is in flight (wait and refuse policies), background errors surface on the
// next call, and the destructor never drops a staged checkpoint.
#include "checkpoint/async_writer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/checkpoint/test_support.hpp"

namespace perigee::checkpoint {
namespace {

using namespace std::chrono_literals;
using test_support::make_snapshot;
using test_support::ScratchDir;

// A commit that takes `delay` and records how many ran at once.
struct SlowCommit {
  std::chrono::milliseconds delay{0};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};
  std::vector<int64_t> steps;  // written only by the writer thread
  CommitFn fn() {
    return [this](const Snapshot& s, CommitStats* st) {
      const int now = ++running;
      int seen = max_running.load();
      while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(delay);
      steps.push_back(s.meta.step);
      ++calls;
      --running;
      if (st) st->step = s.meta.step;
      if (fail) return make_error(StatusCode::kIoError, "disk full (injected)");
      return Status::ok();
    };
  }
};

TEST(AsyncWriter, StagedCopyIsIndependentOfTheLiveState) {
  ScratchDir dir("async");
  CheckpointStore store;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(dir.path(), {}, &store));
  Snapshot live = make_snapshot(10, 3);
  const Snapshot at_stage = live;
  {
    AsyncCheckpointWriter writer(&store);
    StageStats st;
    PERIGEE_CHECK_OR_DIE(writer.stage(live, &st));
    for (float& f : live.buffers[0].data) f += 1.0f;  // training goes on
    live.meta.step = 11;
    WriteRecord rec;
    PERIGEE_CHECK_OR_DIE(writer.wait(&rec));
    EXPECT_EQ(rec.step, 10);
    EXPECT_GT(rec.write_seconds, 0.0);
    EXPECT_EQ(rec.commit.path, store.path_for_step(10));
    EXPECT_EQ(st.bytes, at_stage.data_bytes());
    EXPECT_EQ(writer.writes_completed(), 1u);
  }
  Snapshot back;
  PERIGEE_CHECK_OR_DIE(store.load_latest({}, &back));
  std::string why;
  EXPECT_TRUE(bit_equal(back, at_stage, &why)) << why;
}

TEST(AsyncWriter, PrepareAllocatesTheStagingAhead) {
  SlowCommit commit;
  AsyncCheckpointWriter writer(commit.fn());
  const Snapshot s = make_snapshot(2, 2);
  EXPECT_EQ(writer.staging_bytes(), 0u);
  PERIGEE_CHECK_OR_DIE(writer.prepare(s));
  EXPECT_EQ(writer.staging_bytes(), s.data_bytes());
  PERIGEE_CHECK_OR_DIE(writer.stage(s));
  PERIGEE_CHECK_OR_DIE(writer.wait());
  EXPECT_EQ(writer.staging_bytes(), s.data_bytes());  // reused, not grown
  Snapshot bad = s;
  bad.buffers[0].views.pop_back();
  EXPECT_EQ(writer.prepare(bad).code(), StatusCode::kInvalidArgument);
}

TEST(AsyncWriter, StallIsTheCopyNotTheWrite) {
  SlowCommit commit;
  commit.delay = 300ms;
  AsyncCheckpointWriter writer(commit.fn());
  const Snapshot s = make_snapshot(1, 1);
  StateSource src;
  src.meta = s.meta;
  for (const Buffer& b : s.buffers) {
    BufferSource bs{b.name, b.views, b.data.size(), nullptr, {}};
    const float* from = b.data.data();
    bs.copy_out = [from](float* dst, uint64_t n) {  // a slow device-to-host copy
      std::this_thread::sleep_for(10ms);
      std::memcpy(dst, from, n * sizeof(float));
      return Status::ok();
    };
    src.buffers.push_back(bs);
  }
  StageStats st;
  PERIGEE_CHECK_OR_DIE(writer.stage(src, &st));
  EXPECT_TRUE(writer.in_flight());
  EXPECT_GE(st.copy_seconds, 0.029);
  EXPECT_GE(st.stall_seconds, st.copy_seconds);
  EXPECT_LT(st.stall_seconds, 0.25) << "stage() must not wait for the write";
  EXPECT_LT(st.wait_seconds, 0.01);
  WriteRecord rec;
  PERIGEE_CHECK_OR_DIE(writer.wait(&rec));
  EXPECT_GE(rec.write_seconds, 0.29);
  EXPECT_FALSE(writer.in_flight());
}

TEST(AsyncWriter, RefusePolicyRefusesASecondStage) {
  SlowCommit commit;
  commit.delay = 200ms;
  AsyncCheckpointWriter writer(commit.fn(), AsyncWriterOptions{BusyPolicy::kRefuse});
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(1, 1)));
  const Status s = writer.stage(make_snapshot(2, 1));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("the write of step 1 is still in flight"), std::string::npos) << s.message();
  PERIGEE_CHECK_OR_DIE(writer.wait());
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(3, 1)));
  PERIGEE_CHECK_OR_DIE(writer.wait());
  EXPECT_EQ(commit.steps, (std::vector<int64_t>{1, 3}));
}

TEST(AsyncWriter, WaitPolicyWaitsAndNeverOverlaps) {
  SlowCommit commit;
  commit.delay = 150ms;
  AsyncCheckpointWriter writer(commit.fn());
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(1, 1)));
  StageStats st;
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(2, 1), &st));
  EXPECT_GE(st.wait_seconds, 0.1) << "the second stage waited for the first write";
  EXPECT_GE(st.stall_seconds, st.wait_seconds);
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(3, 1)));
  PERIGEE_CHECK_OR_DIE(writer.wait());
  EXPECT_EQ(commit.max_running.load(), 1);
  EXPECT_EQ(commit.steps, (std::vector<int64_t>{1, 2, 3}));
}

TEST(AsyncWriter, BackgroundErrorSurfacesOnTheNextCall) {
  SlowCommit commit;
  commit.fail = true;
  AsyncCheckpointWriter writer(commit.fn());
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(5, 1)));
  while (writer.in_flight()) std::this_thread::sleep_for(1ms);
  Status s = writer.stage(make_snapshot(6, 1));  // reports step 5's failure, stages nothing
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("background checkpoint write of step 5 failed: disk full (injected)"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(writer.in_flight());
  EXPECT_EQ(commit.calls.load(), 1);
  // The error is reported once; the next write fails again and wait() reports it.
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(6, 1)));
  s = writer.wait();
  EXPECT_NE(s.message().find("step 6 failed"), std::string::npos) << s.message();
  commit.fail = false;
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(7, 1)));
  PERIGEE_CHECK_OR_DIE(writer.wait());
  EXPECT_EQ(writer.writes_completed(), 1u);
}

TEST(AsyncWriter, RealStoreErrorNamesTheFile) {
  ScratchDir dir("async");
  const std::string folder = dir.file("gone");
  CheckpointStore store;
  PERIGEE_CHECK_OR_DIE(CheckpointStore::open(folder, {}, &store));
  std::filesystem::remove_all(folder);  // the storage vanished (a SEFI on the flash path)
  AsyncCheckpointWriter writer(&store);
  PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(8, 1)));
  const Status s = writer.wait();
  EXPECT_EQ(s.code(), StatusCode::kHdf5Error);
  EXPECT_NE(s.message().find("ckpt-00000008.h5.tmp"), std::string::npos) << s.message();
}

TEST(AsyncWriter, CopyOutErrorStagesNothing) {
  SlowCommit commit;
  AsyncCheckpointWriter writer(commit.fn());
  const Snapshot s = make_snapshot(4, 1);
  StateSource src;
  src.meta = s.meta;
  BufferSource bs{s.buffers[0].name, s.buffers[0].views, s.buffers[0].data.size(), nullptr, {}};
  bs.copy_out = [](float*, uint64_t) {
    return make_error(StatusCode::kCudaError, "illegal address (injected)");
  };
  src.buffers.push_back(bs);
  const Status st = writer.stage(src);
  EXPECT_EQ(st.code(), StatusCode::kCudaError);
  EXPECT_NE(st.message().find("staging buffer 'params' of step 4: copy-out failed"), std::string::npos);
  EXPECT_FALSE(writer.in_flight());
  PERIGEE_CHECK_OR_DIE(writer.wait());
  EXPECT_EQ(commit.calls.load(), 0);
}

TEST(AsyncWriter, DestructorFinishesTheWriteInFlight) {
  SlowCommit commit;
  commit.delay = 100ms;
  {
    AsyncCheckpointWriter writer(commit.fn());
    PERIGEE_CHECK_OR_DIE(writer.stage(make_snapshot(9, 1)));
  }
  EXPECT_EQ(commit.calls.load(), 1);
}

}  // namespace
}  // namespace perigee::checkpoint
