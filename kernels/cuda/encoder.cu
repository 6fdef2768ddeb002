// Token + position embedding, fp32 (see encoder.cuh for layouts and the deterministic backward).
#include "kernels/cuda/encoder.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <cmath>

namespace perigee::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kChannelBlock = 128;  // channels per block of the dwte kernel

// ---- CUDA kernels

__global__ void encoder_forward_kernel(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                                       int T, int C, int V) {
  const int64_t row = blockIdx.x;  // b * T + t
  const int t = static_cast<int>(row % T);
  const int32_t token = tokens[row];
  const float* w = wte + static_cast<int64_t>(token) * C;
  const float* p = wpe + static_cast<int64_t>(t) * C;
  float* o = out + row * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = token >= 0 && token < V ? w[c] + p[c] : NAN;
}

// dwpe[t, c] += dout[b, t, c] for b = 0 .. B-1 in order.
__global__ void encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const int64_t n = static_cast<int64_t>(T) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = dwpe[i];
    for (int b = 0; b < B; ++b) acc += dout[static_cast<int64_t>(b) * n + i];
    dwpe[i] = acc;
  }
}

__global__ void iota_kernel(int32_t* out, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = i;
}

// Block x = sorted position i. Only the first position of each run of equal tokens works: the block
// finds the run's end, then each thread adds the run's dout rows (ascending positions, as the sort is
// stable) for its channels. blockIdx.y picks a range of kChannelBlock channels.
__global__ void encoder_backward_wte_kernel(float* dwte, const float* dout, const int32_t* sorted_tokens,
                                            const int32_t* sorted_rows, int n, int C, int V) {
  const int start = blockIdx.x;
  const int32_t token = sorted_tokens[start];
  if (token < 0 || token >= V || (start > 0 && sorted_tokens[start - 1] == token)) return;  // whole block
  int end = start;
  for (;;) {
    const int j = end + static_cast<int>(threadIdx.x);
    const int same = __syncthreads_count(j < n && sorted_tokens[j] == token);  // a prefix of the chunk
    end += same;
    if (same < static_cast<int>(blockDim.x)) break;
  }
  const int c = blockIdx.y * kChannelBlock + threadIdx.x;
  if (c >= C) return;
  float* g = dwte + static_cast<int64_t>(token) * C + c;
  float acc = *g;
#pragma unroll 4
  for (int j = start; j < end; ++j) acc += dout[static_cast<int64_t>(sorted_rows[j]) * C + c];
  *g = acc;
}

}  // namespace

// ---- kernel launchers

Status encoder_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                       int C, int V, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("encoder_forward", {out, tokens, wte, wpe}));
  PERIGEE_CHECK(check_dims("encoder_forward", {B, T, C, V}));
  const int64_t rows64 = static_cast<int64_t>(B) * T;
  PERIGEE_REQUIRE(rows64 <= INT32_MAX, StatusCode::kInvalidArgument, "encoder_forward: B*T = ", rows64,
                  " rows exceed the grid (at most ", INT32_MAX, ")");
  const unsigned rows = static_cast<unsigned>(rows64);
  const int block = std::min(kBlock, ceil_div(C, kWarpSize) * kWarpSize);
  encoder_forward_kernel<<<rows, block, 0, stream>>>(out, tokens, wte, wpe, T, C, V);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

namespace {

// The backward's scratch for n rows: three int arrays, then CUB's temporary storage for a radix
// sort of n (token, position) pairs (*sort_bytes of it).
Status backward_scratch(int n, size_t* sort_bytes, size_t* total) {
  *sort_bytes = 0;
  PERIGEE_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(
      nullptr, *sort_bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0, 32));
  *total = 3 * scratch_bytes<int32_t>(static_cast<size_t>(n)) + scratch_bytes<char>(*sort_bytes);
  return Status::ok();
}

}  // namespace

Status encoder_backward_scratch_bytes(int B, int T, size_t* bytes) {
  *bytes = 0;
  PERIGEE_CHECK(check_dims("encoder_backward", {B, T}));
  const int64_t rows64 = static_cast<int64_t>(B) * T;
  PERIGEE_REQUIRE(rows64 <= INT32_MAX / 2, StatusCode::kInvalidArgument, "encoder_backward: B*T = ", rows64,
                  " is too large");
  size_t sort_bytes = 0;
  return backward_scratch(static_cast<int>(rows64), &sort_bytes, bytes);
}

Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                        int C, int V, DeviceScratch& scratch, cudaStream_t stream) {
  PERIGEE_CHECK(check_pointers("encoder_backward", {dwte, dwpe, dout, tokens}));
  PERIGEE_CHECK(check_dims("encoder_backward", {B, T, C, V}));
  const int64_t rows64 = static_cast<int64_t>(B) * T;
  PERIGEE_REQUIRE(rows64 <= INT32_MAX / 2, StatusCode::kInvalidArgument, "encoder_backward: B*T = ", rows64,
                  " is too large");
  const int n = static_cast<int>(rows64);

  encoder_backward_wpe_kernel<<<flat_grid(static_cast<size_t>(T) * C, kBlock), kBlock, 0, stream>>>(
      dwpe, dout, B, T, C);
  PERIGEE_CHECK_CUDA(cudaGetLastError());

  // Stable sort of (token, position) pairs by token.
  size_t sort_bytes = 0, bytes = 0;
  PERIGEE_CHECK(backward_scratch(n, &sort_bytes, &bytes));
  void* base = nullptr;
  PERIGEE_CHECK(scratch.get(bytes, stream, &base));
  ScratchCarver carve(base);
  int32_t* positions = carve.take<int32_t>(n);
  int32_t* sorted_tokens = carve.take<int32_t>(n);
  int32_t* sorted_rows = carve.take<int32_t>(n);
  void* sort_tmp = carve.take<char>(sort_bytes);

  iota_kernel<<<flat_grid(n, kBlock), kBlock, 0, stream>>>(positions, n);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  PERIGEE_CHECK_CUDA(cub::DeviceRadixSort::SortPairs(sort_tmp, sort_bytes, tokens, sorted_tokens, positions,
                                                     sorted_rows, n, 0, 32, stream));
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(ceil_div(C, kChannelBlock)));
  encoder_backward_wte_kernel<<<grid, kChannelBlock, 0, stream>>>(dwte, dout, sorted_tokens, sorted_rows, n,
                                                                  C, V);
  PERIGEE_CHECK_CUDA(cudaGetLastError());
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
