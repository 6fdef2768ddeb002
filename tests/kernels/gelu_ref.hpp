// GELU (tanh approximation, GPT-2) and its derivative in double: the host reference of the GELU tests.
#pragma once

#include <cmath>

namespace perigee::kernels::testing {

inline double gelu_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

inline double gelu_grad_ref(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  const double t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

}  // namespace perigee::kernels::testing
