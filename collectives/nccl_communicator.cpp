#include "collectives/nccl_communicator.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>
#include <utility>

#include "collectives/mpi_communicator.hpp"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.cuh"

namespace perigee::collectives {
namespace {

// NCCL_VERSION(2, 30, 0): the first NCCL with NCCL_MULTI_RANK_GPU_ENABLE.
constexpr int kNcclMultiRankGpuVersion = 23000;

ncclDataType_t to_nccl(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUInt8:
      return ncclUint8;
    case DataType::kBFloat16:
      return ncclBfloat16;
  }
  return ncclNumTypes;
}

ncclRedOp_t to_nccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kAvg:
      return ncclAvg;
  }
  return ncclNumOps;
}

// 64-bit FNV-1a: a stable hash of the host identity, equal in every process on one host.
// Between two polls of a wait: spin for the first milliseconds (collectives in step finish there),
// then yield the core, then sleep a little.
void poll_pause(double waited_s) {
  if (waited_s < 2e-3) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(waited_s < 20e-3 ? 20 : 200));
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Deadline of the steps that wait for every peer (ncclCommInitRankConfig, ncclCommFinalize) when no
// timeout is set: a peer that failed before joining, or aborted, never does.
constexpr double kAllPeersDeadlineS = 60.0;

// f() with `device` current, the caller's current device restored afterwards.
template <typename F>
Status nccl_device_call(int device, F&& f) {
  int previous = -1;
  PERIGEE_CHECK_CUDA(cudaGetDevice(&previous));
  if (previous == device) return f();
  PERIGEE_CHECK_CUDA(cudaSetDevice(device));
  Status s = f();
  (void)cudaSetDevice(previous);
  return s;
}

// The deadline argument of create() and set_timeout().
Status check_timeout(double timeout_s) {
  PERIGEE_REQUIRE(std::isfinite(timeout_s) && timeout_s >= 0.0, StatusCode::kInvalidArgument,
                  "NcclCommunicator: timeout_s must be >= 0 seconds (0 = no deadline), got ", timeout_s);
  return Status::ok();
}

// Whole milliseconds of a duration in seconds, for messages.
long long milliseconds(double seconds) {
  return std::llround(seconds * 1e3);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

// NCCL's notion of "same host": NCCL_HOSTID when set, else hostname + kernel boot id.
uint64_t host_hash(const std::string& name) {
  if (const char* id = std::getenv("NCCL_HOSTID"); id != nullptr && *id != '\0') return fnv1a(id);
  std::string key = name;
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  if (boot >> boot_id) key += boot_id;
  return fnv1a(key);
}

void copy_text(char* dst, size_t cap, const std::string& src) {
  const size_t n = std::min(cap - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

// What each rank contributes to the all-gather in create(); plain bytes over MPI.
struct RankRecord {
  uint64_t host_hash;
  int32_t device;
  int32_t status_code;  // StatusCode of this rank's local setup
  int32_t shared_gpu_opt_in;
  int32_t reserved;
  char bus_id[32];
  char host_name[64];
  char error[320];
};

// One rank's outcome of a step of create(), all-gathered so that every rank returns the same code.
struct OutcomeRecord {
  int32_t status_code;
  double seconds;  // from the start of the step to its outcome
  char error[320];
};

// The ncclUniqueId as rank 0 broadcasts it, with rank 0's error when ncclGetUniqueId failed.
struct IdRecord {
  int32_t status_code;
  char error[320];
  ncclUniqueId id;
};

// A private MPI communicator (errors returned, not fatal) for the bootstrap.
class MpiBootstrap {
 public:
  ~MpiBootstrap() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
  }
  Status init(MPI_Comm base) {
    PERIGEE_CHECK_MPI(MPI_Comm_dup(base, &comm_));
    PERIGEE_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    return Status::ok();
  }
  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) s += i + 1 == ranks.size() ? " and " : ", ";
    s += std::to_string(ranks[i]);
  }
  return s;
}

}  // namespace

Status nccl_status(ncclResult_t result, const char* what, ncclComm_t comm) {
  if (result == ncclSuccess) return Status::ok();
  std::string text =
      str_cat(what, " failed: ", ncclGetErrorString(result), " (", static_cast<int>(result), ")");
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += str_cat("; NCCL: ", last);
  return Status(StatusCode::kNcclError, std::move(text));
}

