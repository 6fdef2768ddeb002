// GptModel's whole-model gradient on the CPU backend against a double-precision GPT-2 written from its
// definition (tests/runtime/gpt_reference.hpp), element by element for every parameter tensor. The
// finite-difference test (test_gpt_model.cpp) checks one direction per tensor at T = 5; these shapes
// reach what it cannot: several 64-row attention blocks (T = 70), a head size of 3 and channels that
// are not a multiple of 4, T = 1, a padded vocabulary, recomputation, passes of a micro-batch, and a
// pass smaller than the buffers after a larger one.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/random.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"
#include "tests/runtime/gpt_reference.hpp"

namespace perigee::runtime {
namespace {

using testing::GptReference;
using testing::random_tokens;

// Random parameters with sizeable gradients everywhere (LayerNorm weights around 1), as in the
// finite-difference test; wte's padding rows are 0, as init_parameters leaves them.
std::vector<float> random_parameters(const GptShape& shape, const ParameterTable& table, uint64_t seed) {
  std::vector<float> p(table.total(), 0.0f);
  SplitMix64 rng(seed);
  for (const auto& v : table.views()) {
    const bool ln_weight = v.name.find("ln_") != std::string::npos && v.name.ends_with(".weight");
    size_t n = v.size;
    if (v.name == "wte.weight") n = static_cast<size_t>(shape.vocab) * shape.n_embd;
    for (size_t i = 0; i < n; ++i)
      p[v.offset + i] = static_cast<float>((ln_weight ? 1.0 : 0.0) + 0.3 * rng.normal());
  }
  return p;
}

struct Run {
  GptShape shape;
  int B = 1, T = 1;
  int micro = 0;               // sequences per pass; 0 = B
  bool recompute = false;      // GptModel::init's
  int warm_B = 0, warm_T = 0;  // a larger pass first (the buffers' size), 0 = none
};

void expect_matches_reference(const Run& r) {
  SCOPED_TRACE(::testing::Message() << "L " << r.shape.n_layer << " NH " << r.shape.n_head << " C "
                                    << r.shape.n_embd << " V " << r.shape.vocab << "/" << r.shape.padded_vocab
                                    << " B " << r.B << " T " << r.T << " micro " << r.micro << " recompute "
                                    << r.recompute << " warm " << r.warm_B << "x" << r.warm_T);
  kernels::cpu::CpuBackend cpu(2);
  GptModel m;
  const int micro = r.micro > 0 ? r.micro : r.B;
  const int max_B = std::max(micro, r.warm_B), max_T = std::max(r.T, r.warm_T);
  ASSERT_TRUE(
      m.init(r.shape, &cpu, max_B, max_T, kernels::DType::kF32, kernels::DType::kF32, r.recompute).is_ok());
  const std::vector<float> params = random_parameters(r.shape, m.table(), 11);
  ASSERT_TRUE(m.set_parameters(params).is_ok());
  double loss = 0.0;
  if (r.warm_B > 0) {  // leaves every buffer written at the larger size
    const auto wx = random_tokens(static_cast<size_t>(r.warm_B) * r.warm_T, r.shape.vocab, 91);
    const auto wy = random_tokens(wx.size(), r.shape.vocab, 92);
    ASSERT_TRUE(m.zero_grad().is_ok());
    ASSERT_TRUE(m.forward_backward(wx.data(), wy.data(), r.warm_B, r.warm_T, r.warm_B, &loss).is_ok());
  }
  const auto x = random_tokens(static_cast<size_t>(r.B) * r.T, r.shape.vocab, 3);
  const auto y = random_tokens(x.size(), r.shape.vocab, 4);
  ASSERT_TRUE(m.zero_grad().is_ok());
  ASSERT_TRUE(m.forward_backward(x.data(), y.data(), r.B, r.T, micro, &loss).is_ok());
  std::vector<float> g(m.num_parameters());
  ASSERT_TRUE(cpu.copy_to_host(g.data(), m.grads(), g.size() * sizeof(float)).is_ok());

  GptReference ref(r.shape, m.table(), params);
  const double ref_loss = ref.loss_and_grads(x, y, r.B, r.T);
  EXPECT_NEAR(loss, ref_loss, 1e-6 * std::fabs(ref_loss));
  // fp32 against double: each element within 1e-5 of its tensor's largest gradient plus 1e-4 of itself
  // (10 to 30 times the worst error seen), and the tensor's relative L2 error below 1e-5.
  for (const auto& v : m.table().views()) {
    double largest = 0.0, err2 = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < v.size; ++i) largest = std::max(largest, std::fabs(ref.grads()[v.offset + i]));
    ASSERT_GT(largest, 0.0) << v.name << " has no gradient in the reference";
    int wrong = 0;
    for (size_t i = 0; i < v.size; ++i) {
      const double want = ref.grads()[v.offset + i], got = g[v.offset + i];
      err2 += (got - want) * (got - want);
      ref2 += want * want;
      if (std::fabs(got - want) > 1e-5 * largest + 1e-4 * std::fabs(want)) {
        if (++wrong <= 3) ADD_FAILURE() << v.name << "[" << i << "] = " << got << ", reference " << want;
      }
    }
    EXPECT_EQ(wrong, 0) << v.name;
    EXPECT_LT(std::sqrt(err2 / ref2), 1e-5) << v.name;
  }
  const auto* wte = m.table().find("wte.weight");
  for (size_t i = static_cast<size_t>(r.shape.vocab) * r.shape.n_embd; i < wte->size; ++i)
    ASSERT_EQ(g[wte->offset + i], 0.0f) << "padding row gradient at " << i;
}

TEST(GptModelReference, SeveralAttentionBlocksOddHeadSizeAndPaddedVocab) {
  // hs 3, C 9 (not a multiple of 4), T 70 (two 64-row query blocks), Vp > V.
  expect_matches_reference({.shape = {2, 3, 9, 70, 50, 64}, .B = 2, .T = 70});
}

TEST(GptModelReference, OneTokenSequences) {
  expect_matches_reference({.shape = {1, 1, 5, 1, 17, 24}, .B = 3, .T = 1});
}

TEST(GptModelReference, RecomputeAndMicroBatches) {
  const GptShape shape{2, 2, 12, 40, 33, 64};
  expect_matches_reference({.shape = shape, .B = 4, .T = 33, .micro = 2});
  expect_matches_reference({.shape = shape, .B = 4, .T = 33, .micro = 1, .recompute = true});
}

TEST(GptModelReference, APassSmallerThanTheBuffersAfterALargerOne) {
  expect_matches_reference({.shape = {2, 2, 8, 40, 30, 64}, .B = 2, .T = 17, .warm_B = 3, .warm_T = 40});
}

}  // namespace
}  // namespace perigee::runtime
