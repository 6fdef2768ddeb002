// bf16 conversion of flat buffers (see convert.cuh).
#include "core/bf16.hpp"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_common.cuh"

namespace perigee::kernels::cuda {
namespace {

constexpr int kConvertBlock = 256;

__device__ __forceinline__ uint16_t round_bf16(float x) {
  return bf16_bits_from_f32_bits(__float_as_uint(x));
}

// A NaN comes back quieted with its sign and payload (core/bf16.hpp), as on the CPU backend: the GPU's
// multiply would return its canonical NaN 0x7FFFFFFF instead.
__device__ __forceinline__ float widen_bf16(uint16_t h, float s) {
  const uint32_t bits = f32_bits_from_bf16_bits(h);
  if (f32_bits_is_nan(bits)) return __uint_as_float(quiet_nan_bits(bits));
  return __fmul_rn(__uint_as_float(bits), s);
}

// ---- CUDA kernels

// Elements [0, n) one by one (any alignment).
__global__ void to_bf16_kernel(uint16_t* out, const float* in, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = round_bf16(in[i]);
  }
}

// Groups of four: in 16-byte aligned, out 8-byte aligned; n4 = n / 4 groups.
__global__ void to_bf16_vec_kernel(uint2* out, const float4* in, size_t n4) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 v = in[i];
    uint2 r;
    r.x = static_cast<uint32_t>(round_bf16(v.x)) | (static_cast<uint32_t>(round_bf16(v.y)) << 16);
    r.y = static_cast<uint32_t>(round_bf16(v.z)) | (static_cast<uint32_t>(round_bf16(v.w)) << 16);
    out[i] = r;
  }
}

__global__ void from_bf16_kernel(float* out, const uint16_t* in, float s, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = widen_bf16(in[i], s);
  }
}

// Groups of four: in 8-byte aligned, out 16-byte aligned.
__global__ void from_bf16_vec_kernel(float4* out, const uint2* in, float s, size_t n4) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint2 v = in[i];
    out[i] = make_float4(
        widen_bf16(static_cast<uint16_t>(v.x & 0xFFFFu), s), widen_bf16(static_cast<uint16_t>(v.x >> 16), s),
        widen_bf16(static_cast<uint16_t>(v.y & 0xFFFFu), s), widen_bf16(static_cast<uint16_t>(v.y >> 16), s));
  }
}

// x[i] = bf16(float(x[i]) * s) in place, one by one (any alignment).
__global__ void scale_bf16_kernel(uint16_t* x, float s, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    x[i] = round_bf16(widen_bf16(x[i], s));
  }
}

// Groups of four: x 8-byte aligned.
__global__ void scale_bf16_vec_kernel(uint2* x, float s, size_t n4) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint2 v = x[i];
    uint2 r;
    r.x = static_cast<uint32_t>(round_bf16(widen_bf16(static_cast<uint16_t>(v.x & 0xFFFFu), s))) |
          (static_cast<uint32_t>(round_bf16(widen_bf16(static_cast<uint16_t>(v.x >> 16), s))) << 16);
    r.y = static_cast<uint32_t>(round_bf16(widen_bf16(static_cast<uint16_t>(v.y & 0xFFFFu), s))) |
          (static_cast<uint32_t>(round_bf16(widen_bf16(static_cast<uint16_t>(v.y >> 16), s))) << 16);
    x[i] = r;
  }
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

// ---- kernel launchers

Status to_bf16(uint16_t* out, const float* in, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("to_bf16", {out, in}));
  size_t done = 0;
  if (aligned(in, 16) && aligned(out, 8) && n >= 4) {
    const size_t n4 = n / 4;
    to_bf16_vec_kernel<<<flat_grid(n4, kConvertBlock), kConvertBlock, 0, stream>>>(
        reinterpret_cast<uint2*>(out), reinterpret_cast<const float4*>(in), n4);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    done = n4 * 4;
  }
  if (done < n) {
    to_bf16_kernel<<<flat_grid(n - done, kConvertBlock), kConvertBlock, 0, stream>>>(out + done, in + done,
                                                                                     n - done);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  return Status::ok();
}

Status from_bf16(float* out, const uint16_t* in, float s, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("from_bf16", {out, in}));
  size_t done = 0;
  if (aligned(in, 8) && aligned(out, 16) && n >= 4) {
    const size_t n4 = n / 4;
    from_bf16_vec_kernel<<<flat_grid(n4, kConvertBlock), kConvertBlock, 0, stream>>>(
        reinterpret_cast<float4*>(out), reinterpret_cast<const uint2*>(in), s, n4);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    done = n4 * 4;
  }
  if (done < n) {
    from_bf16_kernel<<<flat_grid(n - done, kConvertBlock), kConvertBlock, 0, stream>>>(out + done, in + done,
                                                                                       s, n - done);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  return Status::ok();
}

Status scale_bf16(uint16_t* x, float s, size_t n, cudaStream_t stream) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("scale_bf16", {x}));
  size_t done = 0;
  if (aligned(x, 8) && n >= 4) {
    const size_t n4 = n / 4;
    scale_bf16_vec_kernel<<<flat_grid(n4, kConvertBlock), kConvertBlock, 0, stream>>>(
        reinterpret_cast<uint2*>(x), s, n4);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
    done = n4 * 4;
  }
  if (done < n) {
    scale_bf16_kernel<<<flat_grid(n - done, kConvertBlock), kConvertBlock, 0, stream>>>(x + done, s,
                                                                                        n - done);
    PERIGEE_CHECK_CUDA(cudaGetLastError());
  }
  return Status::ok();
}

}  // namespace perigee::kernels::cuda