Status check_nonblocking_env(double timeout_s, const std::string& host) {
  const char* v = std::getenv("NCCL_COMM_BLOCKING");
  if (timeout_s <= 0.0 || v == nullptr || std::strtol(v, nullptr, 10) == 0) return Status::ok();
  return make_error(StatusCode::kInvalidArgument, "NCCL_COMM_BLOCKING=", v, " on ", host,
                    " makes NCCL block inside its calls, where the ", timeout_s,
                    " s timeout cannot end a wait for a dead peer; unset it (Perigee runs NCCL non-blocking "
                    "and polls)");
}

int cause_rank(const std::vector<StepOutcome>& outcomes) {
  int cause = -1;
  for (size_t r = 0; r < outcomes.size(); ++r) {
    if (outcomes[r].code == StatusCode::kOk) continue;
    if (cause < 0 || outcomes[r].seconds < outcomes[static_cast<size_t>(cause)].seconds) {
      cause = static_cast<int>(r);
    }
  }
  return cause;
}

Status check_distinct_gpus(const std::vector<GpuIdentity>& ranks) {
  std::map<std::pair<uint64_t, std::string>, std::vector<int>> by_gpu;
  bool all_opted_in = !ranks.empty();
  for (size_t r = 0; r < ranks.size(); ++r) {
    by_gpu[{ranks[r].host_hash, ranks[r].bus_id}].push_back(static_cast<int>(r));
    all_opted_in = all_opted_in && ranks[r].shared_gpu_opt_in;
  }
  std::vector<std::vector<int>> shared;
  for (auto& [gpu, members] : by_gpu) {
    if (members.size() > 1) shared.push_back(members);
  }
  if (shared.empty() || all_opted_in) return Status::ok();
  std::sort(shared.begin(), shared.end());
  std::string groups;
  for (const auto& members : shared) {
    const GpuIdentity& g = ranks[members.front()];
    if (!groups.empty()) groups += "; ";
    groups += str_cat("ranks ", rank_list(members), " share GPU ", g.bus_id, " (CUDA device ", g.device,
                      ") on host ", g.host_name);
  }
  return make_error(
      StatusCode::kUnavailable, "NCCL backend unavailable: ", groups,
      ". NCCL does not run several ranks of one communicator on one GPU (ncclCommInitRank fails "
      "with ncclInvalidUsage, \"Duplicate GPU detected\"; NCCL >= 2.30 allows it only with the "
      "experimental NCCL_MULTI_RANK_GPU_ENABLE=1 on every rank). Run one rank per GPU, or use the "
      "MPI backend with host staging (HostStagingCommunicator via "
      "make_cuda_staging_communicator, collectives/cuda_staging.hpp).");
}

