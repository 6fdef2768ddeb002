// GELU far out (kernels/gelu_math.hpp): above 10 the forward returns x and the backward dout exactly,
// below -10 both return 0, up to the largest floats and infinities (x^3 overflowing once made the
// GPU's backward NaN from |x| ~ 2e19 and the CPU's backward -1.3 dout at x = -1e13); a NaN input
// stays NaN; values inside the range still follow the formula. Shared by the CPU and CUDA tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/backend.hpp"
#include "tests/kernels/gelu_ref.hpp"

namespace perigee::kernels::testing {

inline void expect_gelu_saturates(Backend& be) {
  const float inf = std::numeric_limits<float>::infinity();
  const float big = std::numeric_limits<float>::max();
  const std::vector<float> x = {
      10.5f,  11.0f,  100.0f, 1e6f,   7e12f,  1e13f,   2e19f,
      1e30f,  big,    inf,    -10.5f, -11.0f, -100.0f, -1e6f,
      -7e12f, -1e13f, -2e19f, -1e30f, -big,   -inf,    std::numeric_limits<float>::quiet_NaN(),
      3.0f,   -3.0f};
  const size_t n = x.size();
  std::vector<float> dout(n);
  for (size_t i = 0; i < n; ++i) dout[i] = 0.25f + 0.5f * static_cast<float>(i);

  void *in = nullptr, *d = nullptr, *out = nullptr, *dx = nullptr;
  for (void** p : {&in, &d, &out, &dx}) ASSERT_TRUE(be.allocate(p, n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.copy_to_device(in, x.data(), n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.copy_to_device(d, dout.data(), n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.gelu_forward(static_cast<float*>(out), static_cast<const float*>(in), n).is_ok());
  ASSERT_TRUE(be.gelu_backward(static_cast<float*>(dx), static_cast<const float*>(in),
                               static_cast<const float*>(d), n)
                  .is_ok());
  std::vector<float> y(n), g(n);
  ASSERT_TRUE(be.copy_to_host(y.data(), out, n * sizeof(float)).is_ok());
  ASSERT_TRUE(be.copy_to_host(g.data(), dx, n * sizeof(float)).is_ok());
  for (void* p : {in, d, out, dx}) be.release(p);

  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE("x = " + std::to_string(x[i]));
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i]) && std::isnan(g[i])) << y[i] << " " << g[i];
    } else if (x[i] > 10.0f) {
      EXPECT_EQ(y[i], x[i]);
      EXPECT_EQ(g[i], dout[i]);
    } else if (x[i] < -10.0f) {
      EXPECT_EQ(y[i], 0.0f);
      EXPECT_EQ(g[i], 0.0f);
    } else {  // inside: the formula
      const double want_g = gelu_grad_ref(x[i]) * dout[i];
      EXPECT_NEAR(y[i], gelu_ref(x[i]), 1e-5);
      EXPECT_NEAR(g[i], want_g, 1e-4 * std::fabs(want_g) + 1e-6);
    }
  }
}

}  // namespace perigee::kernels::testing
