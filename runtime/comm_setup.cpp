#include "runtime/comm_setup.hpp"

#include "collectives/cuda_staging.hpp"
#include "collectives/mpi_communicator.hpp"
#include "collectives/nccl_communicator.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "runtime/links_setup.hpp"
#include "runtime/log.hpp"

namespace perigee::runtime {

Status setup_communicators(const CommConfig& comm, const LinksConfig& links, const DeviceSelection& device,
                           MPI_Comm world, CommSetup* out) {
  // Host collectives (and the gradients on the CPU or behind host staging) carry the [comm]
  // timeout: a dead or stopped peer makes them fail instead of blocking forever.
  std::unique_ptr<collectives::MpiCommunicator> mpi;
  PERIGEE_CHECK(collectives::MpiCommunicator::create(world, &mpi, comm.timeout_s));
  out->host = std::move(mpi);
  const bool on_gpu = device.cuda_device >= 0;
  // Collectives over the backend's buffers are ordered after its stream's queued work (the
  // trainer then need not wait for the stream before starting a gradient bucket).
  cudaStream_t producer = nullptr;
  if (on_gpu) {
    void* stream = nullptr;
    PERIGEE_CHECK(kernels::cuda::cuda_stream_of(*device.backend, &stream));
    producer = static_cast<cudaStream_t>(stream);
  }
  if (comm.backend == "links") {
    std::unique_ptr<collectives::EmulatedLinkCommunicator> emulated;
    std::string description;
    PERIGEE_CHECK(make_links_communicator(comm, links, world, &emulated, &description));
    if (!on_gpu) {
      out->gradients = std::move(emulated);
      out->description = description;
      return Status::ok();
    }
    // Device buffers go through pinned host staging, then over the emulated links.
    std::shared_ptr<collectives::Communicator> inner(std::move(emulated));
    std::unique_ptr<collectives::HostStagingCommunicator> staged;
    PERIGEE_CHECK(collectives::make_cuda_staging_communicator(inner, producer, &staged));
    out->gradients = std::move(staged);
    out->description = description + " + pinned host staging";
    return Status::ok();
  }
  if (!on_gpu) {
    PERIGEE_REQUIRE(comm.backend != "nccl", StatusCode::kInvalidArgument,
                    "[comm] backend = \"nccl\" needs GPU buffers, but the device is the CPU (",
                    device.description, "); use backend = \"mpi\" or \"auto\"");
    out->description = str_cat("mpi (host buffers; collectives time out after ", comm.timeout_s, " s)");
    return Status::ok();
  }
  if (comm.backend == "nccl" || comm.backend == "auto") {
    std::unique_ptr<collectives::NcclCommunicator> nccl;
    Status s = collectives::NcclCommunicator::create(world, device.cuda_device, nullptr, &nccl,
                                                     /*async=*/false, comm.timeout_s);
    if (s.is_ok()) s = nccl->set_producer_stream(producer);
    if (s.is_ok()) {
      out->gradients = std::move(nccl);
      // A collective still running after timeout_s aborts the NCCL communicator and fails the
      // step (a dead or stopped peer); perigee-run's stall watchdog remains the outer guard.
      out->description =
          str_cat("nccl (device buffers; collectives abort after ", comm.timeout_s, " s without progress)");
      return Status::ok();
    }
    // The shared-GPU check answers alike on every rank, so every rank falls back together.
    if (comm.backend == "nccl" || s.code() != StatusCode::kUnavailable) return s;
    log::warn("NCCL unavailable, averaging gradients over MPI with host staging: ", s.message());
  }
  std::unique_ptr<collectives::HostStagingCommunicator> staged;
  PERIGEE_CHECK(collectives::make_cuda_staging_communicator(out->host, producer, &staged));
  out->gradients = std::move(staged);
  out->description = str_cat("mpi + pinned host staging (device buffers; collectives time out after ",
                             comm.timeout_s, " s)");
  return Status::ok();
}

}  // namespace perigee::runtime