Status NcclCommunicator::create(MPI_Comm comm, int cuda_device, cudaStream_t stream,
                                std::unique_ptr<NcclCommunicator>* out, bool async, double timeout_s) {
  PERIGEE_CHECK(check_timeout(timeout_s));
  int initialized = 0;
  MPI_Initialized(&initialized);
  PERIGEE_REQUIRE(initialized, StatusCode::kInternal, "NcclCommunicator::create called before MPI_Init");
  MpiBootstrap boot;
  PERIGEE_CHECK(boot.init(comm));
  std::unique_ptr<NcclCommunicator> c(new NcclCommunicator());
  PERIGEE_CHECK_MPI(MPI_Comm_rank(boot.comm(), &c->rank_));
  PERIGEE_CHECK_MPI(MPI_Comm_size(boot.comm(), &c->size_));
  c->async_ = async;
  c->device_ = cuda_device;
  c->timeout_s_ = timeout_s;

  // 1. Local setup on every rank; its outcome travels with the all-gather so that every rank takes
  //    the same decision (a rank that returned early would leave the others in a collective).
  GpuIdentity me;
  me.host_name = host_name();
  me.host_hash = host_hash(me.host_name);
  me.device = cuda_device;
  auto local_setup = [&]() -> Status {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      return make_error(StatusCode::kUnavailable, "no usable CUDA device on ", me.host_name,
                        ": cudaGetDeviceCount returned ", cudaGetErrorName(err), " (",
                        cudaGetErrorString(err), ")");
    }
    PERIGEE_REQUIRE(count > 0, StatusCode::kUnavailable, "no CUDA device on ", me.host_name);
    PERIGEE_REQUIRE(cuda_device >= 0 && cuda_device < count, StatusCode::kInvalidArgument, "CUDA device ",
                    cuda_device, " outside [0, ", count, ") on ", me.host_name);
    PERIGEE_CHECK_CUDA(cudaSetDevice(cuda_device));
    char bus[32] = {0};
    PERIGEE_CHECK_CUDA(cudaDeviceGetPCIBusId(bus, sizeof(bus), cuda_device));
    me.bus_id = bus;
    std::transform(me.bus_id.begin(), me.bus_id.end(), me.bus_id.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    int version = 0;
    PERIGEE_CHECK_NCCL(ncclGetVersion(&version));
    PERIGEE_CHECK(check_nonblocking_env(timeout_s, me.host_name));
    const char* multi = std::getenv("NCCL_MULTI_RANK_GPU_ENABLE");
    me.shared_gpu_opt_in =
        version >= kNcclMultiRankGpuVersion && multi != nullptr && std::strcmp(multi, "1") == 0;
    if (stream == nullptr) {
      PERIGEE_CHECK_CUDA(cudaStreamCreateWithFlags(&c->stream_, cudaStreamNonBlocking));
      c->owns_stream_ = true;
    } else {
      c->stream_ = stream;
    }
    PERIGEE_CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&c->scratch_), sizeof(int)));
    PERIGEE_CHECK_CUDA(cudaMemset(c->scratch_, 0, sizeof(int)));  // barrier() sums zeros
    return Status::ok();
  };
  Status local = local_setup();

  RankRecord mine{};
  mine.host_hash = me.host_hash;
  mine.device = cuda_device;
  mine.status_code = static_cast<int32_t>(local.code());
  mine.shared_gpu_opt_in = me.shared_gpu_opt_in ? 1 : 0;
  copy_text(mine.bus_id, sizeof(mine.bus_id), me.bus_id);
  copy_text(mine.host_name, sizeof(mine.host_name), me.host_name);
  copy_text(mine.error, sizeof(mine.error), local.message());
  std::vector<RankRecord> all(static_cast<size_t>(c->size_));
  PERIGEE_CHECK_MPI(MPI_Allgather(&mine, sizeof(RankRecord), MPI_BYTE, all.data(), sizeof(RankRecord),
                                  MPI_BYTE, boot.comm()));
  // Every rank reports the lowest failing rank's error (its own, traced, when that is itself), so
  // all ranks return the same code.
  for (int r = 0; r < c->size_; ++r) {
    const RankRecord& rec = all[static_cast<size_t>(r)];
    if (r == c->rank_ && !local.is_ok()) return std::move(local.add_trace(__FILE__, __LINE__));
    PERIGEE_REQUIRE(rec.status_code == static_cast<int32_t>(StatusCode::kOk),
                    static_cast<StatusCode>(rec.status_code), "NcclCommunicator::create: rank ", r,
                    " could not set up CUDA device ", rec.device, ": ", rec.error);
  }

  // 2. No two ranks on one GPU (the same verdict everywhere: every rank sees the same table).
  std::vector<GpuIdentity> ids(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    ids[r].host_hash = all[r].host_hash;
    ids[r].host_name = all[r].host_name;
    ids[r].device = all[r].device;
    ids[r].bus_id = all[r].bus_id;
    ids[r].shared_gpu_opt_in = all[r].shared_gpu_opt_in != 0;
  }
  PERIGEE_CHECK(check_distinct_gpus(ids));

  // 3. Rank 0 creates the unique id; MPI broadcasts it with rank 0's outcome.
  IdRecord id{};
  if (c->rank_ == 0) {
    Status s = nccl_status(ncclGetUniqueId(&id.id), "ncclGetUniqueId");
    id.status_code = static_cast<int32_t>(s.code());
    copy_text(id.error, sizeof(id.error), s.message());
  }
  PERIGEE_CHECK_MPI(MPI_Bcast(&id, sizeof(IdRecord), MPI_BYTE, 0, boot.comm()));
  PERIGEE_REQUIRE(id.status_code == static_cast<int32_t>(StatusCode::kOk),
                  static_cast<StatusCode>(id.status_code), "NcclCommunicator::create: rank 0: ", id.error);

  // 4. The communicator; then agree that every rank has one (a rank whose init failed would
  //    otherwise leave the others waiting in their first collective).
  //    Non-blocking (config.blocking = 0): init and every later call return at once, and settle()
  //    polls them within the deadline, so a peer that dies while NCCL connects cannot hang a rank.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const auto init_start = std::chrono::steady_clock::now();
  const ncclResult_t started = ncclCommInitRankConfig(&c->comm_, c->size_, id.id, c->rank_, &config);
  Status init = started == ncclInProgress || (started == ncclSuccess && c->comm_ != nullptr)
                    ? c->settle("ncclCommInitRankConfig", timeout_s > 0.0 ? timeout_s : kAllPeersDeadlineS)
                    : nccl_status(started, "ncclCommInitRankConfig");
  const double init_seconds = seconds_since(init_start);
  // A failed init may still hand back a communicator (in its error state). Abort it before the
  // agreement below: its bootstrap connections close, so peers still initializing fail at once
  // instead of waiting out their deadline.
  if (!init.is_ok()) {
    c->failed_ = true;
    (void)c->abort();
  }
  OutcomeRecord mine_init{};
  mine_init.status_code = static_cast<int32_t>(init.code());
  mine_init.seconds = init_seconds;
  copy_text(mine_init.error, sizeof(mine_init.error), init.message());
  std::vector<OutcomeRecord> inits(static_cast<size_t>(c->size_));
  PERIGEE_CHECK_MPI(MPI_Allgather(&mine_init, sizeof(OutcomeRecord), MPI_BYTE, inits.data(),
                                  sizeof(OutcomeRecord), MPI_BYTE, boot.comm()));
  // Every rank returns the same error, the cause's: the first to fail (cause_rank). The destructor
  // aborts instead of destroying.
  std::vector<StepOutcome> outcomes(inits.size());
  std::transform(inits.begin(), inits.end(), outcomes.begin(), [](const OutcomeRecord& rec) {
    return StepOutcome{static_cast<StatusCode>(rec.status_code), rec.seconds};
  });
  if (const int r = cause_rank(outcomes); r >= 0) {
    c->failed_ = true;
    if (r == c->rank_) return std::move(init.add_trace(__FILE__, __LINE__));
    const OutcomeRecord& rec = inits[static_cast<size_t>(r)];
    return make_error(static_cast<StatusCode>(rec.status_code), "NcclCommunicator::create: rank ", r, " of ",
                      c->size_, ": ", rec.error);
  }
  *out = std::move(c);
  return Status::ok();
}

