// The bf16 tensor-core attention (kernels/cuda/attention_bf16.cu), reached through a CudaBackend made
// with GpuPrecision::kBf16, against the fp32 CPU backend: out and dqkv for head sizes 16, 32, 48, 64, 96
// and 128 (48 and 96 fill the D = 64 and D = 128 tiles partly) and T = 1, 7, 64, 100, 130, 257 (one to
// five 64-row tiles, partial last tiles), the saved log-sum-exp rows against a double-precision host
// computation, determinism (two runs bit-identical), the written (not accumulated) dqkv of the backward,
// operands that are not 16-byte aligned (the kernels' scalar load path), and the fallback to the fp32
// kernel for a head size the bf16 kernels do not take, or on a device whose shared memory per block is too
// small for them (sm_86/89 at head sizes above 64, chosen on the test device by lowering the backend's
// limit). bf16 storage (qkv, out, dqkv as bf16): the bits of the fp32-storage kernels rounded once, with bf16
// qkv aligned or 1 or 2 elements off (the element-wise bf16 loads) and with fp32 qkv, and which storage
// combinations run native kernels rather than the ActCast fallback (the backend's fallback counter: both give
// the same bits); each attention variant of KernelVariants gives the default kernels' bits. Outputs start as
// NaN sentinels, so an element a kernel does not store shows. Compiled by the C++ compiler: only the Backend
// interface, the factory and the device probe are used. Without a usable CUDA device every test is skipped
// with the probe's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/attention_tiles.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

class CudaAttentionBf16 : public ::testing::Test {
 protected:
  void SetUp() override {
    Backends& b = backends();
    if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
    ASSERT_TRUE(b.error.is_ok()) << b.error.to_string();
    ASSERT_NE(b.gpu_bf16, nullptr);
    cpu_ = b.cpu.get();
    gpu_ = b.gpu_bf16.get();
  }

  Backend* cpu_ = nullptr;
  Backend* gpu_ = nullptr;
};

// ---- helpers

// Row log-sum-exp [B, NH, T] of the scaled causal scores, in double from the fp32 inputs.
std::vector<float> reference_lse(const std::vector<float>& qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<float> lse(static_cast<size_t>(B) * NH * T);
  std::vector<double> s(T);
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int i = 0; i < T; ++i) {
        const float* q = qkv.data() + (static_cast<size_t>(b) * T + i) * 3 * C + h * hs;
        double m = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const float* k = qkv.data() + (static_cast<size_t>(b) * T + j) * 3 * C + C + h * hs;
          double dot = 0.0;
          for (int d = 0; d < hs; ++d) dot += static_cast<double>(q[d]) * k[d];
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= i; ++j) sum += std::exp(s[j] - m);
        lse[(static_cast<size_t>(b) * NH + h) * T + i] = static_cast<float>(m + std::log(sum));
      }
    }
  }
  return lse;
}

struct AttentionResult {
  std::vector<float> out, dqkv, state;
};

// Output sentinels: an element no kernel stores keeps them. The two differ (the fp32 NaN rounds to
// 0x7fc0), so a store missed by both the fp32-storage reference and a bf16-storage run still shows.
std::vector<float> nan_vector(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}
constexpr uint16_t kBf16Sentinel = 0xffff;  // a bf16 NaN

// `offset` zeros, then v: v at `offset` elements into a larger allocation.
template <typename T>
std::vector<T> shifted(const std::vector<T>& v, int offset) {
  std::vector<T> r(offset, T{});
  r.insert(r.end(), v.begin(), v.end());
  return r;
}

// Forward, then `backward_calls` backward calls writing dqkv (which starts as dqkv0). `offset` > 0 shifts qkv
// and dout by that many floats inside their allocations (operands not 16-byte aligned).
AttentionResult run_attention(Backend& be, int B, int T, int C, int NH, const std::vector<float>& qkv,
                              const std::vector<float>& dout, const std::vector<float>& dqkv0,
                              int backward_calls, int offset = 0) {
  Array<float> x(be, shifted(qkv, offset)), d(be, shifted(dout, offset)), dx(be, dqkv0);
  Array<float> out(be, nan_vector(static_cast<size_t>(B) * T * C));
  Array<float> att(be, nan_vector(be.attention_state_size(B, T, C, NH)));
  PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), x.data() + offset, B, T, C, NH));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(be.attention_backward(dx.data(), d.data() + offset, x.data() + offset, out.data(),
                                               att.data(), B, T, C, NH));
  }
  return {out.download(), dx.download(), att.download()};
}

