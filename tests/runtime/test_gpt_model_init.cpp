// GptModel::init_parameters against GPT-2's initialisation, tensor by tensor: 2-D weights and embeddings
// N(0, 0.02), the residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 L)), LayerNorm
// weights 1, every bias and LayerNorm bias 0, the padded vocabulary rows of wte 0; AdamW moments and
// gradients 0; the seed decides the values. The sample mean and standard deviation of each normal
// tensor are checked against 5 standard errors (tensors of 2,048 to 49,152 values).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"

namespace perigee::runtime {
namespace {

TEST(GptModelInit, FollowsGpt2TensorByTensor) {
  kernels::cpu::CpuBackend cpu(2);
  const GptShape shape{4, 4, 64, 32, 200, 256};  // L = 4: residual std 0.02 / sqrt(8)
  GptModel model;
  PERIGEE_CHECK_OR_DIE(model.init(shape, &cpu, 1, 8));
  PERIGEE_CHECK_OR_DIE(model.init_parameters(3));
  std::vector<float> p;
  PERIGEE_CHECK_OR_DIE(model.get_parameters(&p));
  const double residual_std = 0.02 / std::sqrt(2.0 * shape.n_layer);
  int normal = 0, residual = 0, constant = 0;
  for (const TensorView& v : model.table().views()) {
    const float* x = p.data() + v.offset;
    const bool ln = v.name.find("ln_") != std::string::npos;
    if (v.shape.size() == 1) {
      const float want = ln && v.name.ends_with(".weight") ? 1.0f : 0.0f;
      for (size_t i = 0; i < v.size; ++i) ASSERT_EQ(x[i], want) << v.name << "[" << i << "]";
      ++constant;
      continue;
    }
    size_t n = v.size;
    if (v.name == "wte.weight") {
      n = static_cast<size_t>(shape.vocab) * shape.n_embd;
      for (size_t i = n; i < v.size; ++i) ASSERT_EQ(x[i], 0.0f) << "wte padded row element " << i;
    }
    const bool proj = v.name.ends_with("attn.c_proj.weight") || v.name.ends_with("mlp.c_proj.weight");
    const double want_std = proj ? residual_std : 0.02;
    residual += proj;
    ++normal;
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; ++i) sum += x[i], sq += static_cast<double>(x[i]) * x[i];
    const double mean = sum / static_cast<double>(n);
    const double sd = std::sqrt(sq / static_cast<double>(n) - mean * mean);
    // Standard errors: of the mean sigma / sqrt(n), of the standard deviation about sigma / sqrt(2 n).
    EXPECT_LT(std::fabs(mean), 5.0 * want_std / std::sqrt(static_cast<double>(n))) << v.name;
    EXPECT_LT(std::fabs(sd - want_std), 5.0 * want_std / std::sqrt(2.0 * static_cast<double>(n)))
        << v.name << ": std " << sd << ", want " << want_std;
  }
  EXPECT_EQ(residual, 2 * shape.n_layer);
  EXPECT_GT(normal, residual);
  EXPECT_GT(constant, 0);
  // Moments and gradients start at zero.
  for (const float* buffer : {model.adam_m(), model.adam_v(), model.grads()}) {
    for (size_t i = 0; i < model.num_parameters(); ++i) ASSERT_EQ(buffer[i], 0.0f) << i;
  }
  // The seed decides: the same seed gives the same bits, another seed other values.
  std::vector<float> again, other;
  PERIGEE_CHECK_OR_DIE(model.init_parameters(3));
  PERIGEE_CHECK_OR_DIE(model.get_parameters(&again));
  PERIGEE_CHECK_OR_DIE(model.init_parameters(4));
  PERIGEE_CHECK_OR_DIE(model.get_parameters(&other));
  EXPECT_EQ(std::memcmp(again.data(), p.data(), p.size() * sizeof(float)), 0);
  size_t same = 0;
  for (size_t i = 0; i < p.size(); ++i) same += other[i] == p[i] && p[i] != 0.0f && p[i] != 1.0f;
  EXPECT_EQ(same, 0u);
}

}  // namespace
}  // namespace perigee::runtime
