// CUDA backend against the CPU reference backend (the linear layer: test_cuda_matmul.cpp; attention:
// test_cuda_attention.cpp): every other op, forward and backward, on random inputs of several shapes
// (sizes that are not multiples of the kernels' tiles, Vp > V), each check |gpu - cpu| <= atol +
// rtol * |cpu| with the tolerances stated next to it; the semantics of the backward ops (initial
// gradients are random; parameter gradients and the layernorm's dinp accumulate: a second backward adds
// the same again; matmul and gelu input gradients are written: a second backward changes nothing); the
// aliasing cases; and determinism (each op run twice on the GPU is bit-identical). Compiled by the C++
// compiler: only the Backend interface, the factory and the device probe are used. Without a usable CUDA
// device every test is skipped with the probe's message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "tests/kernels/cuda_test_util.hpp"
#include "tests/kernels/gelu_saturation_util.hpp"
#include "tests/kernels/residual_layernorm_util.hpp"

namespace perigee::kernels {
namespace {

using namespace cuda_testing;

class CudaOps : public OpsTest {};

// ---- memory

TEST_F(CudaOps, IdentifiesItself) {
  EXPECT_EQ(gpu_->kind(), DeviceKind::kCuda);
  EXPECT_STREQ(gpu_->name(), "cuda");
}

TEST_F(CudaOps, MemoryIsZeroFilledAndCopiesRoundTrip) {
  Array<float> a(*gpu_, 1000);
  EXPECT_TRUE(bit_identical(a.download(), std::vector<float>(1000, 0.0f)));
  const std::vector<float> v = random_vector(1000, 1);
  a.upload(v);
  EXPECT_TRUE(bit_identical(a.download(), v));
  ASSERT_TRUE(gpu_->memset_zero(a.data() + 100, 200 * sizeof(float)).is_ok());
  std::vector<float> expect = v;
  std::fill(expect.begin() + 100, expect.begin() + 300, 0.0f);
  EXPECT_TRUE(bit_identical(a.download(), expect));
  ASSERT_TRUE(gpu_->synchronize().is_ok());

  void* empty = nullptr;
  ASSERT_TRUE(gpu_->allocate(&empty, 0).is_ok());
  EXPECT_NE(empty, nullptr);
  gpu_->release(empty);
  gpu_->release(nullptr);
  EXPECT_TRUE(gpu_->copy_to_host(nullptr, nullptr, 0).is_ok());
  EXPECT_EQ(gpu_->copy_to_host(nullptr, a.data(), 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->allocate(nullptr, 4).code(), StatusCode::kInvalidArgument);
}

TEST_F(CudaOps, ReportsOutOfMemory) {
  void* p = nullptr;
  const Status s = gpu_->allocate(&p, size_t{1} << 50);  // 1 PiB
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
  EXPECT_EQ(p, nullptr);
  // The backend keeps working afterwards.
  Array<float> a(*gpu_, 10);
  EXPECT_TRUE(bit_identical(a.download(), std::vector<float>(10, 0.0f)));
}

// ---- encoder

struct EncoderResult {
  std::vector<float> out, dwte, dwpe;
};

EncoderResult run_encoder(Backend& be, int B, int T, int C, int V, const std::vector<int32_t>& tokens,
                          const std::vector<float>& wte, const std::vector<float>& wpe,
                          const std::vector<float>& dout, const std::vector<float>& dwte0,
                          const std::vector<float>& dwpe0, int backward_calls) {
  Array<int32_t> tok(be, tokens);
  Array<float> w(be, wte), p(be, wpe), d(be, dout), gw(be, dwte0), gp(be, dwpe0);
  Array<float> out(be, static_cast<size_t>(B) * T * C);
  PERIGEE_CHECK_OR_DIE(be.encoder_forward(out.data(), tok.data(), w.data(), p.data(), B, T, C, V));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(be.encoder_backward(gw.data(), gp.data(), d.data(), tok.data(), B, T, C, V));
  }
  return {out.download(), gw.download(), gp.download()};
}

TEST_F(CudaOps, EncoderMatchesCpuBitForBit) {
  struct Shape {
    int B, T, C, V;
  };
  // V = 2 with 300 positions: runs of one token longer than a block of the dwte kernel.
  for (const Shape& s :
       {Shape{1, 1, 5, 3}, Shape{2, 7, 37, 11}, Shape{4, 64, 128, 50}, Shape{3, 100, 768, 2}}) {
    const std::string tag =
        "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C);
    const size_t n = static_cast<size_t>(s.B) * s.T * s.C;
    const auto tokens = random_tokens(static_cast<size_t>(s.B) * s.T, s.V, 1);
    const auto wte = random_vector(static_cast<size_t>(s.V) * s.C, 2);
    const auto wpe = random_vector(static_cast<size_t>(s.T) * s.C, 3);
    const auto dout = random_vector(n, 4);
    const auto dwte0 = random_vector(wte.size(), 5);  // backward accumulates into these
    const auto dwpe0 = random_vector(wpe.size(), 6);
    const EncoderResult ref = run_encoder(*cpu_, s.B, s.T, s.C, s.V, tokens, wte, wpe, dout, dwte0, dwpe0, 1);
    const EncoderResult got = run_encoder(*gpu_, s.B, s.T, s.C, s.V, tokens, wte, wpe, dout, dwte0, dwpe0, 1);
    // One fp32 add per element forward; backward adds the same fp32 terms in the same (position) order.
    expect_close("encoder out " + tag, got.out, ref.out, 0.0, 0.0);
    expect_close("encoder dwte " + tag, got.dwte, ref.dwte, 0.0, 0.0);
    expect_close("encoder dwpe " + tag, got.dwpe, ref.dwpe, 0.0, 0.0);
    const EncoderResult again =
        run_encoder(*gpu_, s.B, s.T, s.C, s.V, tokens, wte, wpe, dout, dwte0, dwpe0, 1);
    EXPECT_TRUE(bit_identical(got.out, again.out) && bit_identical(got.dwte, again.dwte) &&
                bit_identical(got.dwpe, again.dwpe))
        << tag;
    // Accumulation: two backward calls from zero add the gradient twice. The second call keeps adding
    // to a running fp32 sum (up to ~150 terms of |x| <= 1 per element here): 1e-4 absolute.
    const std::vector<float> zte(wte.size(), 0.0f), zpe(wpe.size(), 0.0f);
    const EncoderResult one = run_encoder(*gpu_, s.B, s.T, s.C, s.V, tokens, wte, wpe, dout, zte, zpe, 1);
    const EncoderResult two = run_encoder(*gpu_, s.B, s.T, s.C, s.V, tokens, wte, wpe, dout, zte, zpe, 2);
    expect_close("encoder dwte x2 " + tag, two.dwte, twice(one.dwte), 1e-4, 1e-5);
    expect_close("encoder dwpe x2 " + tag, two.dwpe, twice(one.dwpe), 1e-4, 1e-5);
  }
}

// Tokens outside [0, V) (the kernels cannot refuse them without a sync): their rows come out NaN, so the
// loss fails the step's checks, and they add no gradient; the other rows match the CPU.
TEST_F(CudaOps, EncoderTokensOutsideTheVocabularyGiveNaNRowsAndNoGradient) {
  const int B = 2, T = 6, C = 40, V = 5;
  const std::vector<int32_t> tokens = {0, 5, 2, -1, 4, 2, 1, 1, 70000, 3, 0, 2};
  std::vector<int32_t> valid = tokens;  // the same rows with in-range tokens, for the CPU reference
  for (int32_t& t : valid) t = (t < 0 || t >= V) ? 0 : t;
  const auto wte = random_vector(static_cast<size_t>(V) * C, 2);
  const auto wpe = random_vector(static_cast<size_t>(T) * C, 3);
  auto dout = random_vector(static_cast<size_t>(B) * T * C, 4);
  const std::vector<float> zte(wte.size(), 0.0f), zpe(wpe.size(), 0.0f);
  const EncoderResult got = run_encoder(*gpu_, B, T, C, V, tokens, wte, wpe, dout, zte, zpe, 1);
  // The reference gets no dwte from the bad rows: their dout rows are zero for its dwte. Its dwpe
  // takes every row's dout, as the GPU's does.
  const EncoderResult ref = run_encoder(*cpu_, B, T, C, V, valid, wte, wpe, dout, zte, zpe, 1);
  std::vector<float> dout_good = dout;
  for (size_t r = 0; r < tokens.size(); ++r) {
    if (tokens[r] != valid[r]) std::fill_n(dout_good.begin() + r * C, C, 0.0f);
  }
  const EncoderResult ref_wte = run_encoder(*cpu_, B, T, C, V, valid, wte, wpe, dout_good, zte, zpe, 1);
  for (size_t r = 0; r < tokens.size(); ++r) {
    for (int c = 0; c < C; ++c) {
      const float g = got.out[r * C + c], want = ref.out[r * C + c];
      if (tokens[r] != valid[r]) {
        ASSERT_TRUE(std::isnan(g)) << "row " << r << " token " << tokens[r];
      } else {
        ASSERT_EQ(g, want) << "row " << r;
      }
    }
  }
  expect_close("dwte without the bad rows", got.dwte, ref_wte.dwte, 0.0, 0.0);
  expect_close("dwpe of every row", got.dwpe, ref.dwpe, 0.0, 0.0);
}

// ---- layernorm

struct LayerNormResult {
  std::vector<float> out, mean, rstd, dinp, dweight, dbias;
};

LayerNormResult run_layernorm(Backend& be, int N, int C, const std::vector<float>& inp,
                              const std::vector<float>& w, const std::vector<float>& bias,
                              const std::vector<float>& dout, const std::vector<float>& dinp0,
                              const std::vector<float>& dw0, const std::vector<float>& db0,
                              int backward_calls) {
  Array<float> x(be, inp), wt(be, w), bs(be, bias), d(be, dout), dx(be, dinp0), dw(be, dw0), db(be, db0);
  Array<float> out(be, inp.size()), mean(be, N), rstd(be, N);
  PERIGEE_CHECK_OR_DIE(
      be.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), wt.data(), bs.data(), N, C));
  for (int i = 0; i < backward_calls; ++i) {
    PERIGEE_CHECK_OR_DIE(be.layernorm_backward(dx.data(), dw.data(), db.data(), d.data(), x.data(), wt.data(),
                                               mean.data(), rstd.data(), N, C));
  }
  return {out.download(), mean.download(), rstd.download(), dx.download(), dw.download(), db.download()};
}