Status NcclCommunicator::close() {
  Status s = Status::ok();
  if (comm_ != nullptr && !failed_) {
    // Non-blocking: finalize (flushes the outstanding work), wait for it, then destroy.
    // Finalize synchronizes with the peers: bounded even without a timeout (expiry aborts).
    const ncclResult_t r = ncclCommFinalize(comm_);
    s = r == ncclSuccess || r == ncclInProgress
            ? settle("ncclCommFinalize", timeout_s_ > 0.0 ? timeout_s_ : kAllPeersDeadlineS)
            : nccl_status(r, "ncclCommFinalize", comm_);
    if (!s.is_ok()) failed_ = true;
  }
  if (comm_ != nullptr) {
    ncclComm_t c = comm_;
    comm_ = nullptr;
    if (failed_) {
      (void)ncclCommAbort(c);  // the communicator is lost either way: the first error is the one to report
    } else if (const ncclResult_t r = ncclCommDestroy(c); r != ncclSuccess) {
      s = nccl_status(r, "ncclCommDestroy", nullptr);
    }
  }
  if (s.is_ok()) return s;
  return make_error(s.code(), "closing the NCCL communicator (rank ", rank_, " of ", size_,
                    "): ", s.message());
}

NcclCommunicator::~NcclCommunicator() {
  if (const Status s = close(); !s.is_ok()) std::fprintf(stderr, "perigee: %s\n", s.message().c_str());
  if (scratch_ != nullptr) (void)cudaFree(scratch_);
  if (producer_done_ != nullptr) (void)cudaEventDestroy(producer_done_);
  if (owns_stream_ && stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

Status NcclCommunicator::usable() const {
  PERIGEE_REQUIRE(
      comm_ != nullptr, StatusCode::kUnavailable,
      "NCCL communicator was closed or aborted (close(), abort(), or an earlier operation failed); create "
      "a new one");
  PERIGEE_REQUIRE(!failed_, StatusCode::kUnavailable,
                  "an earlier NCCL operation failed, which leaves a non-blocking communicator in its error "
                  "state; abort it and create a new one");
  return Status::ok();
}

Status NcclCommunicator::complete(ncclResult_t result, const char* what, bool wait) {
  Status s = result == ncclInProgress ? settle(what, timeout_s_) : nccl_status(result, what, comm_);
  // A non-blocking communicator keeps any error as its state (even ncclInvalidArgument, which a
  // blocking one shrugs off): every later call would fail the same way.
  if (!s.is_ok()) return fail(std::move(s));
  if (wait) s = synchronize();
  return s;
}

Status NcclCommunicator::fail(Status s) {
  // Operations enqueued before (earlier buckets) may still run on the stream, waiting for peers:
  // only an abort stops them, and the caller may free their buffers next.
  failed_ = true;
  const Status aborted = abort();
  if (!aborted.is_ok()) s = make_error(s.code(), s.message(), "; then ", aborted.message());
  return s;
}

Status NcclCommunicator::async_error() {
  PERIGEE_CHECK(usable());
  ncclResult_t state = ncclSuccess;
  PERIGEE_CHECK(nccl_status(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError", comm_));
  if (state != ncclSuccess && state != ncclInProgress) {
    return fail(nccl_status(state, "NCCL asynchronous error", comm_).add_trace(__FILE__, __LINE__));
  }
  return Status::ok();
}

Status NcclCommunicator::set_timeout(double timeout_s) {
  PERIGEE_CHECK(check_timeout(timeout_s));
  timeout_s_ = timeout_s;
  return Status::ok();
}

Status NcclCommunicator::synchronize() {
  PERIGEE_CHECK(usable());
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaSuccess) return Status::ok();
    if (q != cudaErrorNotReady) {
      return fail(make_error(StatusCode::kCudaError, "cudaStreamQuery on the NCCL stream: ",
                             cudaGetErrorName(q), " (", cudaGetErrorString(q), ")"));
    }
    PERIGEE_CHECK(async_error());
    const double waited = seconds_since(start);
    // NCCL's kernels wait for a dead peer for ever; only an abort frees the stream.
    if (timeout_s_ > 0.0 && waited >= timeout_s_)
      return expired("NCCL collective", start, waited, timeout_s_);
    poll_pause(waited);
  }
}

Status NcclCommunicator::settle(const char* what, double deadline_s) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) {
      failed_ = true;
      return nccl_status(r, "ncclCommGetAsyncError", comm_);
    }
    if (state != ncclInProgress) {
      if (state != ncclSuccess) failed_ = true;
      return nccl_status(state, what, comm_);
    }
    const double waited = seconds_since(start);
    if (deadline_s > 0.0 && waited >= deadline_s) return expired(what, start, waited, deadline_s);
    poll_pause(waited);
  }
}

