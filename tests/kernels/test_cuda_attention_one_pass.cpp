// The one-pass bf16 attention backward (KernelVariants::attention_one_pass_backward,
// kernels/cuda/attention_bf16_one_pass.cu) against the default two passes on the same backend: dK and dV
// the same bits, dQ (the partials of each query tile summed in another order) within a tolerance a few
// roundings wide, every element written (outputs start as NaN sentinels), the same bits from run to run,
// with a bf16 qkv read in place too, for bf16 and fp32 storage of dqkv, head sizes 16 to 64 (above: the
// default passes run, counted as such) and T from 1 to five 64-row tiles; the two passes again past 65,535
// heads (the grid's y); and at GPT-2's shape, where 1,536 blocks order their dQ partials through the
// per-tile counters across every SM. Without a usable CUDA device every test is skipped with the probe's
// message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

// OpsTest (cuda_test_util.hpp): skips without a device; gpu_bf16_ is the bf16-precision backend.
class CudaAttentionOnePass : public OpsTest {};

struct Shape {
  int B, T, C, NH;
  size_t n() const { return static_cast<size_t>(B) * T * C; }
  std::string tag() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " hs=" + std::to_string(C / NH);
  }
};

// The backward's dqkv, widened to fp32 (bf16 storage) or as stored (fp32 storage).
struct Grads {
  std::vector<float> dqkv;
  uint64_t one_pass_runs = 0;  // launches that took the one-pass path
  uint64_t in_place_runs = 0;  // and those that read a bf16 qkv in place
};

cuda::KernelVariantRuns variant_runs(Backend& be) {
  cuda::KernelVariantRuns r;
  PERIGEE_CHECK_OR_DIE(cuda::kernel_variant_runs(be, &r));
  return r;
}

std::vector<uint16_t> bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  return h;
}

// Forward (default kernels) then the backward under `variant`, with qkv bf16 (its values are bf16 already)
// and dqkv in bf16 or fp32 storage.
Grads run(Backend& be, const Shape& s, const std::vector<float>& qkv, const std::vector<float>& dout,
          bool bf16_storage, const cuda::KernelVariants& variant) {
  const size_t n = s.n();
  Array<uint16_t> x16(be, bf16_bits(qkv));
  Array<float> x32(be, qkv), d(be, dout);
  Array<float> att(be, std::vector<float>(be.attention_state_size(s.B, s.T, s.C, s.NH), NAN));
  Grads g;
  cuda::KernelVariantRuns before, after;
  if (bf16_storage) {
    Array<uint16_t> out(be, n), dqkv(be, std::vector<uint16_t>(3 * n, 0xffff));  // a bf16 NaN
    PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), x16.data(), s.B, s.T, s.C, s.NH));
    ScopedKernelVariants scoped(be, variant);
    before = variant_runs(be);
    PERIGEE_CHECK_OR_DIE(be.attention_backward(dqkv.data(), d.data(), x16.data(), out.data(), att.data(), s.B,
                                               s.T, s.C, s.NH));
    after = variant_runs(be);
    for (uint16_t h : dqkv.download()) g.dqkv.push_back(bf16_to_float(h));
  } else {
    Array<float> out(be, n), dqkv(be, std::vector<float>(3 * n, NAN));
    PERIGEE_CHECK_OR_DIE(be.attention_forward(out.data(), att.data(), x32.data(), s.B, s.T, s.C, s.NH));
    ScopedKernelVariants scoped(be, variant);
    before = variant_runs(be);
    PERIGEE_CHECK_OR_DIE(be.attention_backward(dqkv.data(), d.data(), x32.data(), out.data(), att.data(), s.B,
                                               s.T, s.C, s.NH));
    after = variant_runs(be);
    g.dqkv = dqkv.download();
  }
  g.one_pass_runs = after.attention_one_pass_backward - before.attention_one_pass_backward;
  g.in_place_runs = after.attention_in_place_backward - before.attention_in_place_backward;
  return g;
}

// Columns [third * C, (third + 1) * C) of every row of dqkv [B, T, 3C].
std::vector<float> third_of(const std::vector<float>& dqkv, const Shape& s, int third) {
  std::vector<float> r;
  r.reserve(s.n());
  for (size_t row = 0; row < static_cast<size_t>(s.B) * s.T; ++row) {
    const float* p = dqkv.data() + row * 3 * s.C + static_cast<size_t>(third) * s.C;
    r.insert(r.end(), p, p + s.C);
  }
  return r;
}

