#include "collectives/mpi_communicator.hpp"

#include <algorithm>
#include <climits>

namespace perigee::collectives {
namespace {

MPI_Datatype to_mpi(DataType type) {
  switch (type) {
    case DataType::kFloat32: return MPI_FLOAT;
    case DataType::kFloat64: return MPI_DOUBLE;
    case DataType::kInt32: return MPI_INT32_T;
    case DataType::kInt64: return MPI_INT64_T;
    case DataType::kUInt8: return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

bool is_floating(DataType type) { return type == DataType::kFloat32 || type == DataType::kFloat64; }

// MPI counts are int: large buffers go in chunks of at most kMaxChunk elements.
constexpr size_t kMaxChunk = size_t{1} << 30;

}  // namespace

Status mpi_status(int err, const char* what) {
  if (err == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(err, text, &len);
  return make_error(StatusCode::kMpiError, what, " failed (", err, "): ", text);
}

Status MpiCommunicator::create(MPI_Comm base, std::unique_ptr<MpiCommunicator>* out) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  PERIGEE_REQUIRE(initialized, StatusCode::kInternal, "MpiCommunicator::create called before MPI_Init");
  std::unique_ptr<MpiCommunicator> c(new MpiCommunicator());
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
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

Status MpiCommunicator::all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  PERIGEE_REQUIRE(op != ReduceOp::kAvg || is_floating(type), StatusCode::kInvalidArgument,
                  "all_reduce: kAvg needs a floating type, got ", data_type_name(type));
  MPI_Op mpi_op = MPI_SUM;
  if (op == ReduceOp::kMax) mpi_op = MPI_MAX;
  if (op == ReduceOp::kMin) mpi_op = MPI_MIN;
  const size_t elem = data_type_size(type);
  const bool in_place = send == recv;
  for (size_t off = 0; off < count; off += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, count - off));
    char* r = static_cast<char*>(recv) + off * elem;
    const void* s = in_place ? MPI_IN_PLACE : static_cast<const char*>(send) + off * elem;
    PERIGEE_CHECK_MPI(MPI_Allreduce(s, r, n, to_mpi(type), mpi_op, comm_));
  }
  if (op == ReduceOp::kAvg && size_ > 1) {
    if (type == DataType::kFloat32) {
      const float inv = 1.0f / static_cast<float>(size_);
      float* p = static_cast<float*>(recv);
      for (size_t i = 0; i < count; ++i) p[i] *= inv;
    } else {
      const double inv = 1.0 / static_cast<double>(size_);
      double* p = static_cast<double*>(recv);
      for (size_t i = 0; i < count; ++i) p[i] *= inv;
    }
  }
  return Status::ok();
}

Status MpiCommunicator::broadcast(void* buffer, size_t count, DataType type, int root) {
  PERIGEE_REQUIRE(root >= 0 && root < size_, StatusCode::kInvalidArgument, "broadcast: root ", root,
                  " outside [0, ", size_, ")");
  const size_t elem = data_type_size(type);
  for (size_t off = 0; off < count; off += kMaxChunk) {
    const int n = static_cast<int>(std::min(kMaxChunk, count - off));
    PERIGEE_CHECK_MPI(MPI_Bcast(static_cast<char*>(buffer) + off * elem, n, to_mpi(type), root, comm_));
  }
  return Status::ok();
}

Status MpiCommunicator::all_gather(const void* send, void* recv, size_t count, DataType type) {
  PERIGEE_REQUIRE(count <= static_cast<size_t>(INT_MAX), StatusCode::kInvalidArgument,
                  "all_gather: count ", count, " exceeds INT_MAX per rank");
  PERIGEE_CHECK_MPI(MPI_Allgather(send, static_cast<int>(count), to_mpi(type), recv, static_cast<int>(count),
                                  to_mpi(type), comm_));
  return Status::ok();
}

Status MpiCommunicator::barrier() {
  PERIGEE_CHECK_MPI(MPI_Barrier(comm_));
  return Status::ok();
}

}  // namespace perigee::collectives
