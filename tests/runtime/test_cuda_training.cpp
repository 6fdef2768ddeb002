// A whole training loop on the CUDA backend against the CPU backend: a small GPT (2 layers, 4 heads of
// size 16, padded vocabulary, T not a multiple of the attention tile) trained 20 steps (forward,
// backward, global-norm clipping, AdamW with warmup and weight decay) from identical parameters on
// identical batches. The per-step losses agree within 1e-4 relative, and a second CUDA run is
// bit-identical to the first (losses and final parameters). Skipped without a usable CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "runtime/config.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"

namespace perigee::runtime {
namespace {

constexpr int kSteps = 20;
constexpr int kBatch = 4;
constexpr int kSeq = 60;

const GptShape kShape{2, 4, 64, 64, 256, 320};

struct Batch {
  std::vector<int32_t> inputs, targets;
};

// Windows of a short random "text" repeated over and over, so the model has something to learn.
std::vector<Batch> make_batches() {
  SplitMix64 rng(2024);
  std::vector<int32_t> text(300);
  for (auto& t : text) t = static_cast<int32_t>(rng.next() % 96) + 32;
  std::vector<Batch> batches(kSteps);
  for (auto& b : batches) {
    for (int s = 0; s < kBatch; ++s) {
      const size_t start = rng.next() % text.size();
      for (int t = 0; t < kSeq; ++t) {
        b.inputs.push_back(text[(start + t) % text.size()]);
        b.targets.push_back(text[(start + t + 1) % text.size()]);
      }
    }
  }
  return batches;
}

struct TrainResult {
  std::vector<double> losses;
  std::vector<float> params;
};

TrainResult train(kernels::Backend& backend, const std::vector<float>& init,
                  const std::vector<Batch>& batches) {
  TrainConfig tc;
  tc.batch_size = kBatch;
  tc.seq_len = kSeq;
  tc.steps = kSteps;
  tc.lr = 1e-3;
  tc.warmup_steps = 5;
  tc.weight_decay = 0.1;
  tc.grad_clip = 1.0;
  GptModel model;
  PERIGEE_CHECK_OR_DIE(model.init(kShape, &backend, kBatch, kSeq));
  PERIGEE_CHECK_OR_DIE(model.set_parameters(init));  // moments and gradients start zero-filled
  TrainResult r;
  for (int step = 0; step < kSteps; ++step) {
    double loss = 0.0;
    PERIGEE_CHECK_OR_DIE(model.zero_grad());
    PERIGEE_CHECK_OR_DIE(
        model.forward(batches[step].inputs.data(), batches[step].targets.data(), kBatch, kSeq, &loss));
    PERIGEE_CHECK_OR_DIE(model.backward());
    PERIGEE_CHECK_OR_DIE(optimizer_step(model, tc, step, nullptr));
    r.losses.push_back(loss);
  }
  PERIGEE_CHECK_OR_DIE(model.get_parameters(&r.params));
  return r;
}

TEST(CudaTraining, TwentyStepsMatchTheCpuAndRepeatBitForBit) {
  std::vector<kernels::cuda::DeviceInfo> devices;
  const Status probe = kernels::cuda::probe_devices(&devices);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  const Status made = kernels::cuda::make_cuda_backend(0, &gpu);
  ASSERT_TRUE(made.is_ok()) << made.to_string();
  kernels::cpu::CpuBackend cpu(2);

  std::vector<float> init;
  {
    GptModel m;
    ASSERT_TRUE(m.init(kShape, &cpu, kBatch, kSeq).is_ok());
    ASSERT_TRUE(m.init_parameters(7).is_ok());
    ASSERT_TRUE(m.get_parameters(&init).is_ok());
  }
  const std::vector<Batch> batches = make_batches();

  const TrainResult ref = train(cpu, init, batches);
  const TrainResult got = train(*gpu, init, batches);
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  double worst = 0.0;
  for (int step = 0; step < kSteps; ++step) {
    EXPECT_TRUE(std::isfinite(got.losses[step])) << "step " << step;
    EXPECT_NEAR(got.losses[step], ref.losses[step], 1e-4 * std::fabs(ref.losses[step])) << "step " << step;
    worst = std::max(worst, std::fabs(got.losses[step] - ref.losses[step]) / std::fabs(ref.losses[step]));
  }
  std::printf(
      "cuda vs cpu over %d steps: loss %.6f -> %.6f (cpu), largest relative loss difference %.3g "
      "(tolerance 1e-4)\n",
      kSteps, ref.losses.front(), ref.losses.back(), worst);
  EXPECT_LT(ref.losses.back(), ref.losses.front());  // it learns

  const TrainResult again = train(*gpu, init, batches);
  EXPECT_EQ(std::memcmp(got.losses.data(), again.losses.data(), got.losses.size() * sizeof(double)), 0);
  ASSERT_EQ(got.params.size(), again.params.size());
  EXPECT_EQ(std::memcmp(got.params.data(), again.params.data(), got.params.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace perigee::runtime