double largest_magnitude(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// The one-pass dqkv `got` against the default passes' `want`: dK and dV the same bits; dQ within one or two
// roundings of its storage (rtol: 2^-6 for bf16, whose spacing is up to 2^-7 relative; 1e-3 for fp32) plus
// an absolute term for values that the reordered sum leaves near zero after cancellation, or that a dS
// element rounded to the neighbouring bf16 moves (S^T K-major against S Q-major: the same products, but
// nothing promises the same bits).
void expect_matches_default(const std::string& tag, const Grads& got, const Grads& want, const Shape& s,
                            bool bf16_storage) {
  for (int third : {1, 2}) {
    EXPECT_TRUE(bit_identical(third_of(got.dqkv, s, third), third_of(want.dqkv, s, third)))
        << tag << (third == 1 ? ": dK" : ": dV") << " differs from the default's bits";
  }
  const std::vector<float> want_q = third_of(want.dqkv, s, 0);
  const double scale = largest_magnitude(want_q);
  const double rtol = bf16_storage ? 1.0 / 64 : 1e-3;
  const double atol = 1e-3 * scale;
  expect_close(tag + ": dQ", third_of(got.dqkv, s, 0), want_q, atol, rtol);
}

TEST_F(CudaAttentionOnePass, MatchesTheTwoPasses) {
  const cuda::KernelVariants one_pass{.attention_one_pass_backward = true};
  const cuda::KernelVariants both{.attention_in_place_backward = true, .attention_one_pass_backward = true};
  for (int hs : {16, 32, 48, 64, 96}) {
    for (int T : {1, 7, 64, 65, 130, 257}) {
      const Shape s{2, T, hs * (hs == 64 ? 3 : 2), hs == 64 ? 3 : 2};
      std::vector<float> qkv = random_vector(3 * s.n(), 200 + T + hs, -1.5f, 1.5f);
      for (float& x : qkv) x = bf16_to_float(float_to_bf16(x));  // bf16 and fp32 qkv hold the same values
      const auto dout = random_vector(s.n(), 201 + hs);
      const bool taken = hs <= 64;
      for (bool bf16_storage : {true, false}) {
        const std::string tag = s.tag() + (bf16_storage ? " bf16 dqkv" : " fp32 dqkv");
        const Grads want = run(*gpu_bf16_, s, qkv, dout, bf16_storage, {});
        const Grads got = run(*gpu_bf16_, s, qkv, dout, bf16_storage, one_pass);
        EXPECT_EQ(want.one_pass_runs, 0u) << tag;
        EXPECT_EQ(got.one_pass_runs, taken ? 1u : 0u) << tag;
        if (taken) {
          expect_matches_default(tag, got, want, s, bf16_storage);
        } else {
          EXPECT_TRUE(bit_identical(got.dqkv, want.dqkv)) << tag << ": the default passes ran";
        }
        const Grads again = run(*gpu_bf16_, s, qkv, dout, bf16_storage, one_pass);
        EXPECT_TRUE(bit_identical(again.dqkv, got.dqkv)) << tag << ": a rerun changed bits";
        if (bf16_storage) {  // q, k and v tiles read from the bf16 qkv in place: the same operand bits
          const Grads in_place = run(*gpu_bf16_, s, qkv, dout, true, both);
          EXPECT_EQ(in_place.one_pass_runs, taken ? 1u : 0u) << tag;
          EXPECT_EQ(in_place.in_place_runs, 1u) << tag << ": the in-place variant did not run";
          EXPECT_TRUE(bit_identical(in_place.dqkv, got.dqkv)) << tag << ": with the in-place variant";
        }
      }
    }
  }
}

// More heads (B*NH) than a grid's y dimension takes: the two passes run, and give their own bits.
TEST_F(CudaAttentionOnePass, TooManyHeadsTakeTheTwoPasses) {
  const Shape s{32768, 2, 32, 2};  // 65,536 heads of size 16
  std::vector<float> qkv = random_vector(3 * s.n(), 220, -1.5f, 1.5f);
  for (float& x : qkv) x = bf16_to_float(float_to_bf16(x));
  const auto dout = random_vector(s.n(), 221);
  const Grads want = run(*gpu_bf16_, s, qkv, dout, true, {});
  const Grads got = run(*gpu_bf16_, s, qkv, dout, true, {.attention_one_pass_backward = true});
  EXPECT_EQ(got.one_pass_runs, 0u);
  EXPECT_TRUE(bit_identical(got.dqkv, want.dqkv));
  const Shape fits{32767, 2, 32, 2};  // 65,534: the one-pass kernel
  const std::vector<float> qkv2(qkv.begin(), qkv.begin() + 3 * fits.n());
  const std::vector<float> dout2(dout.begin(), dout.begin() + fits.n());
  const Grads want2 = run(*gpu_bf16_, fits, qkv2, dout2, true, {});
  const Grads got2 = run(*gpu_bf16_, fits, qkv2, dout2, true, {.attention_one_pass_backward = true});
  EXPECT_EQ(got2.one_pass_runs, 1u);
  expect_matches_default("65,534 heads", got2, want2, fits, true);
}

// GPT-2 124M's attention shape at batch 8: 96 heads of 16 key blocks, more blocks than the device holds at
// once, so the partials of a query tile come from blocks on different SMs, some dispatched long after
// others. Several runs give the same bits (a broken ordering would add partials in varying order, or read
// an accumulator before it was written).
TEST_F(CudaAttentionOnePass, GptShapeInOrderAcrossTheDevice) {
  const Shape s{8, 1024, 768, 12};
  std::vector<float> qkv = random_vector(3 * s.n(), 210, -1.5f, 1.5f);
  for (float& x : qkv) x = bf16_to_float(float_to_bf16(x));
  const auto dout = random_vector(s.n(), 211);
  const Grads want = run(*gpu_bf16_, s, qkv, dout, true, {});
  const Grads got = run(*gpu_bf16_, s, qkv, dout, true, {.attention_one_pass_backward = true});
  EXPECT_EQ(got.one_pass_runs, 1u);
  expect_matches_default("GPT-2 shape", got, want, s, true);
  for (int i = 0; i < 3; ++i) {
    const Grads again = run(*gpu_bf16_, s, qkv, dout, true, {.attention_one_pass_backward = true});
    EXPECT_TRUE(bit_identical(again.dqkv, got.dqkv)) << "rerun " << i;
  }
}

}  // namespace
}  // namespace perigee::kernels
