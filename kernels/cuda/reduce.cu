// Sum of squares (double, fixed order) and scaling, fp32 buffers (see reduce.cuh).
#include "kernels/cuda/reduce.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kFinalBlock = 1024;
constexpr int kScaleBlock = 256;

// ---- CUDA kernels

// partial[chunk] = sum of squares of x[chunk * kSumSquaresChunk, ...) (kSumSquaresBlock threads).
__global__ void __launch_bounds__(kSumSquaresBlock)
    sum_squares_partial_kernel(double* partial, const float* x, size_t n) {
  __shared__ double shared[kSumSquaresBlock / kWarpSize];
  const size_t begin = blockIdx.x * kSumSquaresChunk;
  const size_t end = min(n, begin + kSumSquaresChunk);
  double acc = 0.0;
  for (size_t i = begin + threadIdx.x; i < end; i += kSumSquaresBlock) {
    const double xi = x[i];
    acc += xi * xi;  // exact: a float squared fits in a double
  }
  acc = block_sum<kSumSquaresBlock>(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// *result = sum of partial[0..count) (kFinalBlock threads, one block).
__global__ void __launch_bounds__(kFinalBlock)
    sum_partials_kernel(double* result, const double* partial, size_t count) {
  __shared__ double shared[kFinalBlock / kWarpSize];
  double acc = 0.0;
  for (size_t i = threadIdx.x; i < count; i += kFinalBlock) acc += partial[i];
  acc = block_sum<kFinalBlock>(acc, shared);
  if (threadIdx.x == 0) *result = acc;
}

__global__ void scale_kernel(float* x, float s, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    x[i] *= s;
  }
}

}  // namespace

// ---- kernel launchers

size_t sum_squares_scratch_bytes(size_t n) {
  return scratch_bytes<double>(ceil_div(n, kSumSquaresChunk));
}

Status sum_squares(const float* x, size_t n, double* result, DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("sum_squares", {result}));
  if (n == 0) {
    PERIGEE_CHECK_CUDA(cudaMemsetAsync(result, 0, sizeof(double), stream));
    return Status::ok();
  }
  PERIGEE_CHECK(check_pointers("sum_squares", {x}));
  const size_t chunks = ceil_div(n, kSumSquaresChunk);
  PERIGEE_REQUIRE(chunks <= 0x7fffffffu, StatusCode::kInvalidArgument, "sum_squares: n = ", n,
                  " is too large");
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(sum_squares_scratch_bytes(n), stream, &base));
  double* partial = static_cast<double*>(base);
  sum_squares_partial_kernel<<<static_cast<unsigned>(chunks), kSumSquaresBlock, 0, stream>>>(partial, x, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  sum_partials_kernel<<<1, kFinalBlock, 0, stream>>>(result, partial, chunks);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

Status scale(float* x, float s, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("scale", {x}));
  scale_kernel<<<flat_grid(n, kScaleBlock), kScaleBlock, 0, stream>>>(x, s, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
