// CudaEventTimer: cudaEvent pairs per op, resolved after a synchronize (see event_timer.cuh).
#include "kernels/cuda/event_timer.cuh"

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/cuda_check.cuh"

namespace perigee::kernels::cuda {

CudaEventTimer::~CudaEventTimer() {
  for (Pending& p : pending_) pool_.push_back(p.events);
  for (Pair& p : pool_) {
    if (p.start != nullptr) cudaEventDestroy(p.start);
    if (p.stop != nullptr) cudaEventDestroy(p.stop);
  }
}

Status CudaEventTimer::take(Pair* out) {
  if (!pool_.empty()) {
    *out = pool_.back();
    pool_.pop_back();
    return Status::ok();
  }
  Pair p;
  PERIGEE_CHECK_CUDA(cudaEventCreate(&p.start));
  const cudaError_t err = cudaEventCreate(&p.stop);
  if (err != cudaSuccess) cudaEventDestroy(p.start);
  PERIGEE_CHECK_CUDA(err);
  *out = p;
  return Status::ok();
}

Status CudaEventTimer::begin(int slot) {
  PERIGEE_REQUIRE(pending_.empty() || pending_.back().closed, StatusCode::kInternal, "CudaEventTimer: begin(",
                  slot, ") inside an open op");
  Pending p;
  p.slot = slot;
  PERIGEE_CHECK(take(&p.events));
  const cudaError_t err = cudaEventRecord(p.events.start, stream_);
  if (err != cudaSuccess) pool_.push_back(p.events);
  PERIGEE_CHECK_CUDA(err);
  pending_.push_back(p);
  return Status::ok();
}

Status CudaEventTimer::end(int slot) {
  PERIGEE_REQUIRE(!pending_.empty() && !pending_.back().closed && pending_.back().slot == slot,
                  StatusCode::kInternal, "CudaEventTimer: end(", slot, ") without begin");
  Pending& p = pending_.back();
  p.closed = true;
  const cudaError_t err = cudaEventRecord(p.events.stop, stream_);
  if (err != cudaSuccess) {  // drop the half-recorded pair
    pool_.push_back(p.events);
    pending_.pop_back();
  }
  PERIGEE_CHECK_CUDA(err);
  return Status::ok();
}

Status CudaEventTimer::resolve(const Sink& sink) {
  cudaError_t first = cudaSuccess;
  std::vector<Pending> open;
  for (Pending& p : pending_) {
    if (!p.closed) {  // an op still running between begin and end (not expected): keep it
      open.push_back(p);
      continue;
    }
    float ms = 0.0f;
    cudaError_t err = cudaEventSynchronize(p.events.stop);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, p.events.start, p.events.stop);
    if (err == cudaSuccess) {
      sink(p.slot, static_cast<double>(ms));
    } else if (first == cudaSuccess) {
      first = err;
    }
    pool_.push_back(p.events);
  }
  pending_ = std::move(open);
  PERIGEE_CHECK(cuda_status(first, "CudaEventTimer::resolve (cudaEventSynchronize / cudaEventElapsedTime)"));
  return Status::ok();
}

Status make_cuda_event_timer(Backend* backend, std::unique_ptr<OpTimer>* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "make_cuda_event_timer: null output pointer");
  auto* cuda = dynamic_cast<CudaBackend*>(backend);
  PERIGEE_REQUIRE(cuda != nullptr, StatusCode::kInvalidArgument, "make_cuda_event_timer: backend '",
                  backend != nullptr ? backend->name() : "null", "' is not a CudaBackend");
  PERIGEE_CHECK_CUDA(cudaSetDevice(cuda->device()));
  *out = std::make_unique<CudaEventTimer>(cuda->stream());
  return Status::ok();
}

Status device_memory_used(size_t* used_bytes, size_t* total_bytes) {
  size_t free_bytes = 0, total = 0;
  PERIGEE_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total));
  if (used_bytes != nullptr) *used_bytes = total - free_bytes;
  if (total_bytes != nullptr) *total_bytes = total;
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
