// MpiCommunicator: Communicator over an MPI communicator (a private duplicate of the one given),
// host buffers. MPI errors come back as Status (MPI_ERRORS_RETURN is set on the duplicate).
#pragma once

#include <mpi.h>

#include <memory>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

// MPI member of the PERIGEE_CHECK family.
Status mpi_status(int err, const char* what);
#define PERIGEE_CHECK_MPI(call) PERIGEE_CHECK(::perigee::collectives::mpi_status((call), #call))

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `base` (MPI must be initialised).
  static Status create(MPI_Comm base, std::unique_ptr<MpiCommunicator>* out);
  ~MpiCommunicator() override;

  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  Status all_reduce(const void* send, void* recv, size_t count, DataType type, ReduceOp op) override;
  Status broadcast(void* buffer, size_t count, DataType type, int root) override;
  Status all_gather(const void* send, void* recv, size_t count, DataType type) override;
  Status barrier() override;

 private:
  MpiCommunicator() = default;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace perigee::collectives
