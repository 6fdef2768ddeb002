// BackgroundQueue: runs jobs one at a time, in submission order, on one worker thread of its own,
// so a blocking collective (the emulated laser links' schedules) can run while the caller computes.
// This is how a communicator without nonblocking primitives overlaps: its start_all_reduce submits
// the blocking all-reduce here and returns.
//
// Errors: the first failing job's Status is kept; the jobs submitted after it are skipped (every
// rank skips the same ones, since collective errors are the same on every rank). poll() reports it
// without blocking, drain() waits for the queue to empty and hands it over (and clears it).
// The worker starts with the first job and stops in the destructor, after draining.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "core/status.hpp"

namespace perigee::collectives {

class BackgroundQueue {
 public:
  using Job = std::function<Status()>;

  BackgroundQueue() = default;
  ~BackgroundQueue();  // drains (the jobs' buffers belong to them until they ran), then joins
  BackgroundQueue(const BackgroundQueue&) = delete;
  BackgroundQueue& operator=(const BackgroundQueue&) = delete;

  // Queues `job` (from one thread: the communicator's caller); kInternal when the worker thread
  // cannot be started.
  Status submit(Job job);
  // The first error of the jobs run so far (kept), or ok; never blocks.
  Status poll();
  // Waits until every submitted job has run or been skipped; returns the first error and clears it.
  Status drain();

  // Jobs submitted and not yet finished (queued or running).
  size_t pending();
  // Jobs that ran to completion (ok or not) since creation; skipped jobs do not count.
  size_t completed();

 private:
  void work();

  std::mutex mu_;
  std::condition_variable work_cv_;  // a job arrived, or stop
  std::condition_variable idle_cv_;  // the queue emptied
  std::deque<Job> jobs_;
  bool running_job_ = false;
  bool stop_ = false;
  size_t completed_ = 0;
  Status error_;
  std::thread thread_;
};

}  // namespace perigee::collectives
