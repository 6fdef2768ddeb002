// HostStagingCommunicator: runs a host Communicator (the MPI one) on DEVICE buffers by copying
// each buffer through a pinned host staging buffer: device -> host, the wrapped collective on host
// memory, host -> device. Memory and copies come from callbacks, so this file knows nothing of
// CUDA; collectives/cuda_staging.hpp fills them with cudaMallocHost/cudaMemcpy. Buffers larger than
// the chunk size go in chunks, so the pinned buffer never exceeds about one chunk.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

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

  Communicator& host() { return *host_; }
  size_t chunk_bytes() const { return chunk_bytes_; }
  // Current size of the pinned staging buffer (grows on demand, up to about chunk_bytes).
  size_t staging_bytes() const { return staging_bytes_; }

 private:
  HostStagingCommunicator() = default;
  Status ensure_staging(size_t bytes);

  std::shared_ptr<Communicator> host_;
  StagingCallbacks callbacks_;
  size_t chunk_bytes_ = kDefaultStagingChunkBytes;
  std::string name_;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace perigee::collectives