Status NcclCommunicator::expired(const std::string& what, std::chrono::steady_clock::time_point start,
                                 double waited, double deadline_s) {
  // The abort itself may take longer (NCCL frees pinned memory, which waits for the device): the
  // message gives both times.
  failed_ = true;
  const Status aborted = abort();
  return make_error(StatusCode::kUnavailable, what, " did not complete within ", deadline_s,
                    " s: ", kPeerLostMessage, " (rank ", rank_, " of ", size_, "); gave up after ",
                    milliseconds(waited), " ms, the NCCL communicator was aborted after ",
                    milliseconds(seconds_since(start)), " ms",
                    aborted.is_ok() ? std::string() : ": " + aborted.message());
}

Status NcclCommunicator::abort() {
  if (comm_ == nullptr) return Status::ok();
  ncclComm_t c = comm_;
  comm_ = nullptr;
  PERIGEE_CHECK_NCCL(ncclCommAbort(c));
  return Status::ok();
}

Status NcclCommunicator::set_producer_stream(cudaStream_t producer) {
  producer_is_own_stream_ = producer != nullptr && producer == stream_;  // one stream orders itself
  if (producer_is_own_stream_) producer = nullptr;
  if (producer != nullptr && producer_done_ == nullptr) {
    PERIGEE_CHECK(nccl_device_call(device_, [&] {
      PERIGEE_CHECK_CUDA(cudaEventCreateWithFlags(&producer_done_, cudaEventDisableTiming));
      return Status::ok();
    }));
  }
  producer_ = producer;
  return Status::ok();
}

