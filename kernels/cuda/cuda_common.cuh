// Shared pieces of the CUDA backend's kernel families: argument checks (the same rules as the CPU
// backend), launch-shape helpers, fixed-order warp and block reductions (every run adds in the same
// order, so results are bit-reproducible), and DeviceScratch, the grow-on-demand device buffer that
// ops needing temporary memory (partial sums, sort buffers) carve up.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "core/status.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/op_checks.hpp"

namespace perigee::kernels::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr size_t kScratchAlignment = 256;   // bytes, of every carved scratch piece
inline constexpr unsigned kMaxFlatBlocks = 32768;  // grid cap of grid-stride elementwise kernels

// ---- host helpers

// For a >= 0, b > 0; no intermediate exceeds a (a + b - 1 would overflow an int near INT_MAX).
template <typename T>
constexpr T ceil_div(T a, T b) {
  return a / b + (a % b != 0 ? 1 : 0);
}
static_assert(ceil_div(0, 4) == 0 && ceil_div(1, 4) == 1 && ceil_div(8, 4) == 2 && ceil_div(9, 4) == 3);
static_assert(ceil_div(2147483647, 2) == 1073741824);

// Blocks for a grid-stride loop over n elements with `block` threads per block.
inline unsigned flat_grid(size_t n, int block) {
  const size_t blocks = ceil_div(n, static_cast<size_t>(block));
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(blocks, kMaxFlatBlocks)));
}

using kernels::check_dims;  // kernels/op_checks.hpp
using kernels::check_pointers;

// Raises the dynamic shared-memory limit of `kernel` to `bytes` (above the default 48 KiB). Per launch
// (a few microseconds of host time): the attribute belongs to the current device.
template <typename Kernel>
Status allow_shared_memory(Kernel kernel, size_t bytes) {
  PERIGEE_CHECK_CUDA(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return Status::ok();
}

// Bytes of `count` values of T rounded up to the scratch alignment.
template <typename T>
constexpr size_t scratch_bytes(size_t count) {
  return ceil_div(count * sizeof(T), kScratchAlignment) * kScratchAlignment;
}

// Hands out consecutive aligned pieces of one scratch buffer (sized with scratch_bytes beforehand).
class ScratchCarver {
 public:
  explicit ScratchCarver(void* base) : cursor_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(cursor_);
    cursor_ += scratch_bytes<T>(count);
    return p;
  }

 private:
  char* cursor_;
};

// A device buffer reused by every op of one backend (all of them run on one stream, so stream order
// keeps uses apart). Growing first waits for the stream, so no queued kernel still reads the old one.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch() {
    if (data_ != nullptr) cudaFree(data_);
  }

  // *out = a buffer of at least `bytes` bytes (valid until the next call).
  Status get(size_t bytes, cudaStream_t stream, void** out) {
    largest_request_ = std::max(largest_request_, bytes);
    if (bytes > size_) PERIGEE_CHECK(grow_to(std::max(bytes, size_ * 2), stream));
    *out = data_;
    return Status::ok();
  }
  // Grows to exactly `bytes` now, so that requests up to it never allocate (a reservation is not
  // counted as a request).
  Status reserve(size_t bytes, cudaStream_t stream) {
    if (bytes > size_) PERIGEE_CHECK(grow_to(bytes, stream));
    return Status::ok();
  }
  size_t capacity() const { return size_; }
  size_t largest_request() const { return largest_request_; }

 private:
  Status grow_to(size_t bytes, cudaStream_t stream) {
    PERIGEE_CHECK_CUDA(cudaStreamSynchronize(stream));
    if (data_ != nullptr) PERIGEE_CHECK_CUDA(cudaFree(data_));
    data_ = nullptr;
    size_ = 0;
    const cudaError_t err = cudaMalloc(&data_, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      data_ = nullptr;
      return make_error(StatusCode::kOutOfMemory, "scratch: cannot allocate ", bytes,
                        " bytes of device memory");
    }
    PERIGEE_CHECK_CUDA(err);
    size_ = bytes;
    return Status::ok();
  }

  void* data_ = nullptr;
  size_t size_ = 0;
  size_t largest_request_ = 0;  // the most any op has asked for
};

// ---- device helpers (fixed-order reductions)

#if defined(__CUDACC__)

// Butterfly sum over the `width` lanes of each aligned lane group. a + b == b + a exactly, so every
// lane of a group ends with the same bits, and the order never depends on timing.
template <typename T, int kWidth = kWarpSize>
__device__ __forceinline__ T group_sum(T v) {
#pragma unroll
  for (int offset = kWidth / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

template <int kWidth = kWarpSize>
__device__ __forceinline__ float group_max(float v) {
#pragma unroll
  for (int offset = kWidth / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over a block of kBlock threads (a multiple of 32, blockDim.x == kBlock); every thread returns the
// same total: warp butterflies, then the warp totals added in warp order. `shared` holds kBlock / 32
// values and may be reused by the next call.
template <int kBlock, typename T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  static_assert(kBlock % kWarpSize == 0, "block size must be a multiple of the warp size");
  v = group_sum(v);
  __syncthreads();  // the previous use of `shared` is finished
  if (threadIdx.x % kWarpSize == 0) shared[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  T total = shared[0];
#pragma unroll
  for (int w = 1; w < kBlock / kWarpSize; ++w) total += shared[w];
  return total;
}

template <int kBlock>
__device__ __forceinline__ float block_max(float v, float* shared) {
  static_assert(kBlock % kWarpSize == 0, "block size must be a multiple of the warp size");
  v = group_max(v);
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) shared[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float total = shared[0];
#pragma unroll
  for (int w = 1; w < kBlock / kWarpSize; ++w) total = fmaxf(total, shared[w]);
  return total;
}

#endif  // __CUDACC__

}  // namespace perigee::kernels::cuda
