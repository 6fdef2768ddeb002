// Shared helpers of the fused-GELU tests (test_cpu_gelu_fusion.cpp, test_cuda_gelu_fusion.cpp): the
// MLP's two GELU neighbours run through Backend::matmul_gelu_forward / matmul_backward_gelu and
// through the separate ops (with a separate dinp buffer), on any backend and either storage type, plus
// a double-precision host reference of both.
//   forward:  pre [N, OC] = inp [N, C] @ weight [OC, C]^T + bias, out = gelu(pre)
//   backward: dpre [N, C] = gelu'(pre) * (dout [N, OC] @ weight [OC, C]); dweight += dout^T gelu(pre),
//             dbias += column sums of dout (dout fp32, as the model's residual gradient).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/backend.hpp"
#include "kernels/profiling_backend.hpp"
#include "tests/kernels/gelu_ref.hpp"

namespace perigee::kernels::testing {

// Backend memory holding fp32 or bf16 values, filled from and read back as floats.
class TypedBuffer {
 public:
  TypedBuffer(Backend& be, size_t n, DType type) : be_(&be), n_(n), type_(type) {
    PERIGEE_CHECK_OR_DIE(be.allocate(&data_, n * dtype_size(type)));
  }
  TypedBuffer(Backend& be, const std::vector<float>& values, DType type)
      : TypedBuffer(be, values.size(), type) {
    if (type_ == DType::kF32) {
      PERIGEE_CHECK_OR_DIE(be_->copy_to_device(data_, values.data(), n_ * sizeof(float)));
    } else {
      std::vector<uint16_t> h(n_);
      for (size_t i = 0; i < n_; ++i) h[i] = float_to_bf16(values[i]);
      PERIGEE_CHECK_OR_DIE(be_->copy_to_device(data_, h.data(), n_ * sizeof(uint16_t)));
    }
  }
  TypedBuffer(const TypedBuffer&) = delete;
  TypedBuffer& operator=(const TypedBuffer&) = delete;
  ~TypedBuffer() { be_->release(data_); }

  Act act() const { return Act(data_, type_); }
  float* f32() const { return act().f32(); }
  std::vector<float> read() const {
    std::vector<float> out(n_);
    if (type_ == DType::kF32) {
      PERIGEE_CHECK_OR_DIE(be_->copy_to_host(out.data(), data_, n_ * sizeof(float)));
    } else {
      std::vector<uint16_t> h(n_);
      PERIGEE_CHECK_OR_DIE(be_->copy_to_host(h.data(), data_, n_ * sizeof(uint16_t)));
      for (size_t i = 0; i < n_; ++i) out[i] = bf16_to_float(h[i]);
    }
    return out;
  }