Status NcclCommunicator::follow_producer() {
  if (producer_ == nullptr) return Status::ok();
  PERIGEE_CHECK_CUDA(cudaEventRecord(producer_done_, producer_));
  PERIGEE_CHECK_CUDA(cudaStreamWaitEvent(stream_, producer_done_, 0));
  return Status::ok();
}

Status NcclCommunicator::enqueue_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                            ReduceOp op, bool wait) {
  PERIGEE_CHECK(usable());
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  if (count == 0) return Status::ok();
  PERIGEE_CHECK(follow_producer());
  if (type == DataType::kBFloat16 && op == ReduceOp::kAvg) {
    // NCCL's average multiplies every input by bf16(1/p) before the sum; the rule of every backend
    // is the sum, then one multiply by 1/p and one rounding (docs/collectives.md).
    PERIGEE_CHECK(complete(ncclAllReduce(send, recv, count, ncclBfloat16, ncclSum, comm_, stream_),
                           "ncclAllReduce", false));
    if (size_ > 1) {
      // On this communicator's device whatever the calling thread's current device (NCCL sets its
      // own); a failed launch leaves the sum unscaled: the communicator is done for.
      Status scaled = nccl_device_call(device_, [&] {
        return kernels::cuda::scale_bf16(static_cast<uint16_t*>(recv), 1.0f / static_cast<float>(size_),
                                         count, stream_);
      });
      if (!scaled.is_ok()) return fail(std::move(scaled));
    }
    if (wait) PERIGEE_CHECK(synchronize());
    return Status::ok();
  }
  PERIGEE_CHECK(complete(ncclAllReduce(send, recv, count, to_nccl(type), to_nccl(op), comm_, stream_),
                         "ncclAllReduce", wait));
  return Status::ok();
}

Status NcclCommunicator::all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  return enqueue_all_reduce(send, recv, count, type, op, !async_);
}

Status NcclCommunicator::start_all_reduce(const void* send, void* recv, size_t count, DataType type,
                                          ReduceOp op) {
  PERIGEE_CHECK(enqueue_all_reduce(send, recv, count, type, op, /*wait=*/false));
  started_ = true;
  return Status::ok();
}

Status NcclCommunicator::progress() {
  if (!started_) return Status::ok();
  return async_error();
}

Status NcclCommunicator::wait_all() {
  if (!started_) return Status::ok();
  started_ = false;
  return synchronize();
}

Status NcclCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  PERIGEE_CHECK(usable());
  PERIGEE_REQUIRE(root >= 0 && root < size_, StatusCode::kInvalidArgument, "broadcast: root ", root,
                  " outside [0, ", size_, ")");
  if (count == 0) return Status::ok();
  PERIGEE_CHECK(follow_producer());
  PERIGEE_CHECK(
      complete(ncclBroadcast(buffer, buffer, count, to_nccl(type), root, comm_, stream_), "ncclBroadcast"));
  return Status::ok();
}

Status NcclCommunicator::all_gather(const void* send, void* recv, size_t count, DataType type) {
  PERIGEE_CHECK(usable());
  if (count == 0) return Status::ok();
  PERIGEE_CHECK(follow_producer());
  PERIGEE_CHECK(complete(ncclAllGather(send, recv, count, to_nccl(type), comm_, stream_), "ncclAllGather"));
  return Status::ok();
}

Status NcclCommunicator::barrier() {
  PERIGEE_CHECK(usable());
  PERIGEE_CHECK(
      complete(ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_), "ncclAllReduce"));
  if (async_) PERIGEE_CHECK(synchronize());
  return Status::ok();
}

}  // namespace perigee::collectives
