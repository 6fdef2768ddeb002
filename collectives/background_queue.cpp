#include "collectives/background_queue.hpp"

#include <system_error>
#include <utility>

namespace perigee::collectives {

BackgroundQueue::~BackgroundQueue() {
  if (!thread_.joinable()) return;
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return jobs_.empty() && !running_job_; });
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

Status BackgroundQueue::submit(Job job) {
  PERIGEE_REQUIRE(job != nullptr, StatusCode::kInternal, "BackgroundQueue: empty job");
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { work(); });
    } catch (const std::system_error& e) {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.clear();
      return make_error(StatusCode::kInternal, "BackgroundQueue: cannot start its worker thread: ", e.what());
    }
  }
  work_cv_.notify_one();
  return Status::ok();
}

Status BackgroundQueue::poll() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

Status BackgroundQueue::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return jobs_.empty() && !running_job_; });
  return std::exchange(error_, Status::ok());
}

size_t BackgroundQueue::pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size() + (running_job_ ? 1 : 0);
}

size_t BackgroundQueue::completed() {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

void BackgroundQueue::work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stop_ and nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    if (!error_.is_ok()) {
      // After a failure the later jobs are skipped (their collectives were never entered).
      if (jobs_.empty()) idle_cv_.notify_all();
      continue;
    }
    running_job_ = true;
    lock.unlock();
    Status s = job();
    lock.lock();
    running_job_ = false;
    ++completed_;
    if (!s.is_ok() && error_.is_ok()) error_ = std::move(s);
    if (jobs_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace perigee::collectives