// Tolerances. Q, K, V, dO are rounded to bf16 (relative error <= 2^-9 = 0.2%) and P, dS are rounded
// again as operands; accumulation is fp32. A scaled score q.k/sqrt(hs) of inputs in [-1.5, 1.5] is
// O(1) with an error of about 1e-3 (the rounding errors of the hs products add like a random walk and
// the 1/sqrt(hs) scale cancels their growth), which moves P by about 0.1% relative; out is a convex
// combination of bf16-rounded V rows, so its error stays a few 1e-3 (observed at most 5.5e-3 on an
// H100 against the fp32 kernel): atol = rtol = 2e-2 leaves about a 4x margin and is still 1000x looser
// than fp32 agreement only because bf16 has 8 mantissa bits instead of 24. dqkv sums up to T terms whose
// errors are of the same relative size (observed at most 7e-3), with values up to a few units: 3e-2.
// The lse error is the score error (observed at most 4.6e-3): atol 1.5e-2 on values of order log(T).
constexpr double kOutAtol = 2e-2, kOutRtol = 2e-2;
constexpr double kGradAtol = 3e-2, kGradRtol = 3e-2;
constexpr double kLseAtol = 1.5e-2;

TEST_F(CudaAttentionBf16, MatchesCpu) {
  for (int hs : {16, 32, 48, 64, 96, 128}) {
    for (int T : {1, 7, 64, 100, 130, 257}) {
      const int B = T <= 130 ? 2 : 1;
      const int NH = hs == 32 ? 3 : 2;
      const int C = hs * NH;
      const std::string tag =
          "B=" + std::to_string(B) + " T=" + std::to_string(T) + " hs=" + std::to_string(hs);
      const size_t n = static_cast<size_t>(B) * T * C;
      const auto qkv = random_vector(3 * n, 30 + T + hs, -1.5f, 1.5f);
      const auto dout = random_vector(n, 31 + hs);
      const auto dqkv0 = random_vector(3 * n, 32);
      const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
      const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
      expect_close("attention out " + tag, got.out, ref.out, kOutAtol, kOutRtol);
      expect_close("attention dqkv " + tag, got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
      expect_close("attention lse " + tag, got.state, reference_lse(qkv, B, T, C, NH), kLseAtol, 0.0);
    }
  }
}

TEST_F(CudaAttentionBf16, GptShapeMatchesCpu) {
  const int B = 1, T = 130, C = 768, NH = 12;  // GPT-2's head size 64 with 12 heads
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 50, -1.5f, 1.5f);
  const auto dout = random_vector(n, 51);
  const auto dqkv0 = random_vector(3 * n, 52);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out", got.out, ref.out, kOutAtol, kOutRtol);
  expect_close("attention dqkv", got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
}

TEST_F(CudaAttentionBf16, UnalignedOperandsMatchCpu) {
  // qkv and dout one float past a 16-byte boundary: the kernels read them element by element.
  const int B = 2, T = 100, C = 128, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 60, -1.5f, 1.5f);
  const auto dout = random_vector(n, 61);
  const auto dqkv0 = random_vector(3 * n, 62);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1, /*offset=*/1);
  const AttentionResult aligned = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out", got.out, ref.out, kOutAtol, kOutRtol);
  expect_close("attention dqkv", got.dqkv, ref.dqkv, kGradAtol, kGradRtol);
  // Same bf16 values staged either way: the results are the same bits.
  EXPECT_TRUE(bit_identical(got.out, aligned.out));
  EXPECT_TRUE(bit_identical(got.dqkv, aligned.dqkv));
}

