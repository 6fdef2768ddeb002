// NcclCommunicator: Communicator over NCCL for DEVICE buffers, one MPI rank per GPU. MPI carries the
// bootstrap (the ncclUniqueId and a check that no two ranks drive the same GPU, which NCCL rejects).
// Every operation is enqueued on one CUDA stream; by default the call waits for it (polling NCCL for
// asynchronous errors while it waits), so results are ready when it returns, as the Communicator
// contract says. See docs/collectives.md.
#pragma once

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

// NCCL member of the PERIGEE_CHECK family: kNcclError with ncclGetErrorString and, when NCCL has
// one, the text of ncclGetLastError (the detail NCCL would print with NCCL_DEBUG=WARN).
Status nccl_status(ncclResult_t result, const char* what, ncclComm_t comm = nullptr);
#define PERIGEE_CHECK_NCCL(call) PERIGEE_CHECK(::perigee::collectives::nccl_status((call), #call))

// The GPU one rank drives, identified as NCCL identifies it: the host (hash of hostname + boot id,
// or of NCCL_HOSTID when set) and the PCI bus id of the device.
struct GpuIdentity {
  uint64_t host_hash = 0;
  std::string host_name;
  int device = -1;
  std::string bus_id;  // lower case, "0000:65:00.0"
  // This rank asked for NCCL's experimental multi-rank-per-GPU mode (NCCL_MULTI_RANK_GPU_ENABLE=1)
  // and runs an NCCL that has it (>= 2.30).
  bool shared_gpu_opt_in = false;
};

// ok when no two ranks (index = rank) drive the same GPU, or when every rank opted in to NCCL's
// multi-rank-per-GPU mode. Otherwise kUnavailable naming the ranks that share each GPU and advising
// the MPI backend with host staging.
Status check_distinct_gpus(const std::vector<GpuIdentity>& ranks);

// ok unless NCCL_COMM_BLOCKING is a nonzero integer while a timeout is set (timeout_s > 0): NCCL then
// overrides the non-blocking config and blocks inside init and a collective's first connection, where
// no deadline can end a wait for a dead peer. kInvalidArgument naming the variable, its value and `host`.
Status check_nonblocking_env(double timeout_s, const std::string& host);

