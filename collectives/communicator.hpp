// Communicator: how ranks (one per satellite GPU) exchange flat buffers. The training loop talks
// only to this interface; backends are MPI (this folder), NCCL and emulated laser links later.
// Buffers are flat and typed; collectives know nothing of parameters or models.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/status.hpp"

namespace perigee::collectives {

// kBFloat16: raw bf16 bits (uint16_t, core/bf16.hpp). Reductions over it add in fp32 and round each
// partial result to bf16 (nearest, ties to even), as NCCL does; on 2 ranks every sum is
// bf16(float(a) + float(b)) on every backend.
enum class DataType { kFloat32, kFloat64, kInt32, kInt64, kUInt8, kBFloat16 };
enum class ReduceOp { kSum, kMax, kMin, kAvg };

size_t data_type_size(DataType type);
const char* data_type_name(DataType type);
inline bool is_floating(DataType type) {
  return type == DataType::kFloat32 || type == DataType::kFloat64 || type == DataType::kBFloat16;
}

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual const char* name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // recv[i] = op over ranks of send[i]. In place when send == recv. kAvg divides by size()
  // (floating types only).
  virtual Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) = 0;
  virtual Status broadcast(void* buffer, size_t count, DataType type, int root) = 0;
  // recv holds size() * count elements, rank r's block at r * count. In place when send is this
  // rank's block of recv (send == recv + rank() * count elements).
  virtual Status all_gather(const void* send, void* recv, size_t count, DataType type) = 0;
  virtual Status barrier() = 0;

  // Overlapped all-reduce (the gradient buckets of collectives/gradient_buckets.hpp):
  // start_all_reduce has all_reduce's semantics but may return before the data has moved; send and
  // recv belong to the collective until wait_all() returns. Every rank starts the same all-reduces
  // in the same order and calls wait_all() before any other collective on this communicator.
  // progress() lets started all-reduces advance without blocking (MPI moves nonblocking collectives
  // only inside MPI calls), and may be called at any time. These defaults run the blocking
  // all_reduce at start: correct everywhere, without overlap.
  virtual Status start_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
    return all_reduce(send, recv, count, type, op);
  }
  virtual Status progress() { return Status::ok(); }
  virtual Status wait_all() { return Status::ok(); }
  // True when start_all_reduce returns before the data has moved (MPI, NCCL).
  virtual bool overlaps() const { return false; }
  // True when every operation on device buffers orders itself after the work already queued on the
  // stream that produced them (the producer stream it was given: NcclCommunicator, the CUDA host
  // staging), so the caller need not wait for that stream first. False: the caller makes the
  // producers finish before a call (host buffers: nothing to order).
  virtual bool follows_producer_stream() const { return false; }

  // Ends the communicator: waits for its outstanding work and reports what the teardown found, which
  // a destructor could only print (NCCL's finalize, which synchronizes with the peers). Every rank
  // calls it at the same point, once its last collective has been waited for; no operation may
  // follow. Calling it again does nothing. The default has nothing to end.
  virtual Status close() { return Status::ok(); }

  // Deadline of each later collective in seconds, 0 = none. A communicator without deadlines reports
  // 0 and accepts any value (ok). Callers that expect one slow collective (the ranks waiting for rank
  // 0's checkpoint write) raise it around that call and restore it.
  virtual double timeout_s() const { return 0.0; }
  virtual Status set_timeout(double timeout_s) {
    (void)timeout_s;
    return Status::ok();
  }

  // Emulated seconds all collectives so far took on a modelled network (the emulated laser links);
  // 0 for real networks. Callers take differences around a collective.
  virtual double modelled_seconds() const { return 0.0; }
};

}  // namespace perigee::collectives