TEST_F(CudaAttentionBf16, DeterministicAndWritten) {
  for (int hs : {32, 64, 128}) {
    const int B = 2, T = 257, NH = 2, C = hs * NH;
    const std::string tag = "hs=" + std::to_string(hs);
    const size_t n = static_cast<size_t>(B) * T * C;
    const auto qkv = random_vector(3 * n, 70 + hs, -1.5f, 1.5f);
    const auto dout = random_vector(n, 71);
    const auto dqkv0 = random_vector(3 * n, 72);
    const AttentionResult first = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    const AttentionResult again = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    EXPECT_TRUE(bit_identical(first.out, again.out)) << tag;
    EXPECT_TRUE(bit_identical(first.dqkv, again.dqkv)) << tag;
    EXPECT_TRUE(bit_identical(first.state, again.state)) << tag;
    // dqkv is written: what it held before and a second call change nothing.
    const std::vector<float> zero(3 * n, 0.0f);
    const AttentionResult one = run_attention(*gpu_, B, T, C, NH, qkv, dout, zero, 1);
    const AttentionResult two = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 2);
    EXPECT_TRUE(bit_identical(one.dqkv, first.dqkv)) << tag;
    EXPECT_TRUE(bit_identical(two.dqkv, first.dqkv)) << tag;
  }
}

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  return h;
}

std::vector<float> widened(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = bf16_to_float(h[i]);
  return v;
}

// v with every element rounded to bf16 (values that bf16 storage holds exactly).
std::vector<float> bf16_values(std::vector<float> v) {
  for (float& x : v) x = bf16_to_float(float_to_bf16(x));
  return v;
}

// Expects got == want; reports how many elements differ and the first few (0xffff: never stored).
void expect_same_bits(const std::string& what, const std::vector<uint16_t>& got,
                      const std::vector<uint16_t>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t differ = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (++differ <= 3) {
      ADD_FAILURE() << what << "[" << i << "]: 0x" << std::hex << got[i] << ", expected 0x" << want[i]
                    << std::dec;
    }
  }
  EXPECT_EQ(differ, 0u) << what << ": elements that differ, of " << got.size();
}

// The backend's count of Act op calls that took the ActCast path (widen, fp32 op, round).
uint64_t cast_fallbacks(Backend& be) {
  uint64_t n = 0;
  PERIGEE_CHECK_OR_DIE(cuda::act_cast_fallbacks(be, &n));
  return n;
}

struct Bf16Result {
  std::vector<uint16_t> out, dqkv;
  std::vector<float> state;
};

// bf16-storage forward (out bf16, qkv fp32 or bf16 device data) and backward (dqkv bf16, reading that out,
// dout fp32), every output starting as a sentinel. Native kernels on a bf16-precision backend
// (act_dispatch.cu): the calls must not take the ActCast path, which would give the same bits.
template <typename Q>
Bf16Result run_bf16_storage(Backend& be, const std::string& tag, int B, int T, int C, int NH, const Q* qkv,
                            const float* dout) {
  const size_t n = static_cast<size_t>(B) * T * C;
  Array<uint16_t> out(be, std::vector<uint16_t>(n, kBf16Sentinel));
  Array<uint16_t> dqkv(be, std::vector<uint16_t>(3 * n, kBf16Sentinel));
  Array<float> att(be, nan_vector(be.attention_state_size(B, T, C, NH)));
  const uint64_t before = cast_fallbacks(be);
  const Status fwd = be.attention_forward(out.data(), att.data(), qkv, B, T, C, NH);
  EXPECT_TRUE(fwd.is_ok()) << tag << ": " << fwd.to_string();
  const Status bwd = be.attention_backward(dqkv.data(), dout, qkv, out.data(), att.data(), B, T, C, NH);
  EXPECT_TRUE(bwd.is_ok()) << tag << ": " << bwd.to_string();
  EXPECT_EQ(cast_fallbacks(be), before) << tag << ": the bf16-storage attention took the ActCast path";
  return {out.download(), dqkv.download(), att.download()};
}