// One kernel with the same bits as residual_forward then layernorm_forward (fp32 and bf16 output, the
// sum over either input or apart, C of 1 to 768), timed as one op.
TEST_F(CudaOps, ResidualLayerNormIsTheTwoOpsInOneKernel) {
  EXPECT_TRUE(gpu_->fuses_residual_layernorm());
  testing::expect_residual_layernorm_is_the_two_ops(*gpu_);
  EXPECT_EQ(testing::profiled_residual_layernorm_ops(*gpu_),
            std::set<std::string>{"residual_layernorm_forward"});
}

TEST_F(CudaOps, LayerNormMatchesCpu) {
  struct Shape {
    int N, C;
  };
  // N = 300 spans several fixed row ranges of the dweight/dbias partial sums, with a partial last one.
  // Backward paths: float4 rows (C % 4 == 0, C <= 1024: 48, 132 (a partial last float4 group), 768;
  // 896 and 1024 read dinp late), the scalar fused kernel (C = 1, 7, 130, 1028) and the two-kernel path
  // (C = 1700).
  for (const Shape& s : {Shape{9, 1}, Shape{9, 7}, Shape{300, 48}, Shape{130, 130}, Shape{70, 132},
                         Shape{64, 768}, Shape{70, 896}, Shape{70, 1024}, Shape{70, 1028}, Shape{20, 1700}}) {
    const int N = s.N, C = s.C;
    const std::string tag = "N=" + std::to_string(N) + " C=" + std::to_string(C);
    std::vector<float> inp = random_vector(static_cast<size_t>(N) * C, 10 + C, -2.0f, 3.0f);
    for (float& x : inp) x += 5.0f;  // a large mean tests the two-pass variance
    const auto w = random_vector(C, 11), bias = random_vector(C, 12);
    const auto dout = random_vector(inp.size(), 13);
    const auto dinp0 = random_vector(inp.size(), 14), dw0 = random_vector(C, 15), db0 = random_vector(C, 16);
    const LayerNormResult ref = run_layernorm(*cpu_, N, C, inp, w, bias, dout, dinp0, dw0, db0, 1);
    const LayerNormResult got = run_layernorm(*gpu_, N, C, inp, w, bias, dout, dinp0, dw0, db0, 1);
    // Statistics are double sums in another order (identical after rounding to fp32 but for rare ties);
    // the fp32 normalisation may fuse one multiply-add: a few ulp of O(1) values.
    expect_close("layernorm out " + tag, got.out, ref.out, 2e-6, 2e-6);
    expect_close("layernorm mean " + tag, got.mean, ref.mean, 0.0, 2e-7);
    expect_close("layernorm rstd " + tag, got.rstd, ref.rstd, 0.0, 2e-7);
    // dinp: double row sums, fp32 per element (a few ulp of values up to ~10); dweight/dbias: double sums
    // of N fp32 products.
    expect_close("layernorm dinp " + tag, got.dinp, ref.dinp, 1e-5, 1e-5);
    expect_close("layernorm dweight " + tag, got.dweight, ref.dweight, 1e-5, 1e-5);
    expect_close("layernorm dbias " + tag, got.dbias, ref.dbias, 1e-5, 1e-5);
    const LayerNormResult again = run_layernorm(*gpu_, N, C, inp, w, bias, dout, dinp0, dw0, db0, 1);
    EXPECT_TRUE(bit_identical(got.out, again.out) && bit_identical(got.mean, again.mean) &&
                bit_identical(got.rstd, again.rstd) && bit_identical(got.dinp, again.dinp) &&
                bit_identical(got.dweight, again.dweight) && bit_identical(got.dbias, again.dbias))
        << tag;
    const std::vector<float> zx(inp.size(), 0.0f), zc(C, 0.0f);
    const LayerNormResult one = run_layernorm(*gpu_, N, C, inp, w, bias, dout, zx, zc, zc, 1);
    const LayerNormResult two = run_layernorm(*gpu_, N, C, inp, w, bias, dout, zx, zc, zc, 2);
    expect_close("layernorm dinp x2 " + tag, two.dinp, twice(one.dinp), 1e-6, 1e-6);
    expect_close("layernorm dweight x2 " + tag, two.dweight, twice(one.dweight), 1e-6, 1e-6);
    expect_close("layernorm dbias x2 " + tag, two.dbias, twice(one.dbias), 1e-6, 1e-6);
  }
}

