// CUDA backend's linear layer against the CPU reference backend: matmul forward and backward in fp32
// (cuBLAS) and bf16 precision (cuBLASLt on operands rounded to bf16), each |gpu - cpu| <= atol + rtol *
// |cpu| with the tolerances stated next to it; the backward's semantics (dinp written, dweight and dbias
// accumulated, unwanted gradients untouched); determinism; and a bias at any 4-byte alignment (the
// bias-apart path). Compiled by the C++ compiler: only the Backend interface and the factory are used.
// Without a usable CUDA device every test is skipped with the probe's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

class CudaOps : public OpsTest {};

// The shapes of the linear-layer tests (a single row, sizes off every tile, GPT-2's qkv) and their
// random operands, initial gradients included (seeds seed .. seed + 6).
struct MatmulShape {
  int N, C, OC;
  std::string tag() const {
    return "N=" + std::to_string(N) + " C=" + std::to_string(C) + " OC=" + std::to_string(OC);
  }
};
constexpr MatmulShape kMatmulShapes[] = {{1, 5, 3}, {13, 40, 21}, {300, 40, 700}, {64, 768, 2304}};

struct MatmulInputs {
  std::vector<float> inp, w, bias, dout, dinp0, dw0, db0;
};
MatmulInputs random_matmul_inputs(const MatmulShape& s, uint32_t seed) {
  const size_t nc = static_cast<size_t>(s.N) * s.C, occ = static_cast<size_t>(s.OC) * s.C;
  const size_t noc = static_cast<size_t>(s.N) * s.OC, oc = static_cast<size_t>(s.OC);
  return {random_vector(nc, seed),      random_vector(occ, seed + 1), random_vector(oc, seed + 2),
          random_vector(noc, seed + 3), random_vector(nc, seed + 4),  random_vector(occ, seed + 5),
          random_vector(oc, seed + 6)};
}

struct MatmulResult {
  std::vector<float> out, dinp, dweight, dbias;
};

// Runs the forward (with bias when use_bias) and backward_calls backward passes into the given initial
// gradients; a gradient whose `want` flag is false is passed as null.
MatmulResult run_matmul(Backend& be, int N, int C, int OC, bool use_bias, const std::vector<float>& inp,
                        const std::vector<float>& w, const std::vector<float>& bias,
                        const std::vector<float>& dout, const std::vector<float>& dinp0,
                        const std::vector<float>& dw0, const std::vector<float>& db0, bool want_dinp,
                        bool want_dw, bool want_db, int backward_calls) {
  Array<float> x(be, inp), wt(be, w), bs(be, bias), d(be, dout), dx(be, dinp0), dw(be, dw0), db(be, db0);
  Array<float> out(be, static_cast<size_t>(N) * OC);
  out.upload(std::vector<float>(out.size(), 123.0f));  // the forward writes, not accumulates
  PERIGEE_CHECK_OR_DIE(
      be.matmul_forward(out.data(), x.data(), wt.data(), use_bias ? bs.data() : nullptr, N, C, OC));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(be.matmul_backward(want_dinp ? dx.data() : nullptr, want_dw ? dw.data() : nullptr,
                                            want_db ? db.data() : nullptr, d.data(), x.data(), wt.data(), N,
                                            C, OC));
  }
  return {out.download(), dx.download(), dw.download(), db.download()};
}

