// Element loads and stores of activation tensors in either storage type (kernels/act.hpp) for device
// code: fp32 as is, bf16 as raw uint16_t bits widened exactly on load and rounded on store with the
// integer rule of core/bf16.hpp (nearest, ties to even, NaN kept), the bits the CPU backend stores.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/bf16.hpp"

namespace perigee::kernels::cuda {

__device__ __forceinline__ float load_act(const float* p, size_t i) {
  return p[i];
}
__device__ __forceinline__ float load_act(const uint16_t* p, size_t i) {
  return __uint_as_float(f32_bits_from_bf16_bits(p[i]));
}

__device__ __forceinline__ void store_act(float* p, size_t i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void store_act(uint16_t* p, size_t i, float v) {
  p[i] = bf16_bits_from_f32_bits(__float_as_uint(v));
}

// Elements i .. i + 3 in one load: 16 bytes (fp32) or 8 bytes (bf16); p + i aligned to that size.
__device__ __forceinline__ float4 load_act4(const float* p, size_t i) {
  return *reinterpret_cast<const float4*>(p + i);
}
__device__ __forceinline__ float4 load_act4(const uint16_t* p, size_t i) {
  const uint2 q = *reinterpret_cast<const uint2*>(p + i);
  auto w = [](uint32_t bits) { return __uint_as_float(bits); };  // bf16 in the high half: exact
  return make_float4(w(q.x << 16), w(q.x & 0xFFFF0000u), w(q.y << 16), w(q.y & 0xFFFF0000u));
}

// Elements i .. i + 3 in one store: 16 bytes (fp32) or 8 bytes (bf16); p + i aligned to that size.
__device__ __forceinline__ void store_act4(float* p, size_t i, float4 v) {
  *reinterpret_cast<float4*>(p + i) = v;
}
__device__ __forceinline__ void store_act4(uint16_t* p, size_t i, float4 v) {
  auto b = [](float x) { return static_cast<uint32_t>(bf16_bits_from_f32_bits(__float_as_uint(x))); };
  *reinterpret_cast<uint2*>(p + i) = make_uint2(b(v.x) | b(v.y) << 16, b(v.z) | b(v.w) << 16);
}

}  // namespace perigee::kernels::cuda