// ---- gelu, residual

TEST_F(CudaOps, GeluMatchesCpu) {
  for (size_t n : {size_t{1}, size_t{1000}, size_t{100003}}) {
    const std::string tag = "n=" + std::to_string(n);
    const auto inp = random_vector(n, 40, -6.0f, 6.0f), dout = random_vector(n, 41),
               dinp0 = random_vector(n, 42);
    auto run = [&](Backend& be, const std::vector<float>& d0, int calls) {
      Array<float> x(be, inp), d(be, dout), dx(be, d0), out(be, n);
      PERIGEE_CHECK_OR_DIE(be.gelu_forward(out.data(), x.data(), n));
      for (int i = 0; i < calls; ++i)
        PERIGEE_CHECK_OR_DIE(be.gelu_backward(dx.data(), x.data(), d.data(), n));
      return std::vector<std::vector<float>>{out.download(), dx.download()};
    };
    const auto ref = run(*cpu_, dinp0, 1);
    const auto got = run(*gpu_, dinp0, 1);
    // expf against the CPU's polynomial exp: a few ulp of the gate, relative.
    expect_close("gelu out " + tag, got[0], ref[0], 1e-7, 5e-6);
    // gelu' = s + 2 x s (1 - s) du/dx cancels near its zero at x ~ -0.75: absolute term.
    expect_close("gelu dinp " + tag, got[1], ref[1], 1e-6, 1e-5);
    const auto again = run(*gpu_, dinp0, 1);
    EXPECT_TRUE(bit_identical(got[0], again[0]) && bit_identical(got[1], again[1])) << tag;
    // dinp is written: what it held and a second call change nothing.
    const std::vector<float> zero(n, 0.0f);
    EXPECT_TRUE(bit_identical(run(*gpu_, zero, 2)[1], got[1])) << tag;
  }
}

