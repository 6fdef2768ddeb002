// Device buffers for the collectives' GPU tests: DeviceVector (cudaMalloc'd copy of a host vector,
// on the device when constructed) and LateWrite (a write that a stream performs only after a pause,
// to show that a collective orders itself after the work queued on its producer stream).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace perigee::collectives::test {

template <typename T>
struct DeviceVector {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceVector(const std::vector<T>& host) : n(host.size()) {
    if (cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess) std::abort();
    if (cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) std::abort();
    // A copy from pageable memory may return before its last chunk lands, and the communicators'
    // non-blocking streams do not wait for the legacy stream.
    if (cudaDeviceSynchronize() != cudaSuccess) std::abort();
  }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  ~DeviceVector() { cudaFree(ptr); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    if (cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) std::abort();
    return h;
  }
};

// Queues on `stream`: a host pause of `pause_ms`, then a copy of `values` (from pinned memory) into
// dst. The call returns at once; the data lands only after the pause, so an operation that reads
// dst without waiting for `stream` reads the old contents.
template <typename T>
class LateWrite {
 public:
  LateWrite(cudaStream_t stream, T* dst, const std::vector<T>& values, int pause_ms) : pause_ms_(pause_ms) {
    if (cudaMallocHost(&pinned_, values.size() * sizeof(T)) != cudaSuccess) std::abort();
    std::memcpy(pinned_, values.data(), values.size() * sizeof(T));
    if (cudaLaunchHostFunc(stream, &LateWrite::pause, &pause_ms_) != cudaSuccess) std::abort();
    if (cudaMemcpyAsync(dst, pinned_, values.size() * sizeof(T), cudaMemcpyHostToDevice, stream) !=
        cudaSuccess)
      std::abort();
    stream_ = stream;
  }
  LateWrite(const LateWrite&) = delete;
  LateWrite& operator=(const LateWrite&) = delete;
  ~LateWrite() {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaFreeHost(pinned_);
  }

 private:
  static void CUDART_CB pause(void* ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(ms)));
  }
  int pause_ms_;
  T* pinned_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace perigee::collectives::test