TEST_F(CudaOps, MatmulMatchesCpu) {
  for (const MatmulShape& s : kMatmulShapes) {
    const int N = s.N, C = s.C, OC = s.OC;
    const std::string tag = s.tag();
    const MatmulInputs in = random_matmul_inputs(s, 20);
    const auto& [inp, w, bias, dout, dinp0, dw0, db0] = in;
    for (bool use_bias : {true, false}) {
      const std::string t = tag + (use_bias ? " bias" : " no bias");
      const MatmulResult ref =
          run_matmul(*cpu_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0, true, true, use_bias, 1);
      const MatmulResult got =
          run_matmul(*gpu_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0, true, true, use_bias, 1);
      // fp32 dot products of length K with terms |x| <= 1, summed in another order than OpenBLAS:
      // atol grows with K (2e-7 K + 1e-6), rtol 1e-5.
      auto atol = [](int K) { return 2e-7 * K + 1e-6; };
      expect_close("matmul out " + t, got.out, ref.out, atol(C), 1e-5);
      expect_close("matmul dinp " + t, got.dinp, ref.dinp, atol(OC), 1e-5);
      expect_close("matmul dweight " + t, got.dweight, ref.dweight, atol(N), 1e-5);
      // dbias: double column sums, one fp32 rounding.
      expect_close("matmul dbias " + t, got.dbias, ref.dbias, 1e-6, 1e-6);
      const MatmulResult again =
          run_matmul(*gpu_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0, true, true, use_bias, 1);
      EXPECT_TRUE(bit_identical(got.out, again.out) && bit_identical(got.dinp, again.dinp) &&
                  bit_identical(got.dweight, again.dweight) && bit_identical(got.dbias, again.dbias))
          << t;
    }
    // Only some gradients wanted: the others stay untouched.
    const MatmulResult part =
        run_matmul(*gpu_, N, C, OC, true, inp, w, bias, dout, dinp0, dw0, db0, true, false, false, 1);
    EXPECT_TRUE(bit_identical(part.dweight, dw0) && bit_identical(part.dbias, db0)) << tag;
    const MatmulResult part2 =
        run_matmul(*gpu_, N, C, OC, true, inp, w, bias, dout, dinp0, dw0, db0, false, true, true, 1);
    EXPECT_TRUE(bit_identical(part2.dinp, dinp0)) << tag;
    // Two backward calls from zero (cuBLAS may add C while it accumulates: GEMM tolerances; dbias adds
    // one rounded total twice: exact); dinp is written: the second call leaves the same bits.
    const std::vector<float> zx(inp.size(), 0.0f), zw(w.size(), 0.0f), zb(OC, 0.0f);
    const MatmulResult one =
        run_matmul(*gpu_, N, C, OC, true, inp, w, bias, dout, zx, zw, zb, true, true, true, 1);
    const MatmulResult two =
        run_matmul(*gpu_, N, C, OC, true, inp, w, bias, dout, zx, zw, zb, true, true, true, 2);
    EXPECT_TRUE(bit_identical(two.dinp, one.dinp)) << tag;
    expect_close("matmul dweight x2 " + tag, two.dweight, twice(one.dweight), 2e-7 * N + 1e-6, 1e-5);
    expect_close("matmul dbias x2 " + tag, two.dbias, twice(one.dbias), 0.0, 0.0);
  }
}

// The value bf16 round-to-nearest-even keeps of x (as a float): what the bf16 GEMMs multiply.
std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(float_to_bf16(v[i]));
  return out;
}

TEST_F(CudaOps, MatmulBf16MatchesCpuOnRoundedOperands) {
  for (const MatmulShape& s : kMatmulShapes) {
    const int N = s.N, C = s.C, OC = s.OC;
    const std::string tag = s.tag();
    const MatmulInputs in = random_matmul_inputs(s, 40);
    const auto& [inp, w, bias, dout, dinp0, dw0, db0] = in;
    for (bool use_bias : {true, false}) {
      const std::string t = tag + (use_bias ? " bias" : " no bias");
      const MatmulResult got = run_matmul(*gpu_bf16_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0,
                                          true, true, use_bias, 1);
      // Products of bf16 values are exact in fp32, and the tensor cores accumulate in fp32: with the
      // operands rounded to bf16 first, the CPU's fp32 GEMM is the same sum in another order (fp32
      // tolerances, atol growing with K). Bias and dbias stay fp32 (dbias sums the unrounded dout).
      const MatmulResult ref = run_matmul(*cpu_, N, C, OC, use_bias, bf16_rounded(inp), bf16_rounded(w), bias,
                                          bf16_rounded(dout), dinp0, dw0, db0, true, true, false, 1);
      const MatmulResult ref_db = run_matmul(*cpu_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0,
                                             false, false, use_bias, 1);
      auto atol = [](int K) { return 4e-7 * K + 2e-6; };
      expect_close("bf16 matmul out " + t, got.out, ref.out, atol(C), 2e-5);
      expect_close("bf16 matmul dinp " + t, got.dinp, ref.dinp, atol(OC), 2e-5);
      expect_close("bf16 matmul dweight " + t, got.dweight, ref.dweight, atol(N), 2e-5);
      expect_close("bf16 matmul dbias " + t, got.dbias, ref_db.dbias, 1e-6, 1e-6);
      // Against the unrounded fp32 GEMM: the bf16 rounding error itself (relative 2^-9 per operand,
      // random signs over K terms of |x| <= 1): about 4e-3 sqrt(K) absolute at most.
      const MatmulResult exact =
          run_matmul(*cpu_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0, db0, true, true, false, 1);
      expect_close("bf16 matmul out vs fp32 " + t, got.out, exact.out, 4e-3 * std::sqrt(C) + 1e-3, 1e-2);
      const MatmulResult again = run_matmul(*gpu_bf16_, N, C, OC, use_bias, inp, w, bias, dout, dinp0, dw0,
                                            db0, true, true, use_bias, 1);
      EXPECT_TRUE(bit_identical(got.out, again.out) && bit_identical(got.dinp, again.dinp) &&
                  bit_identical(got.dweight, again.dweight) && bit_identical(got.dbias, again.dbias))
          << t;
    }
    // Only some gradients wanted: the others stay untouched.
    const MatmulResult part =
        run_matmul(*gpu_bf16_, N, C, OC, true, inp, w, bias, dout, dinp0, dw0, db0, true, false, false, 1);
    EXPECT_TRUE(bit_identical(part.dweight, dw0) && bit_identical(part.dbias, db0)) << tag;
    const MatmulResult part2 =
        run_matmul(*gpu_bf16_, N, C, OC, true, inp, w, bias, dout, dinp0, dw0, db0, false, true, true, 1);
    EXPECT_TRUE(bit_identical(part2.dinp, dinp0)) << tag;
  }
}

