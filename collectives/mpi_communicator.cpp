#include "collectives/mpi_communicator.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <thread>

#include "collectives/bf16_reduce.hpp"
#include "collectives/host_reduce.hpp"

namespace perigee::collectives {
namespace {

using Clock = std::chrono::steady_clock;

MPI_Datatype to_mpi(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
    case DataType::kInt32:
      return MPI_INT32_T;
    case DataType::kInt64:
      return MPI_INT64_T;
    case DataType::kUInt8:
      return MPI_UINT8_T;
    case DataType::kBFloat16:
      return MPI_UINT16_T;  // bf16 bits; reduced by the user-defined ops below
  }
  return MPI_DATATYPE_NULL;
}

// MPI has no bf16: user-defined, commutative ops over MPI_UINT16_T that widen, combine and round
// (collectives/bf16_reduce.hpp). inout = in op inout.
template <ReduceOp kOp>
void bf16_user_op(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  bf16_combine(static_cast<uint16_t*>(inout), static_cast<const uint16_t*>(in), static_cast<size_t>(*len),
               kOp);
}

// The three ops, created on first use (after MPI_Init) and kept for the life of the process.
Status bf16_mpi_op(ReduceOp op, MPI_Op* out) {
  struct Ops {
    MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL, min = MPI_OP_NULL;
    int err = MPI_SUCCESS;
    Ops() {
      err = MPI_Op_create(&bf16_user_op<ReduceOp::kSum>, 1, &sum);
      if (err == MPI_SUCCESS) err = MPI_Op_create(&bf16_user_op<ReduceOp::kMax>, 1, &max);
      if (err == MPI_SUCCESS) err = MPI_Op_create(&bf16_user_op<ReduceOp::kMin>, 1, &min);
    }
  };
  static const Ops ops;
  PERIGEE_CHECK_MPI(ops.err);
  *out = op == ReduceOp::kMax ? ops.max : op == ReduceOp::kMin ? ops.min : ops.sum;
  return Status::ok();
}

// MPI_MAX and MPI_MIN leave NaN to the implementation (Open MPI keeps or drops it by position): fp32
// and fp64 max/min take collectives/host_reduce.hpp's rule instead, as every other backend does.
template <typename T, ReduceOp kOp>
void float_user_op(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  host_combine(static_cast<T*>(inout), static_cast<const T*>(in), static_cast<size_t>(*len), kOp);
}

Status float_mpi_op(DataType type, ReduceOp op, MPI_Op* out) {
  struct Ops {
    MPI_Op f32_max = MPI_OP_NULL, f32_min = MPI_OP_NULL, f64_max = MPI_OP_NULL, f64_min = MPI_OP_NULL;
    int err = MPI_SUCCESS;
    Ops() {
      err = MPI_Op_create(&float_user_op<float, ReduceOp::kMax>, 1, &f32_max);
      if (err == MPI_SUCCESS) err = MPI_Op_create(&float_user_op<float, ReduceOp::kMin>, 1, &f32_min);
      if (err == MPI_SUCCESS) err = MPI_Op_create(&float_user_op<double, ReduceOp::kMax>, 1, &f64_max);
      if (err == MPI_SUCCESS) err = MPI_Op_create(&float_user_op<double, ReduceOp::kMin>, 1, &f64_min);
    }
  };
  static const Ops ops;
  PERIGEE_CHECK_MPI(ops.err);
  const bool f32 = type == DataType::kFloat32;
  *out = op == ReduceOp::kMax ? (f32 ? ops.f32_max : ops.f64_max) : (f32 ? ops.f32_min : ops.f64_min);
  return Status::ok();
}

// Polling schedule of a collective with a deadline: MPI_Test back to back for the first
// kSpinSeconds (a collective between ranks in step completes here, at full MPI speed), then
// MPI_Test + sched_yield until kYieldSeconds (still fast, but an oversubscribed core goes to the
// rank that computes), then MPI_Test every kMinSleep..kMaxSleep (a peer that is far behind, or
// dead: little CPU). Nonblocking collectives progress only inside MPI calls, so the sleeps stay short.
constexpr double kSpinSeconds = 2e-3;
constexpr double kYieldSeconds = 20e-3;
constexpr std::chrono::microseconds kMinSleep{50};
constexpr std::chrono::microseconds kMaxSleep{200};

// recv[i] /= size for kAvg (sum then divide, as MPI has no average).
void divide_by_size(void* recv, size_t count, DataType type, int size) {
  if (size <= 1) return;
  if (type == DataType::kFloat32) {
    const float inv = 1.0f / static_cast<float>(size);
    float* p = static_cast<float*>(recv);
    for (size_t i = 0; i < count; ++i) p[i] *= inv;
  } else if (type == DataType::kFloat64) {
    const double inv = 1.0 / static_cast<double>(size);
    double* p = static_cast<double*>(recv);
    for (size_t i = 0; i < count; ++i) p[i] *= inv;
  } else if (type == DataType::kBFloat16) {
    bf16_scale(static_cast<uint16_t*>(recv), count, 1.0f / static_cast<float>(size));
  }
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

Status mpi_status(int err, const char* what) {
  if (err == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(err, text, &len);
  return make_error(StatusCode::kMpiError, what, " failed (", err, "): ", text);
}

Status MpiCommunicator::create(MPI_Comm base, std::unique_ptr<MpiCommunicator>* out, double timeout_s) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  PERIGEE_REQUIRE(initialized, StatusCode::kInternal, "MpiCommunicator::create called before MPI_Init");
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator());
  PERIGEE_CHECK(c->set_timeout(timeout_s));
  PERIGEE_CHECK_MPI(MPI_Comm_dup(base, &c->comm_));
  PERIGEE_CHECK_MPI(MPI_Comm_set_errhandler(c->comm_, MPI_ERRORS_RETURN));
  PERIGEE_CHECK_MPI(MPI_Comm_rank(c->comm_, &c->rank_));
  PERIGEE_CHECK_MPI(MPI_Comm_size(c->comm_, &c->size_));
  *out = std::move(c);
  return Status::ok();
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // Overlapped all-reduces still pending (a caller that gave up between start_all_reduce and wait_all)
  // write into their buffers until they complete, and the caller frees those next: finish them now,
  // under the timeout. Those that time out are abandoned like any other.
  if (!started_.empty() && abandoned_.empty()) (void)wait_all();
  // A communicator with abandoned collectives is left alone: MPI may still progress them, and the
  // job is ending anyway.
  if (comm_ != MPI_COMM_NULL && abandoned_.empty()) MPI_Comm_free(&comm_);
}

Status MpiCommunicator::set_timeout(double timeout_s) {
  PERIGEE_REQUIRE(std::isfinite(timeout_s) && timeout_s >= 0.0, StatusCode::kInvalidArgument,
                  "MpiCommunicator: timeout_s must be >= 0 seconds (0 = blocking), got ", timeout_s);
  timeout_s_ = timeout_s;
  return Status::ok();
}

Status MpiCommunicator::set_chunk_elements(size_t elements) {
  PERIGEE_REQUIRE(elements >= 1 && elements <= static_cast<size_t>(INT_MAX), StatusCode::kInvalidArgument,
                  "MpiCommunicator: chunk_elements must be in [1, INT_MAX], got ", elements);
  chunk_elements_ = elements;
  return Status::ok();
}

Status MpiCommunicator::usable() const {
  PERIGEE_REQUIRE(abandoned_.empty(), StatusCode::kUnavailable,
                  "MPI communicator unusable: ", abandoned_what_,
                  " timed out earlier and is still pending (end the job, or wait_abandoned())");
  return Status::ok();
}

Status MpiCommunicator::wait(std::vector<MPI_Request>* requests, const char* op, size_t bytes,
                             double grace_s) {
  if (requests->empty()) return Status::ok();
  const int n = static_cast<int>(requests->size());
  if (timeout_s_ <= 0.0) {
    PERIGEE_CHECK(mpi_status(MPI_Waitall(n, requests->data(), MPI_STATUSES_IGNORE), op));
    return Status::ok();
  }
  const auto start = Clock::now();
  const double grace = std::isfinite(grace_s) && grace_s > 0.0 ? grace_s : 0.0;
  auto sleep = kMinSleep;
  while (true) {
    int done = 0;
    PERIGEE_CHECK(mpi_status(MPI_Testall(n, requests->data(), &done, MPI_STATUSES_IGNORE), op));
    if (done) return Status::ok();
    const double waited = seconds_since(start);
    if (waited >= timeout_s_ + grace) break;
    if (waited < kSpinSeconds) continue;
    if (waited < kYieldSeconds) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, kMaxSleep);
  }
  // Not all done: MPI_Testall left every request as it was.
  for (MPI_Request r : *requests) {
    if (r != MPI_REQUEST_NULL) abandoned_.push_back(r);
  }
  requests->clear();
  abandoned_what_ = str_cat(op, " of ", bytes, " bytes");
  const std::string beyond =
      grace > 0.0 ? str_cat(" beyond the ", grace, " s the peers were due to spend") : "";
  return make_error(StatusCode::kUnavailable, abandoned_what_, " did not complete within ", timeout_s_, " s",
                    beyond, ": ", kPeerLostMessage, " (rank ", rank_, " of ", size_,
                    "; MPI cannot cancel the collective, so the job must end)");
}

