// Determinism of the CPU backend: every op run twice gives bit-identical outputs, and every op gives
// bit-identical outputs with 1 and 2 threads (GEMMs included: their tiling depends on shapes only).
// Shapes are large enough that the parallel paths, several GEMM tiles and several attention blocks are
// taken.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "tests/kernels/test_cpu_util.hpp"

namespace perigee::kernels::cpu::testing {
namespace {

// Runs op(backend, out) on a fresh copy of `init` for backends with 1 and 2 threads and again with 2;
// the outputs must match bitwise.
void expect_deterministic(const std::string& what, const std::vector<float>& init,
                          const std::function<Status(Backend&, float*)>& op) {
  CpuBackend one(1), two(2);
  Buffer<float> r1(two, init), r2(two, init), r3(two, init);
  ASSERT_TRUE(op(two, r2.data()).is_ok()) << what;
  ASSERT_TRUE(op(two, r3.data()).is_ok()) << what;
  EXPECT_TRUE(bit_identical(r2.data(), r3.data(), init.size())) << what << ": repeat differs";
  bool changed = false;
  for (size_t i = 0; i < init.size() && !changed; ++i) changed = r2[i] != init[i];
  EXPECT_TRUE(changed) << what << ": op wrote nothing";
  ASSERT_TRUE(op(one, r1.data()).is_ok()) << what;
  EXPECT_TRUE(bit_identical(r1.data(), r2.data(), init.size())) << what << ": 1 vs 2 threads differ";
}

TEST(CpuDeterminism, AllOps) {
  CpuBackend alloc(2);
  const int B = 2, T = 100, C = 96, NH = 4, V = 50, Vp = 64, OC = 600;
  const int N = B * T;
  const size_t NC = size_t(N) * C;
  Buffer<float> x(alloc, random_vector(NC, 1)), y(alloc, random_vector(NC, 2));
  Buffer<float> w(alloc, random_vector(size_t(OC) * C, 3)), bias(alloc, random_vector(OC, 4));
  Buffer<float> lnw(alloc, random_vector(C, 5)), lnb(alloc, random_vector(C, 6));
  Buffer<float> mean(alloc, N), rstd(alloc, N), tmp(alloc, NC);
  Buffer<float> wte(alloc, random_vector(size_t(V) * C, 7)), wpe(alloc, random_vector(size_t(T) * C, 8));
  Buffer<int32_t> tokens(alloc, random_tokens(N, V, 9)), targets(alloc, random_tokens(N, V, 10));
  Buffer<float> qkv(alloc, random_vector(3 * NC, 11)), att(alloc, size_t(B) * NH * T * T);
  Buffer<float> logits(alloc, random_vector(size_t(N) * Vp, 12, -4.0f, 4.0f)),
      dout_oc(alloc, random_vector(size_t(N) * OC, 13));
  Buffer<float> grads(alloc, random_vector(100000, 14)), m(alloc, random_vector(100000, 15, 0.0f, 0.1f));
  PERIGEE_CHECK_OR_DIE(
      alloc.layernorm_forward(tmp.data(), mean.data(), rstd.data(), x.data(), lnw.data(), lnb.data(), N, C));
  PERIGEE_CHECK_OR_DIE(alloc.attention_forward(tmp.data(), att.data(), qkv.data(), B, T, C, NH));
  const std::vector<float> zeros_nc(NC, 0.0f);

  expect_deterministic("encoder_forward", zeros_nc, [&](Backend& be, float* out) {
    return be.encoder_forward(out, tokens.data(), wte.data(), wpe.data(), B, T, C, V);
  });
  expect_deterministic("encoder_backward dwte", random_vector(size_t(V) * C, 20), [&](Backend& be, float* g) {
    std::vector<float> dwpe(size_t(T) * C, 0.0f);
    return be.encoder_backward(g, dwpe.data(), y.data(), tokens.data(), B, T, C, V);
  });
  expect_deterministic("encoder_backward dwpe", random_vector(size_t(T) * C, 21), [&](Backend& be, float* g) {
    std::vector<float> dwte(size_t(V) * C, 0.0f);
    return be.encoder_backward(dwte.data(), g, y.data(), tokens.data(), B, T, C, V);
  });
  expect_deterministic("layernorm_forward", zeros_nc, [&](Backend& be, float* out) {
    std::vector<float> mu(N), rs(N);
    return be.layernorm_forward(out, mu.data(), rs.data(), x.data(), lnw.data(), lnb.data(), N, C);
  });
  // dinp, dweight and dbias in one buffer: [dinp (N*C) | dweight (C) | dbias (C)].
  expect_deterministic("layernorm_backward", random_vector(NC + 2 * C, 22), [&](Backend& be, float* g) {
    return be.layernorm_backward(g, g + NC, g + NC + C, y.data(), x.data(), lnw.data(), mean.data(),
                                 rstd.data(), N, C);
  });
  expect_deterministic("matmul_forward", std::vector<float>(size_t(N) * OC, 0.0f),
                       [&](Backend& be, float* out) {
                         return be.matmul_forward(out, x.data(), w.data(), bias.data(), N, C, OC);
                       });
  expect_deterministic("matmul_backward", random_vector(NC + size_t(OC) * C, 23), [&](Backend& be, float* g) {
    return be.matmul_backward(g, g + NC, nullptr, dout_oc.data(), x.data(), w.data(), N, C, OC);
  });
  expect_deterministic("matmul_backward dbias", random_vector(OC, 24), [&](Backend& be, float* g) {
    return be.matmul_backward(nullptr, nullptr, g, dout_oc.data(), nullptr, nullptr, N, C, OC);
  });
  // out and att in one buffer: [out (N*C) | att (B*NH*T*T)].
  expect_deterministic(
      "attention_forward", std::vector<float>(NC + size_t(B) * NH * T * T, 0.0f),
      [&](Backend& be, float* o) { return be.attention_forward(o, o + NC, qkv.data(), B, T, C, NH); });
  expect_deterministic("attention_backward", random_vector(3 * NC, 25), [&](Backend& be, float* g) {
    return be.attention_backward(g, y.data(), qkv.data(), tmp.data(), att.data(), B, T, C, NH);
  });
  expect_deterministic("gelu_forward", zeros_nc,
                       [&](Backend& be, float* out) { return be.gelu_forward(out, x.data(), NC); });
  expect_deterministic("gelu_backward", random_vector(NC, 26),
                       [&](Backend& be, float* g) { return be.gelu_backward(g, x.data(), y.data(), NC); });
  expect_deterministic("residual_forward", zeros_nc, [&](Backend& be, float* out) {
    return be.residual_forward(out, x.data(), y.data(), NC);
  });
  // [losses (N) | probs (N*Vp)], then dlogits from those probs.
  expect_deterministic("crossentropy_forward", std::vector<float>(N + size_t(N) * Vp, 0.0f),
                       [&](Backend& be, float* o) {
                         return be.crossentropy_forward(o, o + N, logits.data(), targets.data(), N, V, Vp);
                       });
  expect_deterministic("crossentropy_backward", std::vector<float>(size_t(N) * Vp, 0.0f),
                       [&](Backend& be, float* d) {
                         return be.crossentropy_backward(d, logits.data(), targets.data(), 0.25f, N, V, Vp);
                       });
  expect_deterministic("crossentropy_forward_backward", std::vector<float>(N + size_t(N) * Vp, 0.0f),
                       [&](Backend& be, float* o) {
                         return be.crossentropy_forward_backward(o, o + N, logits.data(), targets.data(),
                                                                 0.25f, N, V, Vp);
                       });
  // [params | m | v] for AdamW.
  expect_deterministic("adamw_update", random_vector(300000, 27, 0.0f, 1.0f), [&](Backend& be, float* s) {
    AdamWParams hp;
    hp.weight_decay = 0.1f;
    hp.step = 3;
    return be.adamw_update(s, grads.data(), s + 100000, s + 200000, 100000, hp);
  });
  expect_deterministic("scale", random_vector(100000, 28),
                       [&](Backend& be, float* s) { return be.scale(s, 0.3f, 100000); });
}

}  // namespace
}  // namespace perigee::kernels::cpu::testing
