// HostStagingCommunicator: runs a host Communicator (the MPI one) on DEVICE buffers by copying
// each buffer through a pinned host staging buffer: device -> host, the wrapped collective on host
// memory, host -> device. Memory and copies come from callbacks, so this file knows nothing of
// CUDA; collectives/cuda_staging.hpp fills them with cudaMallocHost/cudaMemcpy. Buffers larger than
// the chunk size go in chunks, so the pinned buffer never exceeds about one chunk.
//
// Overlap (the gradient buckets): when the wrapped communicator overlaps (MPI, the emulated links),
// start_all_reduce copies each chunk to a pinned block of its own and starts the wrapped
// all-reduce on it, and wait_all() waits for them and copies every block back to its device
// buffer. The results equal the blocking all_reduce's; recv changes only in wait_all(). Each chunk
// in flight needs its own block, so an overlapped pass pins as many bytes as it has in flight (a
// whole gradient buffer when every bucket is started before the wait); the blocks are kept and
// reused by the next pass. Over a wrapped communicator that does not overlap, start_all_reduce is
// the blocking all_reduce.
//
// A collective of the wrapped communicator that fails (its deadline expired: MPI may still write
// into the buffer it was given until the job ends) leaves the pinned memory allocated for good.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

// How the wrapper reaches device memory. All four are required.
struct StagingCallbacks {
  // Allocates `bytes` of (pinned) host memory into *p.
  std::function<Status(void** p, size_t bytes)> alloc_pinned;
  std::function<void(void*)> free_pinned;
  // Copies `bytes` from device to host / host to device; the data must be in place when they return.
  std::function<Status(void* host, const void* dev, size_t bytes)> to_host;
  std::function<Status(void* dev, const void* host, size_t bytes)> to_device;
  // True when to_host's copies are ordered after the work already queued by whatever produced the
  // device buffers (they run on the producer's own stream): follows_producer_stream() then says so.
  bool follows_producer = false;
};

inline constexpr size_t kDefaultStagingChunkBytes = size_t{64} << 20;  // 64 MiB

class HostStagingCommunicator final : public Communicator {
 public:
  // Wraps `host` (shared: the caller may keep using it for host buffers). `chunk_bytes` bounds the
  // staging buffer: all_reduce and broadcast stage at most that many bytes at a time, all_gather at
  // most that many bytes of send plus gathered data (one element per rank at least). Every rank must
  // pass the same chunk_bytes, so that all ranks split a buffer into the same collectives.
  static Status create(std::shared_ptr<Communicator> host, StagingCallbacks callbacks,
                       std::unique_ptr<HostStagingCommunicator>* out,
                       size_t chunk_bytes = kDefaultStagingChunkBytes);
  ~HostStagingCommunicator() override;

  HostStagingCommunicator(const HostStagingCommunicator&) = delete;
  HostStagingCommunicator& operator=(const HostStagingCommunicator&) = delete;

  // "<wrapped>+staging", e.g. "mpi+staging".
  const char* name() const override { return name_.c_str(); }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }

  // Device buffers; same semantics as the wrapped communicator. A failing copy returns its error
  // before the wrapped collective of that chunk is entered (as a failing MPI call would, peers are
  // then left in that collective: the caller must end the job).
  Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status broadcast(void* buffer, size_t count, DataType type, int root) override;
  // In place when send == recv + rank() * count.
  Status all_gather(const void* send, void* recv, size_t count, DataType type) override;
  Status barrier() override;
  double modelled_seconds() const override { return host_->modelled_seconds(); }
  double timeout_s() const override { return host_->timeout_s(); }
  Status set_timeout(double timeout_s) override { return host_->set_timeout(timeout_s); }

  // Overlapped all-reduce through pinned blocks (see the top of this file). A failing copy at start
  // returns its error after the chunks before it were started: wait_all() still waits for those.
  Status start_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status progress() override;
  Status wait_all() override;
  bool overlaps() const override { return host_->overlaps(); }
  bool follows_producer_stream() const override { return callbacks_.follows_producer; }
  // Chunks started and not yet copied back.
  size_t pending() const { return in_flight_.size(); }

  Communicator& host() { return *host_; }
  size_t chunk_bytes() const { return chunk_bytes_; }
  // Current size of the pinned staging buffer (grows on demand, up to about chunk_bytes).
  size_t staging_bytes() const { return staging_bytes_; }
  // Pinned bytes held for overlapped all-reduces (kept between passes).
  size_t overlap_pinned_bytes() const;

 private:
  HostStagingCommunicator() = default;
  Status ensure_staging(size_t bytes);
  // kInternal while overlapped all-reduces wait for wait_all().
  Status idle(const char* op) const;
  // s, remembering a failure of the host communicator (its buffers are then never freed).
  Status host_call(Status s);

  struct Block {  // pinned host memory for one chunk in flight
    void* data = nullptr;
    size_t bytes = 0;
  };
  struct InFlight {  // a started chunk: where its block goes back to
    void* recv = nullptr;
    size_t bytes = 0;
  };

  std::shared_ptr<Communicator> host_;
  StagingCallbacks callbacks_;
  size_t chunk_bytes_ = kDefaultStagingChunkBytes;
  std::string name_;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  std::vector<Block> blocks_;        // blocks_[i] serves the i-th chunk in flight
  std::vector<InFlight> in_flight_;  // started chunks, in order
  bool host_failed_ = false;         // a host collective failed: its buffers may still be in use
};

}  // namespace perigee::collectives
