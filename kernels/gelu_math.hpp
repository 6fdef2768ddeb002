// GELU, tanh approximation (GPT-2), one element in fp32, shared by the CPU and CUDA kernels so both
// evaluate the same expression in the same order (each with its own exp: `Exp` is a functor).
//   gelu(x)  = 0.5 x (1 + tanh(u)) = x s,  u = sqrt(2/pi) (x + 0.044715 x^3),  s = sigmoid(2u)
//   gelu'(x) = s + 2 x s (1 - s) du/dx
// Saturation: beyond |x| = kGeluSaturation the gate is 1 or 0 to fp32 precision (1 - s < 2e-38 at
// x = 10), so there the gate and the derivative are taken at the clamped argument and the gate below
// -kGeluSaturation is exactly 0: gelu(x) = x or 0, gelu'(x) = 1 or 0 for every finite or infinite x.
// Without the clamp x^3 overflows from |x| ~ 7e12 and the backward's 0 * inf gave NaN. Inside
// [-kGeluSaturation, kGeluSaturation] the clamp changes nothing; a NaN input stays NaN.
#pragma once

#include "core/bf16.hpp"  // PERIGEE_HOST_DEVICE

namespace perigee::kernels {

inline constexpr float kGeluSqrt2OverPi = 0.7978845608028654f;
inline constexpr float kGeluCubic = 0.044715f;
inline constexpr float kGeluSaturation = 10.0f;

// x clamped to [-kGeluSaturation, kGeluSaturation] by selects (vectorises; NaN passes through).
PERIGEE_HOST_DEVICE inline float gelu_clamp(float x) {
  const float lo = x < -kGeluSaturation ? -kGeluSaturation : x;
  return lo > kGeluSaturation ? kGeluSaturation : lo;
}

// s = sigmoid(2u) at x; 0 below -kGeluSaturation.
template <typename Exp>
PERIGEE_HOST_DEVICE inline float gelu_gate(float x, Exp exp) {
  const float xc = gelu_clamp(x);
  const float u = kGeluSqrt2OverPi * (xc + kGeluCubic * xc * xc * xc);
  const float s = 1.0f / (1.0f + exp(-2.0f * u));
  return x < -kGeluSaturation ? 0.0f : s;
}

template <typename Exp>
PERIGEE_HOST_DEVICE inline float gelu_value(float x, Exp exp) {
  return x < -kGeluSaturation ? 0.0f : x * gelu_gate(x, exp);
}

template <typename Exp>
PERIGEE_HOST_DEVICE inline float gelu_derivative(float x, Exp exp) {
  const float xc = gelu_clamp(x);
  const float s = gelu_gate(x, exp);
  const float du_dx = kGeluSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * xc * xc);
  return s + 2.0f * xc * s * (1.0f - s) * du_dx;
}

}  // namespace perigee::kernels