// bf16 storage ([device] activations = "bf16": qkv, out and dqkv as bf16, dout fp32) at the shapes of
// MatchesCpu, several key tiles and query blocks and the partly filled D = 64 and D = 128 tiles (hs = 48,
// 96) included: the bits are the fp32-storage kernels' on the same bf16 values, each output rounded once
// (the storage rule, at sizes the rule test does not run). The same bits with the bf16 qkv 1 and 2
// elements past an 8-byte boundary (its rows then load element by element: load_quad_bf16 with
// vec = false, in the forward's tiles and the backward's conversion), and with fp32 qkv holding the
// bf16 values (the kernels' fp32-qkv, bf16-output instantiations). Every run native (no ActCast).
TEST_F(CudaAttentionBf16, Bf16StorageIsTheFp32StorageRoundedAtEveryShape) {
  for (int hs : {16, 48, 64, 96, 128}) {
    for (int T : {7, 64, 130, 257}) {
      const int B = 2, NH = 2, C = hs * NH;
      const std::string tag = "T=" + std::to_string(T) + " hs=" + std::to_string(hs);
      const size_t n = static_cast<size_t>(B) * T * C;
      const size_t n_att = gpu_->attention_state_size(B, T, C, NH);
      const std::vector<float> qkv = bf16_values(random_vector(3 * n, 90 + T + hs, -1.5f, 1.5f));
      const std::vector<uint16_t> qkv16 = to_bf16_bits(qkv);
      const auto dout = random_vector(n, 91 + hs);
      Array<float> x32(*gpu_, qkv), d(*gpu_, dout);
      // bf16 storage, qkv aligned.
      Array<uint16_t> x16(*gpu_, qkv16);
      const Bf16Result got = run_bf16_storage(*gpu_, tag, B, T, C, NH, x16.data(), d.data());
      // fp32 storage on the bf16 values; its backward reads `out` as the bf16 run stored it (widened).
      Array<float> out32(*gpu_, nan_vector(n)), att32(*gpu_, nan_vector(n_att)),
          dx32(*gpu_, nan_vector(3 * n));
      ASSERT_TRUE(gpu_->attention_forward(out32.data(), att32.data(), x32.data(), B, T, C, NH).is_ok());
      expect_same_bits("out " + tag, got.out, to_bf16_bits(out32.download()));
      EXPECT_TRUE(bit_identical(got.state, att32.download())) << tag;
      out32.upload(widened(got.out));
      ASSERT_TRUE(
          gpu_->attention_backward(dx32.data(), d.data(), x32.data(), out32.data(), att32.data(), B, T, C, NH)
              .is_ok());
      expect_same_bits("dqkv " + tag, got.dqkv, to_bf16_bits(dx32.download()));
      // bf16 qkv 2 and 4 bytes past an 8-byte boundary (as UnalignedOperandsMatchCpu shifts fp32 qkv).
      for (int offset : {1, 2}) {
        const std::string utag = tag + " qkv offset " + std::to_string(offset);
        Array<uint16_t> x16u(*gpu_, shifted(qkv16, offset));
        const Bf16Result u = run_bf16_storage(*gpu_, utag, B, T, C, NH, x16u.data() + offset, d.data());
        expect_same_bits("out " + utag, u.out, got.out);
        expect_same_bits("dqkv " + utag, u.dqkv, got.dqkv);
        EXPECT_TRUE(bit_identical(u.state, got.state)) << utag;
      }
      // fp32 qkv (the bf16 values): the same staged tiles, so the same bits.
      const std::string ftag = tag + " fp32 qkv";
      const Bf16Result f = run_bf16_storage(*gpu_, ftag, B, T, C, NH, x32.data(), d.data());
      expect_same_bits("out " + ftag, f.out, got.out);
      expect_same_bits("dqkv " + ftag, f.dqkv, got.dqkv);
      EXPECT_TRUE(bit_identical(f.state, got.state)) << ftag;
    }
  }
}