TEST_F(CudaOps, GeluSaturatesFarOut) {
  testing::expect_gelu_saturates(*gpu_);
}

TEST_F(CudaOps, ResidualIsExactAndMayAlias) {
  const size_t n = 70001;
  const auto a = random_vector(n, 50), b = random_vector(n, 51);
  std::vector<float> sum(n);
  for (size_t i = 0; i < n; ++i) sum[i] = a[i] + b[i];
  Array<float> da(*gpu_, a), db(*gpu_, b), out(*gpu_, n);
  ASSERT_TRUE(gpu_->residual_forward(out.data(), da.data(), db.data(), n).is_ok());
  EXPECT_TRUE(bit_identical(out.download(), sum));                                  // one fp32 add: exact
  ASSERT_TRUE(gpu_->residual_forward(da.data(), da.data(), db.data(), n).is_ok());  // out aliases a
  EXPECT_TRUE(bit_identical(da.download(), sum));
  da.upload(a);
  ASSERT_TRUE(gpu_->residual_forward(db.data(), da.data(), db.data(), n).is_ok());  // out aliases b
  EXPECT_TRUE(bit_identical(db.download(), sum));
  EXPECT_TRUE(gpu_->residual_forward(out.data(), da.data(), db.data(), 0).is_ok());
}

// ---- crossentropy

struct CrossEntropyForward {
  std::vector<float> losses, probs;
};

// in_place: probs is the logits buffer. The probs buffer starts with garbage in every column.
CrossEntropyForward run_ce_forward(Backend& be, int N, int V, int Vp, const std::vector<float>& logits,
                                   const std::vector<int32_t>& targets, bool in_place) {
  Array<float> x(be, logits), probs(be, random_vector(logits.size(), 60, 5.0f, 9.0f)), losses(be, N);
  Array<int32_t> t(be, targets);
  float* p = in_place ? x.data() : probs.data();
  PERIGEE_CHECK_OR_DIE(be.crossentropy_forward(losses.data(), p, x.data(), t.data(), N, V, Vp));
  return {losses.download(), in_place ? x.download() : probs.download()};
}

TEST_F(CudaOps, CrossEntropyForwardMatchesCpu) {
  struct Shape {
    int N, V, Vp;
  };
  for (const Shape& s : {Shape{2, 1, 1}, Shape{5, 7, 8}, Shape{33, 1000, 1024}, Shape{3, 50257, 50304}}) {
    const std::string tag = "N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    std::vector<float> logits = random_vector(static_cast<size_t>(s.N) * s.Vp, 61, -6.0f, 6.0f);
    for (int i = 0; i < s.N; ++i) {
      for (int j = s.V; j < s.Vp; ++j)
        logits[static_cast<size_t>(i) * s.Vp + j] = 1e30f;  // padding is ignored
    }
    const auto targets = random_tokens(s.N, s.V, 62);
    // Masked logits (-inf) in the first columns of odd rows, but not at the target: each thread's first
    // column, where an online softmax starts from a -inf maximum of its own.
    for (int i = 1; i < s.N; i += 2) {
      for (int j = 0; j < std::min(s.V, 8); ++j) {
        if (j != targets[i]) logits[static_cast<size_t>(i) * s.Vp + j] = -INFINITY;
      }
    }
    for (bool in_place : {false, true}) {
      const std::string t = tag + (in_place ? " in place" : "");
      const CrossEntropyForward ref = run_ce_forward(*cpu_, s.N, s.V, s.Vp, logits, targets, in_place);
      const CrossEntropyForward got = run_ce_forward(*gpu_, s.N, s.V, s.Vp, logits, targets, in_place);
      // expf against the CPU's polynomial exp (a few ulp), double denominators.
      expect_close("crossentropy probs " + t, got.probs, ref.probs, 1e-12, 2e-6);
      expect_close("crossentropy losses " + t, got.losses, ref.losses, 1e-6, 1e-6);
      const CrossEntropyForward again = run_ce_forward(*gpu_, s.N, s.V, s.Vp, logits, targets, in_place);
      EXPECT_TRUE(bit_identical(got.probs, again.probs) && bit_identical(got.losses, again.losses)) << t;
      for (int i = 0; i < s.N; ++i) {
        for (int j = s.V; j < s.Vp; ++j) ASSERT_EQ(got.probs[static_cast<size_t>(i) * s.Vp + j], 0.0f) << t;
      }
    }
  }
}

