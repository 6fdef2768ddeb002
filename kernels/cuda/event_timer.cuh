// CudaEventTimer: an OpTimer (kernels/profiling_backend.hpp) for the CUDA backend. begin/end record a
// cudaEvent pair on the backend's stream around each op (nothing waits); resolve, called after the
// stream was synchronized, reads every pair's elapsed time and returns the events to a pool. The time
// of an op is from the moment the stream reaches its start event to its end event: when the host
// launches more slowly than the GPU runs, the gap before the op's first kernel is counted in the op.
// Also: the device memory in use (cudaMemGetInfo), for peak-memory reports.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "core/status.hpp"
#include "kernels/backend.hpp"
#include "kernels/profiling_backend.hpp"

namespace perigee::kernels::cuda {

class CudaEventTimer final : public OpTimer {
 public:
  // Events are created on the current device; `stream` must belong to it.
  explicit CudaEventTimer(cudaStream_t stream) : stream_(stream) {}
  ~CudaEventTimer() override;
  CudaEventTimer(const CudaEventTimer&) = delete;
  CudaEventTimer& operator=(const CudaEventTimer&) = delete;

  const char* name() const override { return "cudaEvent pairs"; }
  Status begin(int slot) override;
  Status end(int slot) override;
  Status resolve(const Sink& sink) override;
  size_t pool_size() const { return pool_.size(); }

 private:
  struct Pair {
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
  };
  struct Pending {
    int slot = -1;
    Pair events;
    bool closed = false;
  };
  Status take(Pair* out);

  cudaStream_t stream_;
  std::vector<Pair> pool_;
  std::vector<Pending> pending_;
};

// A CudaEventTimer on the stream of `backend`, which must be a CudaBackend (kInvalidArgument if not).
Status make_cuda_event_timer(Backend* backend, std::unique_ptr<OpTimer>* out);

// Device memory in use on the current device now (total - free, so it includes the CUDA context and
// every library's allocations), and the total.
Status device_memory_used(size_t* used_bytes, size_t* total_bytes);

}  // namespace perigee::kernels::cuda
