// bfloat16 as 16 raw bits (uint16_t): the top half of an IEEE fp32 (sign, 8 exponent bits, 7
// mantissa bits). The one rounding rule every Perigee layer uses for bf16, on the host and (through
// the same integer function) on the GPU, so that CPU and CUDA conversions give the same bits:
// round to nearest, ties to even; overflow goes to infinity; subnormals are kept; a NaN stays a
// quiet NaN with its sign (the carry of the rounding could otherwise turn a NaN into infinity).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define PERIGEE_HOST_DEVICE __host__ __device__
#else
#define PERIGEE_HOST_DEVICE
#endif

namespace perigee {

// bf16 bits of the fp32 whose bits are u.
PERIGEE_HOST_DEVICE constexpr uint16_t bf16_bits_from_f32_bits(uint32_t u) {
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// fp32 bits of the bf16 whose bits are h (exact).
PERIGEE_HOST_DEVICE constexpr uint32_t f32_bits_from_bf16_bits(uint16_t h) {
  return static_cast<uint32_t>(h) << 16;
}

// Whether the fp32 bits u are a NaN; a scaled widening returns such a NaN as its quiet form
// (u | 0x00400000: sign and payload kept) on every backend, not the hardware's own NaN.
PERIGEE_HOST_DEVICE constexpr bool f32_bits_is_nan(uint32_t u) {
  return (u & 0x7FFFFFFFu) > 0x7F800000u;
}
PERIGEE_HOST_DEVICE constexpr uint32_t quiet_nan_bits(uint32_t u) {
  return u | 0x00400000u;
}

inline uint16_t float_to_bf16(float x) {
  uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  return bf16_bits_from_f32_bits(u);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = f32_bits_from_bf16_bits(h);
  float x = 0.0f;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

}  // namespace perigee