// Each attention variant of KernelVariants (kernel_variants.hpp) gives the default kernels' bits: bf16
// storage at the shapes above plus hs = 32 with qkv aligned (the variants run: the backend's count of
// variant launches says so), 1 element off and 4 elements off (8-byte but not 16-byte aligned: the
// default kernels run, counted as such), and fp32 storage with bf16 precision (default kernels).
TEST_F(CudaAttentionBf16, VariantsGiveTheDefaultBits) {
  struct Variant {
    std::string name;
    cuda::KernelVariants on;
  };
  const std::vector<Variant> variants = {
      {"in-place backward", {.attention_in_place_backward = true}},
      {"wide forward", {.attention_wide_forward = true}},
      {"both", {.attention_in_place_backward = true, .attention_wide_forward = true}},
  };
  const auto runs = [&] {
    cuda::KernelVariantRuns r;
    PERIGEE_CHECK_OR_DIE(cuda::kernel_variant_runs(*gpu_, &r));
    return r;
  };
  for (int hs : {16, 32, 48, 64, 96, 128}) {
    for (int T : {7, 64, 130, 257}) {
      const int B = 2, NH = 2, C = hs * NH;
      const std::string shape = "T=" + std::to_string(T) + " hs=" + std::to_string(hs);
      const size_t n = static_cast<size_t>(B) * T * C;
      const std::vector<float> qkv = bf16_values(random_vector(3 * n, 110 + T + hs, -1.5f, 1.5f));
      const std::vector<uint16_t> qkv16 = to_bf16_bits(qkv);
      const auto dout = random_vector(n, 111 + hs);
      const auto dqkv0 = random_vector(3 * n, 112);
      Array<float> d(*gpu_, dout);
      Array<uint16_t> x16(*gpu_, qkv16), x16_1(*gpu_, shifted(qkv16, 1)), x16_4(*gpu_, shifted(qkv16, 4));
      const Bf16Result want = run_bf16_storage(*gpu_, shape, B, T, C, NH, x16.data(), d.data());
      const AttentionResult want32 = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
      for (const Variant& v : variants) {
        ScopedKernelVariants scoped(*gpu_, v.on);
        const std::string tag = v.name + " " + shape;
        const cuda::KernelVariantRuns before = runs();
        const Bf16Result got = run_bf16_storage(*gpu_, tag, B, T, C, NH, x16.data(), d.data());
        const cuda::KernelVariantRuns after = runs();
        EXPECT_EQ(after.attention_in_place_backward - before.attention_in_place_backward,
                  v.on.attention_in_place_backward ? 1u : 0u)
            << tag;
        EXPECT_EQ(after.attention_wide_forward - before.attention_wide_forward,
                  v.on.attention_wide_forward && hs <= 64 ? 1u : 0u)
            << tag;
        expect_same_bits("out " + tag, got.out, want.out);
        expect_same_bits("dqkv " + tag, got.dqkv, want.dqkv);
        EXPECT_TRUE(bit_identical(got.state, want.state)) << tag;
        for (int offset : {1, 4}) {
          const std::string utag = tag + " qkv offset " + std::to_string(offset);
          const uint16_t* x = (offset == 1 ? x16_1.data() : x16_4.data()) + offset;
          const cuda::KernelVariantRuns u0 = runs();
          const Bf16Result u = run_bf16_storage(*gpu_, utag, B, T, C, NH, x, d.data());
          const cuda::KernelVariantRuns u1 = runs();
          EXPECT_EQ(u1.attention_in_place_backward, u0.attention_in_place_backward) << utag;
          EXPECT_EQ(u1.attention_wide_forward, u0.attention_wide_forward) << utag;
          expect_same_bits("out " + utag, u.out, want.out);
          expect_same_bits("dqkv " + utag, u.dqkv, want.dqkv);
          EXPECT_TRUE(bit_identical(u.state, want.state)) << utag;
        }
        const std::string ftag = tag + " fp32 storage";
        const AttentionResult got32 = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
        EXPECT_TRUE(bit_identical(got32.out, want32.out)) << ftag;
        EXPECT_TRUE(bit_identical(got32.dqkv, want32.dqkv)) << ftag;
        EXPECT_TRUE(bit_identical(got32.state, want32.state)) << ftag;
      }
    }
  }
}

