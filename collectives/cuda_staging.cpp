#include "collectives/cuda_staging.hpp"

#include <utility>

#include "kernels/cuda/cuda_check.cuh"

namespace perigee::collectives {
namespace {

Status copy_and_wait(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  PERIGEE_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, stream));
  PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace

StagingCallbacks cuda_staging_callbacks(cudaStream_t stream) {
  StagingCallbacks cb;
  cb.alloc_pinned = [](void** p, size_t bytes) -> Status {
    PERIGEE_CHECK_CUDA(cudaMallocHost(p, bytes));
    return Status::ok();
  };
  cb.free_pinned = [](void* p) { (void)cudaFreeHost(p); };
  cb.to_host = [stream](void* host, const void* dev, size_t bytes) -> Status {
    PERIGEE_CHECK(copy_and_wait(host, dev, bytes, cudaMemcpyDeviceToHost, stream));
    return Status::ok();
  };
  cb.to_device = [stream](void* dev, const void* host, size_t bytes) -> Status {
    PERIGEE_CHECK(copy_and_wait(dev, host, bytes, cudaMemcpyHostToDevice, stream));
    return Status::ok();
  };
  cb.follows_producer = stream != nullptr;
  return cb;
}

Status make_cuda_staging_communicator(std::shared_ptr<Communicator> host, cudaStream_t stream,
                                      std::unique_ptr<HostStagingCommunicator>* out, size_t chunk_bytes) {
  PERIGEE_CHECK(
      HostStagingCommunicator::create(std::move(host), cuda_staging_callbacks(stream), out, chunk_bytes));
  return Status::ok();
}

}  // namespace perigee::collectives
