// AsyncCheckpointWriter: one staging snapshot, one background commit thread.
#include "checkpoint/async_writer.hpp"

#include <chrono>
#include <cstring>
#include <exception>

namespace perigee::checkpoint {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

AsyncCheckpointWriter::AsyncCheckpointWriter(CheckpointStore* store, AsyncWriterOptions options)
    : AsyncCheckpointWriter(
          [store](const Snapshot& s, CommitStats* stats) {
            if (!store) return make_error(StatusCode::kInvalidArgument, "AsyncCheckpointWriter has no store");
            return store->commit(s, stats);
          },
          options) {}

AsyncCheckpointWriter::AsyncCheckpointWriter(CommitFn commit, AsyncWriterOptions options)
    : commit_(std::move(commit)), options_(options) {
  thread_ = std::thread([this] { run(); });
}

AsyncCheckpointWriter::~AsyncCheckpointWriter() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !busy_; });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncCheckpointWriter::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || has_job_; });
    if (has_job_) {
      has_job_ = false;
      lock.unlock();
      WriteRecord record;
      record.step = staging_.meta.step;
      const auto t0 = Clock::now();
      Status s;
      // An exception must not end the process from this thread: it becomes the write's error.
      try {
        s = commit_
                ? commit_(staging_, &record.commit)
                : make_error(StatusCode::kInvalidArgument, "AsyncCheckpointWriter has no commit function");
      } catch (const std::exception& e) {
        s = make_error(StatusCode::kIoError, e.what());
      }
      record.write_seconds = seconds_since(t0);
      lock.lock();
      if (s) {
        last_ = record;
        ++completed_;
      } else {
        pending_error_ = make_error(s.code(), "background checkpoint write of step ", record.step,
                                    " failed: ", s.message());
      }
      busy_ = false;
      cv_.notify_all();
      continue;
    }
    if (stop_) return;
  }
}

Status AsyncCheckpointWriter::take_error_locked() {
  Status e = std::move(pending_error_);
  pending_error_ = Status::ok();
  return e;
}

Status AsyncCheckpointWriter::stage(const StateSource& source, StageStats* stats) {
  const auto t_start = Clock::now();
  StageStats local;
  StageStats& st = stats ? *stats : local;
  st = StageStats{};
  st.step = source.meta.step;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!pending_error_.is_ok()) return take_error_locked();
    if (busy_) {
      if (options_.busy == BusyPolicy::kRefuse)
        return make_error(StatusCode::kUnavailable, "checkpoint of step ", source.meta.step,
                          " refused: the write of step ", busy_step_, " is still in flight");
      cv_.wait(lock, [&] { return !busy_; });
      if (!pending_error_.is_ok()) return take_error_locked();
    }
  }
  st.wait_seconds = seconds_since(t_start);

  // The thread is idle: the staging snapshot is ours until the job is handed over.
  PERIGEE_CHECK(validate_meta(source.meta));
  const auto t_copy = Clock::now();
  for (const BufferSource& src : source.buffers) {
    PERIGEE_CHECK(validate_buffer_layout(src.name, src.views, src.size));
    PERIGEE_REQUIRE(src.host || src.copy_out, StatusCode::kInvalidArgument, "buffer '", src.name,
                    "' has neither a host pointer nor a copy-out");
  }
  staging_.meta = source.meta;
  size_staging(source);
  for (size_t i = 0; i < source.buffers.size(); ++i) {
    const BufferSource& src = source.buffers[i];
    Buffer& dst = staging_.buffers[i];
    if (src.host) {
      std::memcpy(dst.data.data(), src.host, src.size * sizeof(float));
    } else {
      Status s = src.copy_out(dst.data.data(), src.size);
      if (!s)
        return make_error(s.code(), "staging buffer '", src.name, "' of step ", source.meta.step,
                          ": copy-out failed: ", s.message());
    }
    st.bytes += src.size * sizeof(float);
  }
  st.copy_seconds = seconds_since(t_copy);
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = true;
    has_job_ = true;
    busy_step_ = source.meta.step;
  }
  cv_.notify_all();
  st.stall_seconds = seconds_since(t_start);
  return Status::ok();
}

StateSource AsyncCheckpointWriter::host_source(const Snapshot& snapshot) {
  StateSource source;
  source.meta = snapshot.meta;
  for (const Buffer& b : snapshot.buffers)
    source.buffers.push_back(BufferSource{b.name, b.views, b.data.size(), b.data.data(), {}});
  return source;
}

Status AsyncCheckpointWriter::stage(const Snapshot& snapshot, StageStats* stats) {
  return stage(host_source(snapshot), stats);
}

void AsyncCheckpointWriter::wait_idle(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return !busy_; });
}

void AsyncCheckpointWriter::size_staging(const StateSource& source) {
  staging_.buffers.resize(source.buffers.size());
  for (size_t i = 0; i < source.buffers.size(); ++i) {
    Buffer& dst = staging_.buffers[i];
    dst.name = source.buffers[i].name;
    dst.views = source.buffers[i].views;
    dst.data.resize(source.buffers[i].size);  // zero-fills new memory: every page is touched here
  }
}

Status AsyncCheckpointWriter::prepare(const StateSource& layout) {
  for (const BufferSource& b : layout.buffers) PERIGEE_CHECK(validate_buffer_layout(b.name, b.views, b.size));
  std::unique_lock<std::mutex> lock(mu_);
  wait_idle(lock);
  size_staging(layout);
  return Status::ok();
}

Status AsyncCheckpointWriter::prepare(const Snapshot& layout) {
  return prepare(host_source(layout));
}

uint64_t AsyncCheckpointWriter::staging_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const Buffer& b : staging_.buffers) n += b.data.capacity() * sizeof(float);
  return n;
}

Status AsyncCheckpointWriter::wait(WriteRecord* last) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !busy_; });
  if (last && last_) *last = *last_;
  return take_error_locked();
}

bool AsyncCheckpointWriter::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_;
}

std::optional<WriteRecord> AsyncCheckpointWriter::last_write() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

uint64_t AsyncCheckpointWriter::writes_completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

}  // namespace perigee::checkpoint