// One rank's outcome of a step all ranks start together (NCCL init): its code and the seconds it took.
struct StepOutcome {
  StatusCode code = StatusCode::kOk;
  double seconds = 0.0;
};
// The rank (index) whose failure every rank reports: the first to fail, since a failure makes the peers
// fail later (at their deadline, or when they see it); the lowest such rank on a tie. -1: none failed.
int cause_rank(const std::vector<StepOutcome>& outcomes);

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `comm` (MPI must be initialised): every rank selects `cuda_device`, the ranks
  // exchange their GpuIdentity over MPI and stop with kUnavailable (on every rank alike) when GPUs
  // are shared; rank 0 creates the ncclUniqueId, MPI broadcasts it, ncclCommInitRankConfig follows.
  // A failure on any rank is returned on every rank (the code and message of the rank that failed first:
  // cause_rank; NCCL_COMM_BLOCKING set with a timeout is one: check_nonblocking_env).
  // `stream` 0 makes the communicator create (and own) a non-blocking stream.
  // `async` = false: every call waits until its operation has finished on the stream.
  // `async` = true: calls only enqueue; the caller orders its own work on stream() (or calls
  // synchronize()) before it reads results or reuses buffers. barrier() always waits.
  // The NCCL communicator is non-blocking (ncclConfig_t blocking = 0): init and every call return at
  // once and are polled (ncclCommGetAsyncError) within `timeout_s` (0: no deadline, except 60 s for
  // init and close(), which wait for every peer; set_timeout changes it later), so a peer that dies
  // while NCCL connects (init, or the lazy connection of a collective's first use) ends in kUnavailable
  // and an aborted communicator, not a hang.
  static Status create(MPI_Comm comm, int cuda_device, cudaStream_t stream,
                       std::unique_ptr<NcclCommunicator>* out, bool async = false, double timeout_s = 0.0);
  // close() unless it ran; its error, if any, goes to stderr (call close() to get it as a Status).
  ~NcclCommunicator() override;

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  const char* name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // Device buffers (on cuda_device). kAvg, floating types only (as in every backend), is ncclAvg for
  // fp32/fp64 and, for bf16, ncclSum then one scale by 1/p (NCCL's bf16 average scales each input
  // by a rounded bf16(1/p) before the sum: not the host rule).
  Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status broadcast(void* buffer, size_t count, DataType type, int root) override;
  // In place when send == recv + rank() * count (NCCL's in-place rule).
  Status all_gather(const void* send, void* recv, size_t count, DataType type) override;
  // A one-element all_reduce on the stream, waited for even when async.
  Status barrier() override;

  // Overlap: start_all_reduce only enqueues ncclAllReduce on stream() (after the producer stream's
  // queued work, when one is set; otherwise the caller has made the send buffer's producers finish,
  // e.g. by synchronizing its compute stream); progress() checks NCCL's asynchronous error;
  // wait_all() is synchronize() when anything was started.
  Status start_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status progress() override;
  Status wait_all() override;
  bool overlaps() const override { return true; }

  // The stream that produces the device buffers (the backend's compute stream). Every later
  // operation first makes stream() wait for the work queued on it so far (an event, no host wait),
  // so the caller need not synchronize it; nullptr turns this off; stream() itself needs no event.
  Status set_producer_stream(cudaStream_t producer);
  bool follows_producer_stream() const override { return producer_ != nullptr || producer_is_own_stream_; }

  // Waits until the stream is idle, polling ncclCommGetAsyncError meanwhile (NCCL's recommended
  // replacement for cudaStreamSynchronize: a failed peer or link surfaces as an error, not a hang).
  // With a timeout (set_timeout), a stream still busy after timeout_s seconds is taken for a peer
  // that died or stopped: the communicator is aborted (ncclCommAbort ends the kernels waiting for
  // that peer) and the call returns kUnavailable naming the rank; later calls return kUnavailable.
  Status synchronize();
  // Deadline of every wait (synchronize, blocking calls, wait_all, barrier) in seconds; 0 (the
  // default) waits for ever. kInvalidArgument for a negative or non-finite value.
  Status set_timeout(double timeout_s) override;
  double timeout_s() const override { return timeout_s_; }
  // ncclCommGetAsyncError as a Status (ok while operations are in progress).
  Status async_error();
  // ncclCommAbort: stops outstanding operations and frees the communicator without waiting for
  // peers. Later calls return kUnavailable; recovery means creating a new communicator.
  Status abort();
  // ncclCommFinalize (waited for within the timeout, 60 s without one; expiry aborts) then
  // ncclCommDestroy; ncclCommAbort instead when an operation failed (NCCL: any error is fatal for a
  // non-blocking communicator, even an invalid argument; recovery is abort + re-create). The error
  // names the rank. Later calls return kUnavailable; a second close() or one after abort() is ok.
  Status close() override;

  bool aborted() const { return comm_ == nullptr; }
  bool async() const { return async_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  ncclComm_t nccl_comm() const { return comm_; }

 private:
  NcclCommunicator() = default;
  Status usable() const;
  // Turns the result of an enqueue into a Status and, unless async, waits for the operation.
  Status complete(ncclResult_t result, const char* what) { return complete(result, what, !async_); }
  // The same, waiting for the operation only when `wait`.
  Status complete(ncclResult_t result, const char* what, bool wait);
  // Polls a call that returned ncclInProgress (the communicator is non-blocking) until NCCL reports
  // its outcome, within deadline_s (0: none).
  Status settle(const char* what, double deadline_s);
  // A wait that ran past deadline_s: aborts the communicator, kUnavailable naming `what` and times.
  Status expired(const std::string& what, std::chrono::steady_clock::time_point start, double waited,
                 double deadline_s);
  // A failed operation: marks and aborts the communicator (stopping what it still runs), returns s.
  Status fail(Status s);
  // Makes stream_ wait for the producer stream's queued work (no-op without one).
  Status follow_producer();
  // all_reduce's checks and enqueue; waits for it when `wait` (all_reduce and start_all_reduce).
  Status enqueue_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                            bool wait);

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
  bool async_ = false;
  bool failed_ = false;
  bool started_ = false;  // start_all_reduce enqueued work that wait_all() has not waited for
  int device_ = -1;
  int rank_ = 0;
  int size_ = 1;
  cudaStream_t producer_ = nullptr;      // set_producer_stream
  cudaEvent_t producer_done_ = nullptr;  // recorded on producer_, waited for on stream_
  bool producer_is_own_stream_ = false;  // set_producer_stream(stream()): ordered without an event
  int* scratch_ = nullptr;               // one device int for barrier()
  double timeout_s_ = 0.0;               // 0: no deadline
};

}  // namespace perigee::collectives
