// CUDA callbacks for HostStagingCommunicator: pinned staging memory from cudaMallocHost and copies
// with cudaMemcpyAsync on one stream followed by cudaStreamSynchronize, so a copy is complete (and
// ordered after the work already queued on that stream) when the callback returns.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "collectives/staging_communicator.hpp"

namespace perigee::collectives {

// `stream` 0 is the legacy default stream, which also waits for work on every blocking stream of
// the device (but not on non-blocking ones, such as the CUDA backend's); the caller then makes the
// buffers' producers finish first. Pass the stream that produced the buffers (the backend's,
// kernels::cuda::cuda_stream_of) to have every copy ordered after its queued work:
// follows_producer is then set. The copies run on the stream's device (with stream 0: on the device
// current at each call).
StagingCallbacks cuda_staging_callbacks(cudaStream_t stream = nullptr);

// A HostStagingCommunicator over `host` (e.g. an MpiCommunicator) with cuda_staging_callbacks(stream).
Status make_cuda_staging_communicator(std::shared_ptr<Communicator> host, cudaStream_t stream,
                                      std::unique_ptr<HostStagingCommunicator>* out,
                                      size_t chunk_bytes = kDefaultStagingChunkBytes);

}  // namespace perigee::collectives