TEST_F(CudaOps, CrossEntropyBackwardMatchesCpuExactly) {
  struct Shape {
    int N, V, Vp;
  };
  for (const Shape& s : {Shape{5, 7, 8}, Shape{33, 1000, 1024}, Shape{3, 50257, 50304}}) {
    const std::string tag = "N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    std::vector<float> probs = random_vector(static_cast<size_t>(s.N) * s.Vp, 70, 0.0f, 1.0f);
    for (int i = 0; i < s.N; ++i) {
      float* row = probs.data() + static_cast<size_t>(i) * s.Vp;
      double sum = 0.0;
      for (int j = 0; j < s.V; ++j) sum += row[j];
      for (int j = 0; j < s.V; ++j) row[j] = static_cast<float>(row[j] / sum);
      for (int j = s.V; j < s.Vp; ++j) row[j] = 0.0f;
    }
    const auto targets = random_tokens(s.N, s.V, 71);
    const float dloss = 1.0f / static_cast<float>(s.N);
    for (bool in_place : {false, true}) {
      const std::string t = tag + (in_place ? " in place" : "");
      auto run = [&](Backend& be) {
        Array<float> p(be, probs),
            d(be, random_vector(probs.size(), 72, 3.0f, 4.0f));  // garbage to overwrite
        Array<int32_t> tg(be, targets);
        float* out = in_place ? p.data() : d.data();
        PERIGEE_CHECK_OR_DIE(be.crossentropy_backward(out, p.data(), tg.data(), dloss, s.N, s.V, s.Vp));
        return in_place ? p.download() : d.download();
      };
      const auto ref = run(*cpu_);
      const auto got = run(*gpu_);
      // dloss * p and dloss * (p - 1): the same single fp32 operations as the CPU.
      expect_close("crossentropy dlogits " + t, got, ref, 0.0, 0.0);
      EXPECT_TRUE(bit_identical(got, run(*gpu_))) << t;
    }
  }
}

// The fused op against the GPU's own forward + backward (bit for bit: the same per-element operations)
// and the CPU's fused op (the forward's tolerances; dlogits = dloss * (p - onehot) inherits p's).
TEST_F(CudaOps, CrossEntropyForwardBackwardIsBothCallsInOne) {
  struct Shape {
    int N, V, Vp;
  };
  for (const Shape& s : {Shape{5, 7, 8}, Shape{4, 7, 7}, Shape{33, 1000, 1024}, Shape{3, 50257, 50304}}) {
    const std::string tag = "N=" + std::to_string(s.N) + " V=" + std::to_string(s.V);
    const auto logits = random_vector(static_cast<size_t>(s.N) * s.Vp, 63, -6.0f, 6.0f);
    const auto targets = random_tokens(s.N, s.V, 64);
    const float dloss = 1.0f / static_cast<float>(s.N);
    auto fused = [&](Backend& be, bool in_place) {
      Array<float> x(be, logits), d(be, random_vector(logits.size(), 65, 3.0f, 4.0f)), losses(be, s.N);
      Array<int32_t> t(be, targets);
      float* out = in_place ? x.data() : d.data();
      PERIGEE_CHECK_OR_DIE(
          be.crossentropy_forward_backward(losses.data(), out, x.data(), t.data(), dloss, s.N, s.V, s.Vp));
      return CrossEntropyForward{losses.download(), in_place ? x.download() : d.download()};
    };
    Array<float> x(*gpu_, logits), losses(*gpu_, s.N);
    Array<int32_t> t(*gpu_, targets);
    PERIGEE_CHECK_OR_DIE(
        gpu_->crossentropy_forward(losses.data(), x.data(), x.data(), t.data(), s.N, s.V, s.Vp));
    PERIGEE_CHECK_OR_DIE(gpu_->crossentropy_backward(x.data(), x.data(), t.data(), dloss, s.N, s.V, s.Vp));
    const std::vector<float> two_calls = x.download(), two_call_losses = losses.download();
    const CrossEntropyForward ref = fused(*cpu_, false);
    for (bool in_place : {false, true}) {
      const std::string tg = tag + (in_place ? " in place" : "");
      const CrossEntropyForward got = fused(*gpu_, in_place);
      EXPECT_TRUE(bit_identical(got.probs, two_calls)) << tg;
      EXPECT_TRUE(bit_identical(got.losses, two_call_losses)) << tg;
      expect_close("crossentropy fused dlogits " + tg, got.probs, ref.probs, 1e-12, 2e-6);
      expect_close("crossentropy fused losses " + tg, got.losses, ref.losses, 1e-6, 1e-6);
    }
  }
}