Status MpiCommunicator::wait_abandoned(double seconds) {
  if (abandoned_.empty()) return Status::ok();
  const auto start = Clock::now();
  while (true) {
    int done = 0;
    PERIGEE_CHECK(mpi_status(
        MPI_Testall(static_cast<int>(abandoned_.size()), abandoned_.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall (abandoned collective)"));
    if (done) {
      abandoned_.clear();
      abandoned_what_.clear();
      return Status::ok();
    }
    PERIGEE_REQUIRE(seconds_since(start) < seconds, StatusCode::kUnavailable, abandoned_what_,
                    " is still pending after another ", seconds, " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Status MpiCommunicator::idle(const char* op) const {
  PERIGEE_REQUIRE(started_.empty(), StatusCode::kInternal, op, " called while ", started_.size(),
                  " overlapped all-reduce(s) are pending: call wait_all() first");
  return Status::ok();
}

Status MpiCommunicator::post_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                        ReduceOp op, std::vector<MPI_Request>* requests) {
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  MPI_Op mpi_op = MPI_SUM;
  if (op == ReduceOp::kMax) mpi_op = MPI_MAX;
  if (op == ReduceOp::kMin) mpi_op = MPI_MIN;
  if (type == DataType::kBFloat16) PERIGEE_CHECK(bf16_mpi_op(op, &mpi_op));
  if ((type == DataType::kFloat32 || type == DataType::kFloat64) &&
      (op == ReduceOp::kMax || op == ReduceOp::kMin))
    PERIGEE_CHECK(float_mpi_op(type, op, &mpi_op));
  const size_t elem = data_type_size(type);
  const bool in_place = send == recv;
  for (size_t off = 0; off < count; off += chunk_elements_) {
    const int n = static_cast<int>(std::min(chunk_elements_, count - off));
    char* r = static_cast<char*>(recv) + off * elem;
    const void* s = in_place ? MPI_IN_PLACE : static_cast<const char*>(send) + off * elem;
    if (requests == nullptr) {
      PERIGEE_CHECK_MPI(MPI_Allreduce(s, r, n, to_mpi(type), mpi_op, comm_));
    } else {
      // Every chunk is issued before the wait, so a timeout abandons all of them together.
      requests->push_back(MPI_REQUEST_NULL);
      PERIGEE_CHECK_MPI(MPI_Iallreduce(s, r, n, to_mpi(type), mpi_op, comm_, &requests->back()));
    }
  }
  return Status::ok();
}

Status MpiCommunicator::all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  PERIGEE_CHECK(usable());
  PERIGEE_CHECK(idle("all_reduce"));
  std::vector<MPI_Request> requests;
  PERIGEE_CHECK(post_all_reduce(send, recv, count, type, op, timeout_s_ <= 0.0 ? nullptr : &requests));
  PERIGEE_CHECK(wait(&requests, "all_reduce", count * data_type_size(type)));
  if (op == ReduceOp::kAvg) divide_by_size(recv, count, type, size_);
  return Status::ok();
}

Status MpiCommunicator::start_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                         ReduceOp op) {
  PERIGEE_CHECK(usable());
  Started st;
  st.recv = recv;
  st.count = count;
  st.type = type;
  st.average = op == ReduceOp::kAvg;
  Status s = post_all_reduce(send, recv, count, type, op, &st.requests);
  // Chunks already posted before a failure still belong to MPI: keep them for wait_all().
  started_.push_back(std::move(st));
  return s;
}

Status MpiCommunicator::progress() {
  PERIGEE_CHECK(usable());
  for (Started& st : started_) {
    if (st.requests.empty()) continue;
    int done = 0;
    PERIGEE_CHECK_MPI(
        MPI_Testall(static_cast<int>(st.requests.size()), st.requests.data(), &done, MPI_STATUSES_IGNORE));
    // Collectives complete in the order they were started: stop at the first one still running.
    if (!done) break;
    st.requests.clear();
  }
  return Status::ok();
}

Status MpiCommunicator::wait_all() {
  PERIGEE_CHECK(usable());
  if (started_.empty()) return Status::ok();
  std::vector<MPI_Request> requests;
  size_t bytes = 0;
  for (const Started& st : started_) {
    requests.insert(requests.end(), st.requests.begin(), st.requests.end());
    bytes += st.count * data_type_size(st.type);
  }
  std::vector<Started> started;
  started.swap(started_);
  PERIGEE_CHECK(wait(&requests, "overlapped all_reduce", bytes));
  for (const Started& st : started) {
    if (st.average) divide_by_size(st.recv, st.count, st.type, size_);
  }
  return Status::ok();
}

Status MpiCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  PERIGEE_CHECK(usable());
  PERIGEE_CHECK(idle("broadcast"));
  PERIGEE_REQUIRE(root >= 0 && root < size_, StatusCode::kInvalidArgument, "broadcast: root ", root,
                  " outside [0, ", size_, ")");
  const size_t elem = data_type_size(type);
  std::vector<MPI_Request> requests;
  for (size_t off = 0; off < count; off += chunk_elements_) {
    const int n = static_cast<int>(std::min(chunk_elements_, count - off));
    char* p = static_cast<char*>(buffer) + off * elem;
    if (timeout_s_ <= 0.0) {
      PERIGEE_CHECK_MPI(MPI_Bcast(p, n, to_mpi(type), root, comm_));
    } else {
      requests.push_back(MPI_REQUEST_NULL);
      PERIGEE_CHECK_MPI(MPI_Ibcast(p, n, to_mpi(type), root, comm_, &requests.back()));
    }
  }
  return wait(&requests, "broadcast", count * elem);
}

Status MpiCommunicator::all_gather(const void* send, void* recv, size_t count, DataType type) {
  PERIGEE_CHECK(usable());
  PERIGEE_CHECK(idle("all_gather"));
  PERIGEE_REQUIRE(count <= static_cast<size_t>(INT_MAX), StatusCode::kInvalidArgument, "all_gather: count ",
                  count, " exceeds INT_MAX per rank");
  const int n = static_cast<int>(count);
  // MPI forbids send and recv to overlap: in place is spelled MPI_IN_PLACE (the block is already there).
  const size_t block = count * data_type_size(type);
  if (count > 0 && send == static_cast<const char*>(recv) + static_cast<size_t>(rank_) * block)
    send = MPI_IN_PLACE;
  if (timeout_s_ <= 0.0) {
    PERIGEE_CHECK_MPI(MPI_Allgather(send, n, to_mpi(type), recv, n, to_mpi(type), comm_));
    return Status::ok();
  }
  std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
  PERIGEE_CHECK_MPI(MPI_Iallgather(send, n, to_mpi(type), recv, n, to_mpi(type), comm_, &requests[0]));
  return wait(&requests, "all_gather", count * data_type_size(type) * static_cast<size_t>(size_));
}

Status MpiCommunicator::barrier() {
  PERIGEE_CHECK(usable());
  PERIGEE_CHECK(idle("barrier"));
  if (timeout_s_ <= 0.0) {
    PERIGEE_CHECK_MPI(MPI_Barrier(comm_));
    return Status::ok();
  }
  std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
  PERIGEE_CHECK_MPI(MPI_Ibarrier(comm_, &requests[0]));
  return wait(&requests, "barrier", 0);
}

}  // namespace perigee::collectives
