// AsyncCheckpointWriter: checkpoints while training continues. stage() copies the live state
// into a host staging Snapshot owned by the writer (through a caller copy-out per buffer: memcpy
// for host memory, a device-to-host copy for GPU state) and returns; a background thread then
// writes and commits it (CheckpointStore::commit: HDF5 write, fsync, rename, `latest`).
//
// Rules:
// - At most one write in flight and one staging copy (host memory = one copy of the state).
//   stage() while a write is in flight waits for it (BusyPolicy::kWait, the default: an eclipse
//   checkpoint must not be dropped) or returns kUnavailable at once (BusyPolicy::kRefuse: a
//   periodic schedule that would rather skip one than stall).
// - An error of the background write surfaces on the next stage() or wait(); that call returns
//   it (prefixed with the failed step) and does nothing else, so the caller decides.
// - stage() reports the stall the caller saw (waiting + copying); wait() and last_write() report
//   the background write time.
// - stage()/wait() are called from one thread (the training loop). The destructor waits for the
//   write in flight, so a staged checkpoint is never dropped; call wait() first to see its error.
// - All HDF5 calls of the library hold hdf5_mutex(), so loads on other threads stay safe.
// - prepare() at startup allocates the staging memory, so the first stage() is only a copy.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "checkpoint/snapshot.hpp"
#include "checkpoint/store.hpp"
#include "core/status.hpp"

namespace perigee::checkpoint {

enum class BusyPolicy { kWait, kRefuse };

struct AsyncWriterOptions {
  BusyPolicy busy = BusyPolicy::kWait;
};

// One live buffer to stage: host memory (copied with memcpy) or a caller copy-out.
struct BufferSource {
  std::string name;
  std::vector<View> views;
  uint64_t size = 0;            // elements
  const float* host = nullptr;  // when set, memcpy from here
  // Otherwise: fill dst[0, count) with the live contents (e.g. cudaMemcpy device-to-host).
  std::function<Status(float* dst, uint64_t count)> copy_out;
};

struct StateSource {
  SnapshotMeta meta;
  std::vector<BufferSource> buffers;
};

struct StageStats {
  int64_t step = 0;
  uint64_t bytes = 0;          // tensor bytes copied
  double wait_seconds = 0.0;   // waiting for the previous write (kWait)
  double copy_seconds = 0.0;   // copy-out into the staging snapshot
  double stall_seconds = 0.0;  // all the time spent inside stage()
};

struct WriteRecord {
  int64_t step = 0;
  double write_seconds = 0.0;  // background: the whole commit
  CommitStats commit;
};

// The background commit; the default commits to a CheckpointStore.
using CommitFn = std::function<Status(const Snapshot& snapshot, CommitStats* stats)>;

class AsyncCheckpointWriter {
 public:
  // `store` is not owned and must outlive the writer; the writer is its only user meanwhile.
  explicit AsyncCheckpointWriter(CheckpointStore* store, AsyncWriterOptions options = {});
  explicit AsyncCheckpointWriter(CommitFn commit, AsyncWriterOptions options = {});
  ~AsyncCheckpointWriter();
  AsyncCheckpointWriter(const AsyncCheckpointWriter&) = delete;
  AsyncCheckpointWriter& operator=(const AsyncCheckpointWriter&) = delete;

  // Allocates (and touches) the staging buffers for this layout ahead of time, so that the first
  // stage() costs a copy, not an allocation of the whole state. Waits for a write in flight.
  Status prepare(const StateSource& layout);
  Status prepare(const Snapshot& layout);
  uint64_t staging_bytes() const;

  // Copies `source` into the staging snapshot and starts its background commit.
  Status stage(const StateSource& source, StageStats* stats = nullptr);
  // Same for host state held in a Snapshot (memcpy copy-out).
  Status stage(const Snapshot& snapshot, StageStats* stats = nullptr);

  // Waits until no write is in flight; returns a pending background error, else ok. *last gets
  // the most recent completed write (unchanged if there was none).
  Status wait(WriteRecord* last = nullptr);

  bool in_flight() const;
  std::optional<WriteRecord> last_write() const;
  uint64_t writes_completed() const;

 private:
  void run();
  // Waits until no write is in flight (mu_ held through `lock`).
  void wait_idle(std::unique_lock<std::mutex>& lock);
  // Sizes the staging buffers for `source` (thread idle).
  void size_staging(const StateSource& source);
  static StateSource host_source(const Snapshot& snapshot);
  // With mu_ held: hands out (and clears) the pending background error.
  Status take_error_locked();

  CommitFn commit_;
  AsyncWriterOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;     // a staged snapshot is being (or about to be) written
  bool has_job_ = false;  // the thread has not picked it up yet
  bool stop_ = false;
  int64_t busy_step_ = 0;
  Status pending_error_;
  std::optional<WriteRecord> last_;
  uint64_t completed_ = 0;
  Snapshot staging_;  // touched by the caller only while !busy_, by the thread only while busy_
  std::thread thread_;
};

}  // namespace perigee::checkpoint