// KernelVariants::crossentropy_staged gives the default kernel's losses and dlogits bit for bit, for
// every storage pair of logits and dlogits (fp32, bf16), apart and in place, where rows are staged in
// shared memory and where the default kernel runs instead; the backend's count of staged launches says
// which ran. Staged where two rows fit in the shared memory a block may have: Vp 1024 on any device,
// 50304 in bf16 on an H100 or H200 (device-dependent, so not counted); not Vp 1001 (columns not in
// quadruples) nor 60000 (240,000 or 120,000 bytes a row); with the backend's limit lowered to sm_86's
// 99 KiB, only Vp 1024.
TEST_F(CudaOps, CrossEntropyStagedGivesTheDefaultBits) {
  constexpr int N = 5;
  constexpr size_t kSm86 = 101376;
  const auto staged_runs = [&] {
    cuda::KernelVariantRuns r;
    PERIGEE_CHECK_OR_DIE(cuda::kernel_variant_runs(*gpu_, &r));
    return r.crossentropy_staged;
  };
  for (const int Vp : {1001, 1024, 50304, 60000}) {
    const int V = Vp == 50304 ? 50257 : Vp - 3;
    const size_t n = static_cast<size_t>(N) * Vp;
    const std::vector<float> logits = random_vector(n, 70, -6.0f, 6.0f);
    const std::vector<int32_t> targets = random_tokens(N, V, 71);
    struct Result {
      std::vector<float> losses;
      std::vector<uint8_t> dlogits;
      uint64_t staged = 0;  // launches that took the staged path
    };
    const auto run = [&](bool in_bf16, bool out_bf16, bool in_place, const cuda::KernelVariants& variants) {
      ScopedKernelVariants scoped(*gpu_, variants);
      const DType in_type = in_bf16 ? DType::kBF16 : DType::kF32;
      const DType out_type = out_bf16 ? DType::kBF16 : DType::kF32;
      std::vector<uint8_t> host(n * dtype_size(in_type));
      for (size_t i = 0; i < n; ++i) {
        if (in_bf16) {
          const uint16_t b = float_to_bf16(logits[i]);
          std::memcpy(host.data() + 2 * i, &b, 2);
        } else {
          std::memcpy(host.data() + 4 * i, &logits[i], 4);
        }
      }
      Array<uint8_t> x(*gpu_, host), d(*gpu_, n * dtype_size(out_type));
      Array<float> losses(*gpu_, N);
      Array<int32_t> t(*gpu_, targets);
      const Act out = in_place ? Act(x.data(), in_type) : Act(d.data(), out_type);
      const uint64_t before = staged_runs();
      const Status s = gpu_->crossentropy_forward_backward(losses.data(), out, ConstAct(x.data(), in_type),
                                                           t.data(), 1.0f / N, N, V, Vp);
      EXPECT_TRUE(s.is_ok()) << s.to_string();
      return Result{losses.download(), in_place ? x.download() : d.download(), staged_runs() - before};
    };
    for (const bool in_bf16 : {false, true}) {
      for (const bool out_bf16 : {false, true}) {
        for (const bool in_place : {false, true}) {
          if (in_place && in_bf16 != out_bf16) continue;
          const std::string tag = "Vp " + std::to_string(Vp) + (in_bf16 ? " bf16" : " fp32") + " logits, " +
                                  (out_bf16 ? "bf16" : "fp32") + " dlogits" + (in_place ? " in place" : "");
          const Result want = run(in_bf16, out_bf16, in_place, {});
          EXPECT_EQ(want.staged, 0u) << tag;
          const Result got = run(in_bf16, out_bf16, in_place, {.crossentropy_staged = true});
          EXPECT_TRUE(bit_identical(got.losses, want.losses)) << tag;
          EXPECT_TRUE(got.dlogits == want.dlogits) << tag;
          if (Vp != 50304) {
            EXPECT_EQ(got.staged, Vp == 1024 ? 1u : 0u) << tag;
          }
          ScopedSharedMemoryLimit limit(*gpu_, kSm86);
          const Result low = run(in_bf16, out_bf16, in_place, {.crossentropy_staged = true});
          EXPECT_TRUE(bit_identical(low.losses, want.losses)) << tag << ", 99 KiB";
          EXPECT_TRUE(low.dlogits == want.dlogits) << tag << ", 99 KiB";
          EXPECT_EQ(low.staged, Vp == 1024 ? 1u : 0u) << tag << ", 99 KiB";
        }
      }
    }
  }
}