// Which storage combinations reach native kernels and which the ActCast path (widen, fp32 op, round), as
// CudaBackend::attention_forward/attention_backward route them (act_dispatch.cu): the two give the same
// bits, so only the backend's fallback counter tells them apart. Native on a bf16-precision backend with
// a head size the bf16 kernels take: forward with bf16 out (qkv either), backward with bf16 dqkv and out
// and fp32 dout (qkv either); fp32 storage throughout takes the fp32 implementations; anything else, a
// head size the bf16 kernels do not take, or an fp32-precision backend: ActCast, once per call.
TEST_F(CudaAttentionBf16, Bf16StorageRouting) {
  const int B = 2, T = 70, NH = 2, C = 128;
  const size_t n = static_cast<size_t>(B) * T * C;
  const size_t n_att = gpu_->attention_state_size(B, T, C, NH);
  const std::vector<float> qkv = bf16_values(random_vector(3 * n, 100, -1.5f, 1.5f));
  const std::vector<float> dout = bf16_values(random_vector(n, 101));
  Array<float> x32(*gpu_, qkv), d32(*gpu_, dout);
  Array<uint16_t> x16(*gpu_, to_bf16_bits(qkv)), d16(*gpu_, to_bf16_bits(dout));
  // Runs `call`, expecting it to succeed and to take the ActCast path `casts` times (0: native).
  auto expect_casts = [](Backend& be, const std::string& what, uint64_t casts, auto call) {
    const uint64_t before = cast_fallbacks(be);
    const Status s = call();
    EXPECT_TRUE(s.is_ok()) << what << ": " << s.to_string();
    EXPECT_EQ(cast_fallbacks(be) - before, casts) << what;
  };

  // fp32 storage: the references (bf16 kernels, fp32 in and out), no cast.
  Array<float> out32(*gpu_, nan_vector(n)), att(*gpu_, nan_vector(n_att)), dx32(*gpu_, nan_vector(3 * n));
  expect_casts(*gpu_, "fp32 forward", 0,
               [&] { return gpu_->attention_forward(out32.data(), att.data(), x32.data(), B, T, C, NH); });
  const std::vector<float> out_ref = out32.download();
  const std::vector<uint16_t> out_ref16 = to_bf16_bits(out_ref);
  Array<float> o32(*gpu_, widened(out_ref16));  // `out` as bf16 storage holds it
  Array<uint16_t> o16(*gpu_, out_ref16);
  expect_casts(*gpu_, "fp32 backward", 0, [&] {
    return gpu_->attention_backward(dx32.data(), d32.data(), x32.data(), o32.data(), att.data(), B, T, C, NH);
  });
  const std::vector<float> dx_ref = dx32.download();
  const std::vector<uint16_t> dx_ref16 = to_bf16_bits(dx_ref);

  // Forward: bf16 out native with either qkv; fp32 out with bf16 qkv cast.
  for (const bool qkv_bf16 : {true, false}) {
    const std::string what = std::string("forward: bf16 out, ") + (qkv_bf16 ? "bf16" : "fp32") + " qkv";
    Array<uint16_t> out(*gpu_, std::vector<uint16_t>(n, kBf16Sentinel));
    expect_casts(*gpu_, what, 0, [&] {
      return qkv_bf16 ? gpu_->attention_forward(out.data(), att.data(), x16.data(), B, T, C, NH)
                      : gpu_->attention_forward(out.data(), att.data(), x32.data(), B, T, C, NH);
    });
    expect_same_bits(what, out.download(), out_ref16);
  }
  {
    Array<float> out(*gpu_, nan_vector(n));
    expect_casts(*gpu_, "forward: fp32 out, bf16 qkv", 1,
                 [&] { return gpu_->attention_forward(out.data(), att.data(), x16.data(), B, T, C, NH); });
    EXPECT_TRUE(bit_identical(out.download(), out_ref)) << "forward: fp32 out, bf16 qkv";
  }

  // Backward: bf16 dqkv and out with fp32 dout native with either qkv; any other mix cast.
  for (const bool qkv_bf16 : {true, false}) {
    const std::string what =
        std::string("backward: bf16 dqkv and out, ") + (qkv_bf16 ? "bf16" : "fp32") + " qkv";
    Array<uint16_t> dx(*gpu_, std::vector<uint16_t>(3 * n, kBf16Sentinel));
    expect_casts(*gpu_, what, 0, [&] {
      return qkv_bf16 ? gpu_->attention_backward(dx.data(), d32.data(), x16.data(), o16.data(), att.data(), B,
                                                 T, C, NH)
                      : gpu_->attention_backward(dx.data(), d32.data(), x32.data(), o16.data(), att.data(), B,
                                                 T, C, NH);
    });
    expect_same_bits(what, dx.download(), dx_ref16);
  }
  {
    Array<float> dx(*gpu_, nan_vector(3 * n));
    expect_casts(*gpu_, "backward: fp32 dqkv", 1, [&] {
      return gpu_->attention_backward(dx.data(), d32.data(), x16.data(), o16.data(), att.data(), B, T, C, NH);
    });
    EXPECT_TRUE(bit_identical(dx.download(), dx_ref)) << "backward: fp32 dqkv";
  }
  {
    Array<uint16_t> dx(*gpu_, std::vector<uint16_t>(3 * n, kBf16Sentinel));
    expect_casts(*gpu_, "backward: fp32 out", 1, [&] {
      return gpu_->attention_backward(dx.data(), d32.data(), x16.data(), o32.data(), att.data(), B, T, C, NH);
    });
    expect_same_bits("backward: fp32 out", dx.download(), dx_ref16);
  }
  {
    Array<uint16_t> dx(*gpu_, std::vector<uint16_t>(3 * n, kBf16Sentinel));
    expect_casts(*gpu_, "backward: bf16 dout", 1, [&] {
      return gpu_->attention_backward(dx.data(), d16.data(), x16.data(), o16.data(), att.data(), B, T, C, NH);
    });
    expect_same_bits("backward: bf16 dout", dx.download(), dx_ref16);
  }

  // hs = 8, which the bf16 kernels do not take: bf16 storage is cast around the fp32 kernel.
  {
    const int C8 = 16;
    const size_t n8 = static_cast<size_t>(B) * T * C8;
    const std::vector<float> qkv8 = bf16_values(random_vector(3 * n8, 102, -1.5f, 1.5f));
    Array<float> x(*gpu_, qkv8), out(*gpu_, nan_vector(n8));
    Array<float> att8(*gpu_, nan_vector(gpu_->attention_state_size(B, T, C8, NH)));
    Array<uint16_t> x8(*gpu_, to_bf16_bits(qkv8)), out8(*gpu_, std::vector<uint16_t>(n8, kBf16Sentinel));
    ASSERT_TRUE(gpu_->attention_forward(out.data(), att8.data(), x.data(), B, T, C8, NH).is_ok());
    expect_casts(*gpu_, "forward hs=8: bf16 out", 1,
                 [&] { return gpu_->attention_forward(out8.data(), att8.data(), x8.data(), B, T, C8, NH); });
    expect_same_bits("forward hs=8: bf16 out", out8.download(), to_bf16_bits(out.download()));
  }

  // An fp32-precision backend has no native bf16-storage attention.
  {
    Backend& fp32 = *backends().gpu;
    const size_t n_att32 = fp32.attention_state_size(B, T, C, NH);
    Array<float> x(fp32, qkv), out(fp32, nan_vector(n)), att32(fp32, nan_vector(n_att32));
    Array<uint16_t> x_16(fp32, to_bf16_bits(qkv)), out16(fp32, std::vector<uint16_t>(n, kBf16Sentinel));
    ASSERT_TRUE(fp32.attention_forward(out.data(), att32.data(), x.data(), B, T, C, NH).is_ok());
    expect_casts(fp32, "fp32 precision forward: bf16 out", 1, [&] {
      return fp32.attention_forward(out16.data(), att32.data(), x_16.data(), B, T, C, NH);
    });
    expect_same_bits("fp32 precision forward: bf16 out", out16.download(), to_bf16_bits(out.download()));
  }
}

