#include "runtime/comm_setup.hpp"

#include "collectives/cuda_staging.hpp"
#include "collectives/mpi_communicator.hpp"
#include "collectives/nccl_communicator.hpp"
#include "runtime/log.hpp"

namespace perigee::runtime {

Status setup_communicators(const CommConfig& comm, const DeviceSelection& device, MPI_Comm world, CommSetup* out) {
  std::unique_ptr<collectives::MpiCommunicator> mpi;
  PERIGEE_CHECK(collectives::MpiCommunicator::create(world, &mpi));
  out->host = std::move(mpi);
  const bool on_gpu = device.cuda_device >= 0;
  if (!on_gpu) {
    PERIGEE_REQUIRE(comm.backend != "nccl", StatusCode::kInvalidArgument,
                    "[comm] backend = \"nccl\" needs GPU buffers, but the device is the CPU (",
                    device.description, "); use backend = \"mpi\" or \"auto\"");
    out->description = "mpi (host buffers)";
    return Status::ok();
  }
  if (comm.backend == "nccl" || comm.backend == "auto") {
    std::unique_ptr<collectives::NcclCommunicator> nccl;
    Status s = collectives::NcclCommunicator::create(world, device.cuda_device, nullptr, &nccl);
    if (s.is_ok()) {
      out->gradients = std::move(nccl);
      out->description = "nccl (device buffers)";
      return Status::ok();
    }
    // The shared-GPU check answers alike on every rank, so every rank falls back together.
    if (comm.backend == "nccl" || s.code() != StatusCode::kUnavailable) return s;
    log::warn("NCCL unavailable, averaging gradients over MPI with host staging: ", s.message());
  }
  std::unique_ptr<collectives::HostStagingCommunicator> staged;
  PERIGEE_CHECK(collectives::make_cuda_staging_communicator(out->host, nullptr, &staged));
  out->gradients = std::move(staged);
  out->description = "mpi + pinned host staging (device buffers)";
  return Status::ok();
}

}  // namespace perigee::runtime