TEST_F(CudaOps, CrossEntropyRejectsBadShapes) {
  Array<float> x(*gpu_, 8), l(*gpu_, 1);
  Array<int32_t> t(*gpu_, 1);
  EXPECT_EQ(gpu_->crossentropy_forward(l.data(), x.data(), x.data(), t.data(), 1, 8, 4).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->crossentropy_backward(x.data(), x.data(), t.data(), 1.0f, 0, 8, 8).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->crossentropy_forward_backward(l.data(), x.data(), x.data(), t.data(), 1.0f, 1, 8, 4).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->crossentropy_forward_backward(l.data(), nullptr, x.data(), t.data(), 1.0f, 1, 8, 8).code(),
            StatusCode::kInvalidArgument);
}

// ---- adamw, sum_squares, scale

TEST_F(CudaOps, AdamWMatchesCpu) {
  AdamWParams hp;
  hp.lr = 1e-3f;
  hp.weight_decay = 0.1f;
  hp.step = 3;
  hp.grad_scale = 0.5f;
  for (size_t n : {size_t{1}, size_t{1000}, size_t{70001}}) {
    const std::string tag = "n=" + std::to_string(n);
    const auto p0 = random_vector(n, 80), g = random_vector(n, 81), m0 = random_vector(n, 82, -0.1f, 0.1f),
               v0 = random_vector(n, 83, 0.0f, 0.01f);
    auto run = [&](Backend& be) {
      Array<float> p(be, p0), gr(be, g), m(be, m0), v(be, v0);
      PERIGEE_CHECK_OR_DIE(be.adamw_update(p.data(), gr.data(), m.data(), v.data(), n, hp));
      return std::vector<std::vector<float>>{p.download(), m.download(), v.download()};
    };
    const auto ref = run(*cpu_);
    const auto got = run(*gpu_);
    // The same fp32 formula; the GPU may fuse multiply-adds: m can cancel to ~0 (absolute 1e-8), v
    // does not; p moves by ~lr per step.
    expect_close("adamw params " + tag, got[0], ref[0], 1e-7, 1e-6);
    expect_close("adamw m " + tag, got[1], ref[1], 1e-8, 1e-6);
    expect_close("adamw v " + tag, got[2], ref[2], 1e-12, 1e-6);
    const auto again = run(*gpu_);
    EXPECT_TRUE(bit_identical(got[0], again[0]) && bit_identical(got[1], again[1]) &&
                bit_identical(got[2], again[2]))
        << tag;
  }
  AdamWParams bad = hp;
  bad.step = 0;
  Array<float> x(*gpu_, 4);
  EXPECT_EQ(gpu_->adamw_update(x.data(), x.data(), x.data(), x.data(), 4, bad).code(),
            StatusCode::kInvalidArgument);
}

