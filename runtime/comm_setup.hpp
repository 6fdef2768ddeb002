// Communicator setup: which Communicator averages the gradients, from [comm] backend and the
// selected device. Host buffers (scalars, the initial parameter broadcast) always go over MPI.
//   CPU backend:  mpi (nccl is an error: it needs GPU buffers; auto = mpi).
//   CUDA backend: nccl = NcclCommunicator on device buffers; mpi = MPI behind pinned host staging;
//                 auto = nccl, or mpi + staging when NCCL cannot run (e.g. ranks sharing a GPU).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "collectives/communicator.hpp"
#include "core/status.hpp"
#include "runtime/config.hpp"
#include "runtime/device.hpp"

namespace perigee::runtime {

struct CommSetup {
  std::shared_ptr<collectives::Communicator> host;       // MPI over MPI_COMM_WORLD (dup)
  std::unique_ptr<collectives::Communicator> gradients;  // null: use host
  std::string description;                               // one line for the log

  collectives::Communicator& gradient_comm() { return gradients ? *gradients : *host; }
  // Communicator::close() of the gradient communicator (the host one is MPI's): at the end of a job,
  // on every rank, so that a teardown that fails (NCCL's finalize with a lost peer) is reported.
  Status close() { return gradients ? gradients->close() : Status::ok(); }
};

// Collective over `world`: every rank must call it with the same config.
// links: used when comm.backend == "links" (emulated laser links, runtime/links_setup.hpp).
Status setup_communicators(const CommConfig& comm, const LinksConfig& links, const DeviceSelection& device,
                           MPI_Comm world, CommSetup* out);

}  // namespace perigee::runtime