// A bias at every 4-byte offset (a packed bias vector, as in a flat parameter buffer of odd sizes):
// where cuBLASLt has no fp32-D algorithm with the bias epilogue for it, the bias is added in a pass of
// its own (LtLaunchCounts::bias_apart); with the epilogue switched off every call takes that pass.
// Either way the result matches the CPU on rounded operands, each call is one GEMM launch, and a
// repeat is bit-identical.
TEST_F(CudaOps, MatmulBf16TakesABiasAtAnyAlignment) {
  uint64_t apart = 0, refused = 0;
  for (const MatmulShape& s : {kMatmulShapes[1], kMatmulShapes[3]}) {
    const int N = s.N, C = s.C, OC = s.OC;
    const MatmulInputs in = random_matmul_inputs(s, 50);
    const auto& [inp, w, bias, dout, dinp0, dw0, db0] = in;
    Array<float> x(*gpu_bf16_, inp), weight(*gpu_bf16_, w), out(*gpu_bf16_, static_cast<size_t>(N) * OC);
    Array<float> ref_x(*cpu_, bf16_rounded(inp)), ref_w(*cpu_, bf16_rounded(w)), ref_b(*cpu_, bias);
    Array<float> ref_out(*cpu_, static_cast<size_t>(N) * OC);
    PERIGEE_CHECK_OR_DIE(
        cpu_->matmul_forward(ref_out.data(), ref_x.data(), ref_w.data(), ref_b.data(), N, C, OC));
    for (const bool epilogue : {true, false}) {
      ASSERT_TRUE(cuda::set_lt_bias_epilogue(*gpu_bf16_, epilogue).is_ok());
      for (int offset = 0; offset < 4; ++offset) {
        const std::string tag = s.tag() + " bias at +" + std::to_string(4 * offset) + " bytes, epilogue " +
                                (epilogue ? "on" : "off");
        std::vector<float> packed(static_cast<size_t>(OC) + 4, 0.0f);
        std::copy(bias.begin(), bias.end(), packed.begin() + offset);
        Array<float> b(*gpu_bf16_, packed);
        std::vector<float> got[2];
        for (std::vector<float>& g : got) {
          cuda::LtLaunchCounts before, after;
          ASSERT_TRUE(cuda::lt_launch_counts(*gpu_bf16_, &before).is_ok());
          ASSERT_TRUE(
              gpu_bf16_->matmul_forward(out.data(), x.data(), weight.data(), b.data() + offset, N, C, OC)
                  .is_ok())
              << tag;
          ASSERT_TRUE(cuda::lt_launch_counts(*gpu_bf16_, &after).is_ok());
          EXPECT_EQ(after.launches - before.launches, 1u) << tag;
          if (epilogue) {
            apart += after.bias_apart - before.bias_apart;
            refused += after.refused_at_launch - before.refused_at_launch;
          } else {
            EXPECT_EQ(after.bias_apart - before.bias_apart, 1u) << tag;
          }
          g = out.download();
        }
        expect_close("bf16 matmul out, " + tag, got[0], ref_out.download(), 4e-7 * C + 2e-6, 2e-5);
        EXPECT_TRUE(bit_identical(got[0], got[1])) << tag;
      }
    }
    ASSERT_TRUE(cuda::set_lt_bias_epilogue(*gpu_bf16_, true).is_ok());
  }
  std::printf(
      "[ note ] with the bias epilogue on, %llu of 16 calls added their bias apart (%llu after a "
      "refused launch)\n",
      static_cast<unsigned long long>(apart), static_cast<unsigned long long>(refused));
}

}  // namespace
}  // namespace perigee::kernels
