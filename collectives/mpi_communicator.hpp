// MpiCommunicator: Communicator over an MPI communicator (a private duplicate of the one given),
// host buffers. MPI errors come back as Status (MPI_ERRORS_RETURN is set on the duplicate).
//
// Timeout (no hang when a peer dies or stops): with timeout_s > 0 every collective is the
// nonblocking MPI call (MPI_Iallreduce, MPI_Ibcast, MPI_Iallgather, MPI_Ibarrier) followed by an
// MPI_Test polling loop against a deadline: it spins for a moment, then yields, then sleeps
// 50-200 us between tests (low CPU use while a slow peer computes, small latency otherwise). A
// collective that has not completed at the deadline returns kUnavailable ("<op> of N bytes did not
// complete within T s: a peer rank died or stopped responding"). MPI offers no portable way to
// cancel a collective, so the request stays pending: MPI may still read the send buffer and write
// the receive buffer until it completes, and the communicator refuses every later collective. The
// caller must end the job (perigee-train calls MPI_Abort) or, when the peer was only late,
// wait_abandoned() until the abandoned collectives complete. timeout_s = 0 keeps the blocking MPI
// calls (no deadline).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

// The cause every timed-out collective names (perigee-run looks for it in the job's output).
inline constexpr char kPeerLostMessage[] = "a peer rank died or stopped responding";

// MPI member of the PERIGEE_CHECK family.
Status mpi_status(int err, const char* what);
#define PERIGEE_CHECK_MPI(call) PERIGEE_CHECK(::perigee::collectives::mpi_status((call), #call))

class MpiCommunicator final : public Communicator {
 public:
  // MPI counts are int: buffers go in chunks of at most this many elements.
  static constexpr size_t kDefaultChunkElements = size_t{1} << 30;

  // Duplicates `base` (MPI must be initialised). timeout_s: see the file comment (0 = blocking,
  // negative or not finite is kInvalidArgument).
  static Status create(MPI_Comm base, std::unique_ptr<MpiCommunicator>* out, double timeout_s = 0.0);
  ~MpiCommunicator() override;

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status broadcast(void* buffer, size_t count, DataType type, int root) override;
  Status all_gather(const void* send, void* recv, size_t count, DataType type) override;
  Status barrier() override;

  // MPI_Iallreduce per chunk; progress() is MPI_Testall over what was started; wait_all() waits
  // with the same deadline as a blocking collective (on expiry the requests are abandoned as above)
  // and then divides kAvg results. Other collectives are refused while any is pending.
  Status start_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status progress() override;
  Status wait_all() override;
  bool overlaps() const override { return true; }
  // All-reduces started and not yet waited for.
  size_t pending() const { return started_.size(); }

  // Deadline of each later collective, in seconds from its start; 0 = blocking.
  Status set_timeout(double timeout_s) override;
  double timeout_s() const override { return timeout_s_; }
  // Largest element count of one MPI call (>= 1); smaller than the default only to test chunking.
  Status set_chunk_elements(size_t elements);
  size_t chunk_elements() const { return chunk_elements_; }

  // True after a collective timed out, until wait_abandoned() sees its requests complete.
  bool broken() const { return !abandoned_.empty(); }
  // Polls the abandoned requests of a timed-out collective for up to `seconds`. When they all
  // complete (the late peers joined), every rank has finished the same collectives again and the
  // communicator is usable; otherwise kUnavailable and it stays broken. The timed-out collective still
  // counts as failed: its receive buffer holds whatever MPI wrote (a kAvg holds the sum, never divided),
  // so the caller must not use it.
  Status wait_abandoned(double seconds);

  // Waits for all `requests` on comm() (blocking, or polling against the deadline when a timeout is
  // set; on expiry they are abandoned as above). For layers that post their own point-to-point
  // requests on comm() (the emulated-link communicator). grace_s (>= 0) extends the deadline by time
  // the peers are known to spend on purpose before they post their side (the emulated links' delays),
  // so only waiting beyond it counts against timeout_s.
  Status wait(std::vector<MPI_Request>* requests, const char* op, size_t bytes, double grace_s = 0.0);
  // kUnavailable while an abandoned collective is pending.
  Status usable() const;

 private:
  MpiCommunicator() = default;
  // kInternal while started all-reduces wait for wait_all() (collectives must not interleave).
  Status idle(const char* op) const;
  // Posts `count` elements as MPI calls of at most chunk_elements_ (blocking, or nonblocking
  // into *requests when requests is not null).
  Status post_all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op,
                         std::vector<MPI_Request>* requests);

  // An overlapped all-reduce: its requests, and what to divide once it is done (kAvg).
  struct Started {
    std::vector<MPI_Request> requests;
    void* recv = nullptr;
    size_t count = 0;
    DataType type = DataType::kFloat32;
    bool average = false;
  };

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double timeout_s_ = 0.0;
  size_t chunk_elements_ = kDefaultChunkElements;
  std::vector<Started> started_;        // overlapped all-reduces not yet waited for
  std::vector<MPI_Request> abandoned_;  // requests of the collective that timed out
  std::string abandoned_what_;          // its description, for later refusals
};

}  // namespace perigee::collectives
