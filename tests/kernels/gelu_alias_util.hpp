// GELU with its output written over an input of the other storage type (bf16 over fp32 and fp32 over
// bf16, forward and backward, at the same address): the stored result must be, bit for bit, what the
// same call gives into a separate buffer. A native element-wise kernel would race there (element i's
// bytes in one type hold parts of other elements in the other), so backends must not run one.
// Shared by the CPU and CUDA tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::testing {

namespace detail {

// Backend memory of `bytes`, holding `values` stored as `t` from its start.
inline void* device_values(Backend& be, const std::vector<float>& values, DType t, size_t bytes) {
  void* p = nullptr;
  PERIGEE_CHECK_OR_DIE(be.allocate(&p, bytes));
  if (t == DType::kF32) {
    PERIGEE_CHECK_OR_DIE(be.copy_to_device(p, values.data(), values.size() * sizeof(float)));
  } else {
    std::vector<uint16_t> h(values.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_bf16(values[i]);
    PERIGEE_CHECK_OR_DIE(be.copy_to_device(p, h.data(), h.size() * sizeof(uint16_t)));
  }
  return p;
}

inline std::vector<uint8_t> device_bytes(Backend& be, const void* p, size_t bytes) {
  std::vector<uint8_t> h(bytes);
  PERIGEE_CHECK_OR_DIE(be.copy_to_host(h.data(), p, bytes));
  return h;
}

}  // namespace detail

inline void expect_gelu_mixed_alias(Backend& be, size_t n = 4099) {
  std::mt19937 rng(29);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::vector<float> x(n), g(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = u(rng);
    g[i] = u(rng);
  }
  const size_t bytes = n * sizeof(float);  // room for either type
  for (const DType out_type : {DType::kBF16, DType::kF32}) {
    const DType in_type = out_type == DType::kBF16 ? DType::kF32 : DType::kBF16;
    const size_t out_bytes = n * dtype_size(out_type);
    const std::string tag =
        std::string(dtype_name(out_type)) + " output over a " + dtype_name(in_type) + " input";
    {  // forward: out over inp
      void* sep_in = detail::device_values(be, x, in_type, bytes);
      void* sep_out = detail::device_values(be, std::vector<float>(n, 0.0f), out_type, bytes);
      ASSERT_TRUE(be.gelu_forward(Act(sep_out, out_type), ConstAct(sep_in, in_type), n).is_ok()) << tag;
      void* both = detail::device_values(be, x, in_type, bytes);
      const Status s = be.gelu_forward(Act(both, out_type), ConstAct(both, in_type), n);
      ASSERT_TRUE(s.is_ok()) << tag << ": " << s.message();
      EXPECT_EQ(detail::device_bytes(be, both, out_bytes), detail::device_bytes(be, sep_out, out_bytes))
          << "gelu_forward, " << tag;
      for (void* p : {sep_in, sep_out, both}) be.release(p);
    }
    {  // backward: dinp over dout (inp apart, fp32)
      void* inp = detail::device_values(be, x, DType::kF32, bytes);
      void* sep_dout = detail::device_values(be, g, in_type, bytes);
      void* sep_dinp = detail::device_values(be, std::vector<float>(n, 0.0f), out_type, bytes);
      ASSERT_TRUE(be.gelu_backward(Act(sep_dinp, out_type), ConstAct(inp, DType::kF32),
                                   ConstAct(sep_dout, in_type), n)
                      .is_ok())
          << tag;
      void* both = detail::device_values(be, g, in_type, bytes);
      const Status s =
          be.gelu_backward(Act(both, out_type), ConstAct(inp, DType::kF32), ConstAct(both, in_type), n);
      ASSERT_TRUE(s.is_ok()) << tag << ": " << s.message();
      EXPECT_EQ(detail::device_bytes(be, both, out_bytes), detail::device_bytes(be, sep_dinp, out_bytes))
          << "gelu_backward, " << tag;
      for (void* p : {inp, sep_dout, sep_dinp, both}) be.release(p);
    }
  }
}

}  // namespace perigee::kernels::testing