// The runs form gives the same bits as one adamw_update per run, on the GPU, and matches the CPU's runs
// form. Run sets in turn on one backend: GPT-2-like (large decayed weights between small undecayed
// biases, a gap, odd sizes), the same again (a backend may keep them), others (multiples of 8192
// elements, an empty run; a backend must notice the change), then the first again.
TEST_F(CudaOps, AdamWRunsMatchPerRunCalls) {
  const std::vector<AdamWRun> gpt2_like = {{0, 50304 * 8, true},
                                           {50304 * 8, 3, false},
                                           {50304 * 8 + 3, 70001, true},
                                           {50304 * 8 + 70010, 768, false},
                                           {50304 * 8 + 70778, 4096 * 3 + 1, true}};
  const std::vector<AdamWRun> other = {{0, 8192, false},
                                       {8192, 0, true},
                                       {8192, 8192 * 3, true},
                                       {8192 * 4 + 5, 1, true},
                                       {8192 * 5, 8191, false}};
  AdamWParams hp;
  hp.lr = 1e-3f;
  hp.weight_decay = 0.1f;
  hp.step = 5;
  hp.grad_scale = 0.5f;
  auto check = [&](const std::vector<AdamWRun>& runs, const std::string& tag) {
    const size_t n = runs.back().offset + runs.back().count + 7;  // a tail outside every run
    const auto p0 = random_vector(n, 84), g = random_vector(n, 85), m0 = random_vector(n, 86, -0.1f, 0.1f),
               v0 = random_vector(n, 87, 0.0f, 0.01f);
    auto run = [&](Backend& be, bool per_run) {
      Array<float> p(be, p0), gr(be, g), m(be, m0), v(be, v0);
      if (per_run) {
        for (const AdamWRun& r : runs) {
          AdamWParams run_hp = hp;
          run_hp.weight_decay = r.decay ? hp.weight_decay : 0.0f;
          PERIGEE_CHECK_OR_DIE(be.adamw_update(p.data() + r.offset, gr.data() + r.offset, m.data() + r.offset,
                                               v.data() + r.offset, r.count, run_hp));
        }
      } else {
        PERIGEE_CHECK_OR_DIE(be.adamw_update_runs(p.data(), gr.data(), m.data(), v.data(), runs, hp));
      }
      return std::vector<std::vector<float>>{p.download(), m.download(), v.download()};
    };
    const auto got = run(*gpu_, false);
    const auto per_run = run(*gpu_, true);
    for (int t = 0; t < 3; ++t) EXPECT_TRUE(bit_identical(got[t], per_run[t])) << tag << ": buffer " << t;
    // None outside the runs changes; inside them a parameter may stay put where the decay and the Adam
    // step cancel to under half a unit in the last place (6 of 485,493 with these seeds): the CPU
    // comparison below catches a run left out, each parameter moving by about lr.
    std::vector<char> inside(n, 0);
    size_t moved = 0, covered = 0;
    for (const AdamWRun& r : runs) {
      covered += r.count;
      std::fill(inside.begin() + r.offset, inside.begin() + r.offset + r.count, 1);
    }
    size_t changed_outside = 0;
    for (size_t i = 0; i < n; ++i) {
      if (inside[i]) {
        moved += got[0][i] != p0[i];
      } else {
        changed_outside += got[0][i] != p0[i] || got[1][i] != m0[i] || got[2][i] != v0[i];
      }
    }
    EXPECT_EQ(changed_outside, 0u) << tag;
    EXPECT_GE(moved + covered / 10000, covered) << tag;
    const auto ref = run(*cpu_, false);
    expect_close("adamw runs params " + tag, got[0], ref[0], 1e-7, 1e-6);
    expect_close("adamw runs m " + tag, got[1], ref[1], 1e-8, 1e-6);
    expect_close("adamw runs v " + tag, got[2], ref[2], 1e-12, 1e-6);
  };
  check(gpt2_like, "gpt2-like");
  check(gpt2_like, "gpt2-like again");
  check(other, "other runs");
  check(gpt2_like, "gpt2-like after the others");
  Array<float> x(*gpu_, 8);
  const std::vector<AdamWRun> overlapping = {{0, 5, true}, {4, 4, false}};
  EXPECT_EQ(gpu_->adamw_update_runs(x.data(), x.data(), x.data(), x.data(), overlapping, hp).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(CudaOps, SumSquaresMatchesCpuAndIsDeterministic) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{8191}, size_t{8192}, size_t{8193}, size_t{1000003}}) {
    const std::string tag = "n=" + std::to_string(n);
    const auto x = random_vector(n, 90, -3.0f, 3.0f);
    auto run = [&](Backend& be) {
      Array<float> d(be, x);
      double out = -1.0;
      PERIGEE_CHECK_OR_DIE(be.sum_squares(d.data(), n, &out));
      return out;
    };
    const double ref = run(*cpu_);
    const double got = run(*gpu_);
    // Exact squares summed in double in another fixed order: relative 1e-12.
    EXPECT_NEAR(got, ref, 1e-12 * std::fabs(ref)) << tag;
    const double again = run(*gpu_);
    EXPECT_EQ(std::memcmp(&got, &again, sizeof(double)), 0) << tag;
  }
}

TEST_F(CudaOps, ScaleIsExact) {
  const size_t n = 100003;
  const auto x = random_vector(n, 95);
  std::vector<float> expect(x);
  for (float& v : expect) v *= 0.37f;
  Array<float> d(*gpu_, x);
  ASSERT_TRUE(gpu_->scale(d.data(), 0.37f, n).is_ok());
  EXPECT_TRUE(bit_identical(d.download(), expect));
}

// The rounding rule of core/bf16.hpp on the GPU: the CPU's bits for every element, on aligned and
// unaligned buffers (the float4 and the scalar kernels), special values included.
TEST_F(CudaOps, Bf16ConversionMatchesCpuBitForBit) {
  for (size_t n : {size_t{1}, size_t{3}, size_t{1027}, size_t{1000003}}) {
    std::vector<float> x = random_vector(n + 3, 97, -5e4f, 5e4f);
    const uint32_t specials[] = {0x7FC00000u, 0x7F800001u, 0xFF800000u, 0x7F7F8000u,
                                 0x3F808000u, 0x3F818000u, 0x00010000u, 0x80000001u};
    for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i) {
      uint32_t u = specials[i];
      std::memcpy(&x[i], &u, sizeof(u));
    }
    auto run = [&](Backend& be, size_t offset, std::vector<float>* widened) {
      Array<float> in(be, x);
      Array<uint16_t> out(be, n + 3);
      Array<float> back(be, n + 3);
      PERIGEE_CHECK_OR_DIE(be.to_bf16(out.data() + offset, in.data() + offset, n));
      PERIGEE_CHECK_OR_DIE(be.from_bf16(back.data() + offset, out.data() + offset, 0.37f, n));
      *widened = back.download();
      return out.download();
    };
    for (size_t offset : {size_t{0}, size_t{1}, size_t{3}}) {
      const std::string tag = "n=" + std::to_string(n) + " offset " + std::to_string(offset);
      std::vector<float> cpu_back, gpu_back;
      EXPECT_EQ(run(*gpu_, offset, &gpu_back), run(*cpu_, offset, &cpu_back)) << tag;
      EXPECT_EQ(std::memcmp(gpu_back.data(), cpu_back.data(), gpu_back.size() * sizeof(float)), 0) << tag;
    }
  }
}

}  // namespace
}  // namespace perigee::kernels