 private:
  Backend* be_;
  size_t n_;
  DType type_;
  void* data_ = nullptr;
};

// Uniform values in [-scale, scale], each exactly representable in bf16 (so a bf16 GEMM operand is the
// value itself and every backend multiplies the same numbers).
inline std::vector<float> bf16_exact_values(size_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = bf16_to_float(float_to_bf16(u(gen)));
  return v;
}

struct GeluFusionCase {
  int N = 96, C = 64, OC = 256;
  DType type = DType::kF32;  // storage of inp/pre/out (forward) and inp/pre/dpre (backward)
};

struct ForwardResult {
  std::vector<float> pre, out;
};
struct BackwardResult {
  std::vector<float> dpre, dweight, dbias;
};

struct GeluFusionInputs {
  std::vector<float> inp, weight, bias;                    // forward: [N, C], [OC, C], [OC]
  std::vector<float> dout, g_inp, g_pre, g_weight, start;  // backward: [N, OC], [N, C] x 2, [OC, C], grads
  explicit GeluFusionInputs(const GeluFusionCase& c) {
    const size_t N = c.N, C = c.C, OC = c.OC;
    inp = bf16_exact_values(N * C, 1, 1.0f);
    weight = bf16_exact_values(OC * C, 2, 0.3f);
    bias = bf16_exact_values(OC, 3, 0.5f);
    // The backward is the c_proj layer: its input is gelu(pre), pre [N, C], and C is its in-width.
    dout = bf16_exact_values(N * OC, 4, 0.5f);
    g_pre = bf16_exact_values(N * C, 5, 3.0f);
    g_inp.resize(N * C);
    for (size_t i = 0; i < g_inp.size(); ++i) {
      g_inp[i] = bf16_to_float(float_to_bf16(static_cast<float>(gelu_ref(g_pre[i]))));
    }
    g_weight = bf16_exact_values(OC * C, 6, 0.3f);
    start = bf16_exact_values(OC * C + OC, 7, 0.1f);  // dweight then dbias: accumulated into
  }
};

inline ForwardResult run_forward(Backend& be, const GeluFusionCase& c, const GeluFusionInputs& in,
                                 bool fused) {
  const size_t N = c.N, OC = c.OC;
  TypedBuffer inp(be, in.inp, c.type), weight(be, in.weight, DType::kF32), bias(be, in.bias, DType::kF32);
  TypedBuffer pre(be, N * OC, c.type), out(be, N * OC, c.type);
  if (fused) {
    EXPECT_TRUE(
        be.matmul_gelu_forward(pre.act(), out.act(), inp.act(), weight.f32(), bias.f32(), c.N, c.C, c.OC)
            .is_ok());
  } else {
    EXPECT_TRUE(be.matmul_forward(pre.act(), inp.act(), weight.f32(), bias.f32(), c.N, c.C, c.OC).is_ok());
    EXPECT_TRUE(be.gelu_forward(out.act(), pre.act(), N * OC).is_ok());
  }
  return {pre.read(), out.read()};
}

inline BackwardResult run_backward(Backend& be, const GeluFusionCase& c, const GeluFusionInputs& in,
                                   bool fused) {
  const size_t N = c.N, C = c.C, OC = c.OC;
  TypedBuffer dout(be, in.dout, DType::kF32), g_inp(be, in.g_inp, c.type), g_pre(be, in.g_pre, c.type);
  TypedBuffer weight(be, in.g_weight, DType::kF32), grads(be, in.start, DType::kF32);
  TypedBuffer dpre(be, N * C, c.type);
  float* dweight = grads.f32();
  float* dbias = dweight + OC * C;
  if (fused) {
    EXPECT_TRUE(be.matmul_backward_gelu(dpre.act(), dweight, dbias, dout.f32(), g_inp.act(), weight.f32(),
                                        g_pre.act(), c.N, c.C, c.OC)
                    .is_ok());
  } else {
    TypedBuffer dinp(be, N * C, c.type);
    EXPECT_TRUE(
        be.matmul_backward(dinp.act(), dweight, dbias, dout.f32(), g_inp.act(), weight.f32(), c.N, c.C, c.OC)
            .is_ok());
    EXPECT_TRUE(be.gelu_backward(dpre.act(), g_pre.act(), dinp.act(), N * C).is_ok());
  }
  std::vector<float> g = grads.read();
  return {dpre.read(), std::vector<float>(g.begin(), g.begin() + OC * C),
          std::vector<float>(g.begin() + OC * C, g.end())};
}

inline ForwardResult forward_reference(const GeluFusionCase& c, const GeluFusionInputs& in) {
  ForwardResult r{std::vector<float>(static_cast<size_t>(c.N) * c.OC),
                  std::vector<float>(static_cast<size_t>(c.N) * c.OC)};
  for (int n = 0; n < c.N; ++n) {
    for (int o = 0; o < c.OC; ++o) {
      double acc = in.bias[o];
      for (int k = 0; k < c.C; ++k) acc += static_cast<double>(in.inp[n * c.C + k]) * in.weight[o * c.C + k];
      r.pre[static_cast<size_t>(n) * c.OC + o] = static_cast<float>(acc);
      r.out[static_cast<size_t>(n) * c.OC + o] = static_cast<float>(gelu_ref(acc));
    }
  }
  return r;
}

inline BackwardResult backward_reference(const GeluFusionCase& c, const GeluFusionInputs& in) {
  const size_t N = c.N, C = c.C, OC = c.OC;
  BackwardResult r{std::vector<float>(N * C), std::vector<float>(OC * C), std::vector<float>(OC)};
  for (size_t n = 0; n < N; ++n) {
    for (size_t k = 0; k < C; ++k) {
      double acc = 0.0;
      for (size_t o = 0; o < OC; ++o)
        acc += static_cast<double>(in.dout[n * OC + o]) * in.g_weight[o * C + k];
      r.dpre[n * C + k] = static_cast<float>(gelu_grad_ref(in.g_pre[n * C + k]) * acc);
    }
  }
  for (size_t o = 0; o < OC; ++o) {
    double db = in.start[OC * C + o];
    for (size_t n = 0; n < N; ++n) db += in.dout[n * OC + o];
    r.dbias[o] = static_cast<float>(db);
    for (size_t k = 0; k < C; ++k) {
      double dw = in.start[o * C + k];
      for (size_t n = 0; n < N; ++n) dw += static_cast<double>(in.dout[n * OC + o]) * in.g_inp[n * C + k];
      r.dweight[o * C + k] = static_cast<float>(dw);
    }
  }
  return r;
}

// The op names `prof` recorded for one fused forward and one fused backward of case c (memory ops left
// out): the fused ops' names when the inner backend fuses, else the separate ops'.
inline std::set<std::string> profiled_mlp_ops(ProfilingBackend& prof, const GeluFusionCase& c) {
  const GeluFusionInputs in(c);
  run_forward(prof, c, in, true);
  run_backward(prof, c, in, true);
  PERIGEE_CHECK_OR_DIE(prof.collect());
  std::set<std::string> ops;
  for (const OpStat& e : prof.stats()) {
    if (e.op.find("gelu") != std::string::npos || e.op.find("matmul") != std::string::npos) ops.insert(e.op);
  }
  return ops;
}

// Expects |got[i] - ref[i]| <= atol + rtol * |ref[i]| everywhere; reports the first failures and how many.
inline void expect_within(const std::string& what, const std::vector<float>& got,
                          const std::vector<float>& ref, double atol, double rtol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (err <= atol + rtol * std::fabs(static_cast<double>(ref[i]))) continue;
    if (bad++ < 3) {
      ADD_FAILURE() << what << "[" << i << "]: " << got[i] << " vs reference " << ref[i] << " (error " << err
                    << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << ref.size() << " elements out of tolerance";
}

}  // namespace perigee::kernels::testing
