// Backend::residual_layernorm_forward against the two ops it stands for: residual = a + b, then
// layernorm_forward of that sum. Every output (the sum, the normalised rows in fp32 or bf16 storage,
// mean, rstd) must equal the separate ops' bit for bit, with the sum written over a, over b or apart,
// for widths with and without a whole number of warps' columns; the sum must be the exact fp32 add.
// Through a ProfilingBackend the op is one row when the backend fuses it and the two rows otherwise.
// Shared by the CPU (the Backend default) and CUDA (one kernel) tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/profiling_backend.hpp"

namespace perigee::kernels::testing {

struct ResidualLayerNormOutputs {
  std::vector<float> residual, mean, rstd;
  std::vector<uint8_t> out;  // raw bytes of fp32 or bf16 storage
};

enum class SumAt { kApart, kOverA, kOverB };

// fused: one residual_layernorm_forward call; else residual_forward then layernorm_forward.
inline ResidualLayerNormOutputs run_residual_layernorm(Backend& be, bool fused, DType out_type, SumAt at,
                                                       int N, int C, const std::vector<float>& a,
                                                       const std::vector<float>& b,
                                                       const std::vector<float>& w,
                                                       const std::vector<float>& bias) {
  const size_t nc = static_cast<size_t>(N) * C, out_bytes = nc * dtype_size(out_type);
  void *da = nullptr, *db = nullptr, *dsum = nullptr, *dout = nullptr, *dmean = nullptr, *drstd = nullptr,
       *dw = nullptr, *dbias = nullptr;
  for (void** p : {&da, &db, &dsum}) PERIGEE_CHECK_OR_DIE(be.allocate(p, nc * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.allocate(&dout, out_bytes));
  for (void** p : {&dmean, &drstd}) PERIGEE_CHECK_OR_DIE(be.allocate(p, N * sizeof(float)));
  for (void** p : {&dw, &dbias}) PERIGEE_CHECK_OR_DIE(be.allocate(p, C * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_device(da, a.data(), nc * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_device(db, b.data(), nc * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_device(dw, w.data(), C * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_device(dbias, bias.data(), C * sizeof(float)));
  auto* sum = static_cast<float*>(at == SumAt::kOverA ? da : at == SumAt::kOverB ? db : dsum);
  auto* mean = static_cast<float*>(dmean);
  auto* rstd = static_cast<float*>(drstd);
  const auto* pa = static_cast<const float*>(da);
  const auto* pb = static_cast<const float*>(db);
  const auto* pw = static_cast<const float*>(dw);
  const auto* pbias = static_cast<const float*>(dbias);
  const Act out(dout, out_type);
  if (fused) {
    PERIGEE_CHECK_OR_DIE(be.residual_layernorm_forward(sum, out, mean, rstd, pa, pb, pw, pbias, N, C));
  } else {
    PERIGEE_CHECK_OR_DIE(be.residual_forward(sum, pa, pb, nc));
    PERIGEE_CHECK_OR_DIE(be.layernorm_forward(out, mean, rstd, sum, pw, pbias, N, C));
  }
  ResidualLayerNormOutputs r{std::vector<float>(nc), std::vector<float>(N), std::vector<float>(N),
                             std::vector<uint8_t>(out_bytes)};
  PERIGEE_CHECK_OR_DIE(be.copy_to_host(r.residual.data(), sum, nc * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_host(r.out.data(), dout, out_bytes));
  PERIGEE_CHECK_OR_DIE(be.copy_to_host(r.mean.data(), mean, N * sizeof(float)));
  PERIGEE_CHECK_OR_DIE(be.copy_to_host(r.rstd.data(), rstd, N * sizeof(float)));
  for (void* p : {da, db, dsum, dout, dmean, drstd, dw, dbias}) be.release(p);
  return r;
}

inline std::vector<float> residual_ln_random(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

inline void expect_residual_layernorm_is_the_two_ops(Backend& be) {
  for (const auto& [N, C] : std::vector<std::pair<int, int>>{{9, 768}, {5, 33}, {3, 1}, {17, 64}}) {
    const size_t nc = static_cast<size_t>(N) * C;
    const auto a = residual_ln_random(nc, 1 + C, -3.0f, 3.0f), b = residual_ln_random(nc, 2 + C, -0.5f, 0.5f);
    const auto w = residual_ln_random(C, 3 + C, 0.5f, 1.5f), bias = residual_ln_random(C, 4 + C, -0.2f, 0.2f);
    for (const DType type : {DType::kF32, DType::kBF16}) {
      for (const SumAt at : {SumAt::kApart, SumAt::kOverA, SumAt::kOverB}) {
        SCOPED_TRACE("N " + std::to_string(N) + " C " + std::to_string(C) +
                     (type == DType::kF32 ? " fp32" : " bf16") + " sum at " +
                     std::to_string(static_cast<int>(at)));
        const auto want = run_residual_layernorm(be, false, type, at, N, C, a, b, w, bias);
        const auto got = run_residual_layernorm(be, true, type, at, N, C, a, b, w, bias);
        for (size_t i = 0; i < nc; ++i) ASSERT_EQ(want.residual[i], a[i] + b[i]) << i;
        EXPECT_EQ(std::memcmp(got.residual.data(), want.residual.data(), nc * sizeof(float)), 0);
        EXPECT_EQ(got.out, want.out);
        EXPECT_EQ(std::memcmp(got.mean.data(), want.mean.data(), N * sizeof(float)), 0);
        EXPECT_EQ(std::memcmp(got.rstd.data(), want.rstd.data(), N * sizeof(float)), 0);
      }
    }
  }
  // Missing pointers are refused by name.
  float x = 0.0f;
  const Status s = be.residual_layernorm_forward(nullptr, Act(&x, DType::kF32), &x, &x, &x, &x, &x, &x, 1, 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
}

// The op names a ProfilingBackend over `be` records for one fused call.
inline std::set<std::string> profiled_residual_layernorm_ops(Backend& be) {
  ProfilingBackend prof(&be);
  const int N = 4, C = 32;
  const size_t nc = static_cast<size_t>(N) * C;
  run_residual_layernorm(prof, true, DType::kF32, SumAt::kApart, N, C, residual_ln_random(nc, 5, -1, 1),
                         residual_ln_random(nc, 6, -1, 1), residual_ln_random(C, 7, 0.5f, 1.5f),
                         residual_ln_random(C, 8, -0.1f, 0.1f));
  PERIGEE_CHECK_OR_DIE(prof.collect());
  std::set<std::string> ops;
  for (const OpStat& e : prof.stats()) {
    if (e.op.find("residual") != std::string::npos || e.op.find("layernorm") != std::string::npos) {
      ops.insert(e.op);
    }
  }
  return ops;
}

}  // namespace perigee::kernels::testing