TEST_F(CudaAttentionBf16, UnsupportedHeadSizeFallsBackToFp32) {
  // hs = 8 is not a multiple of 16: the backend runs the fp32 kernel, which agrees with the CPU to fp32
  // tolerances (the same as test_cuda_ops).
  const int B = 2, T = 70, C = 16, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  const auto qkv = random_vector(3 * n, 80, -1.5f, 1.5f);
  const auto dout = random_vector(n, 81);
  const auto dqkv0 = random_vector(3 * n, 82);
  const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
  expect_close("attention out hs=8", got.out, ref.out, 1e-5, 1e-4);
  expect_close("attention dqkv hs=8", got.dqkv, ref.dqkv, 2e-5, 2e-4);
}

// Where the bf16 kernels' shared memory does not fit (an H100 told it has sm_86/89's 99 KiB per block),
// head sizes above 64 run the fp32 kernels: fp32 storage then agrees with the CPU to fp32 tolerances (the
// bf16 kernels could not: their operands are rounded to bf16), and bf16 storage takes the ActCast path
// (forward and backward); head size 64 still runs the native bf16 kernels.
TEST_F(CudaAttentionBf16, TooLittleSharedMemoryRunsTheFp32Kernels) {
  constexpr size_t kSm86 = 101376;
  ASSERT_GT(cuda::attention_bf16_shared_bytes(128), kSm86);
  ScopedSharedMemoryLimit limit(*gpu_, kSm86);
  for (int hs : {96, 128}) {
    const int B = 2, T = 100, NH = 2, C = hs * NH;
    const std::string tag = "hs=" + std::to_string(hs);
    const size_t n = static_cast<size_t>(B) * T * C;
    const auto qkv = random_vector(3 * n, 90 + hs, -1.5f, 1.5f);
    const auto dout = random_vector(n, 91);
    const auto dqkv0 = random_vector(3 * n, 92);
    const AttentionResult ref = run_attention(*cpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    const AttentionResult got = run_attention(*gpu_, B, T, C, NH, qkv, dout, dqkv0, 1);
    expect_close("attention out " + tag, got.out, ref.out, 1e-5, 1e-4);
    expect_close("attention dqkv " + tag, got.dqkv, ref.dqkv, 2e-5, 2e-4);
    Array<float> x(*gpu_, qkv), d(*gpu_, dout);
    Array<uint16_t> out(*gpu_, n), dqkv(*gpu_, 3 * n);
    Array<float> att(*gpu_, gpu_->attention_state_size(B, T, C, NH));
    const uint64_t before = cast_fallbacks(*gpu_);
    ASSERT_TRUE(gpu_->attention_forward(out.data(), att.data(), x.data(), B, T, C, NH).is_ok()) << tag;
    ASSERT_TRUE(gpu_->attention_backward(dqkv.data(), d.data(), x.data(), out.data(), att.data(), B, T, C, NH)
                    .is_ok())
        << tag;
    EXPECT_EQ(cast_fallbacks(*gpu_), before + 2) << tag;
  }
  const int B = 1, T = 70, C = 128, NH = 2;
  const size_t n = static_cast<size_t>(B) * T * C;
  Array<float> x(*gpu_, random_vector(3 * n, 93)), d(*gpu_, random_vector(n, 94));
  run_bf16_storage(*gpu_, "hs=64 at 99 KiB", B, T, C, NH, x.data(), d.data());  // expects no ActCast
}

TEST_F(CudaAttentionBf16, RejectsBadArguments) {
  Array<float> qkv(*gpu_, 3 * 272), out(*gpu_, 272), att(*gpu_, 2);
  // Head sizes the fp32 kernel does not take either are errors in every mode.
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 136, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 1, 30, 4).code(),
            StatusCode::kInvalidArgument);  // C not a multiple of NH
  EXPECT_EQ(gpu_->attention_forward(nullptr, att.data(), qkv.data(), 1, 1, 32, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->attention_forward(out.data(), att.data(), qkv.data(), 1, 0, 32, 1).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::kernels
