// A whole training loop on the CUDA backend against the CPU backend: a small GPT (2 layers, 4 heads of
// size 16, padded vocabulary, T not a multiple of the attention tile) trained 20 steps (forward,
// backward, global-norm clipping, AdamW with warmup and weight decay) from identical parameters on
// identical batches, in each GPU precision. The per-step losses agree with the CPU's within 1e-4
// relative in fp32, 2e-3 with TF32 GEMMs and 2e-2 in bf16 mixed precision, the loss falls, and a second
// CUDA run is bit-identical to the first (losses and final parameters). With bf16 activation storage
// ([device] activations = "bf16") both backends store the same tensors as bf16: the CPU is then the
// reference of the CUDA native bf16 kernels (bf16 precision) and of its ActCast path (fp32 precision).
// Skipped without a CUDA device.
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
#include "runtime/trainer.hpp"
#include "tests/runtime/gpt_model_test_util.hpp"

namespace perigee::runtime {
namespace {

constexpr int kSteps = 20;
constexpr int kBatch = 4;
constexpr int kSeq = 60;

const GptShape kShape{2, 4, 64, 64, 256, 320};
// Tensor sizes that are no multiples of 256 bytes (48-float LayerNorm weights and biases, 144- and 192-float
// GEMM biases): parameters and their cuBLASLt operands sit at different alignments from layer to layer.
const GptShape kOddShape{3, 3, 48, 64, 130, 136};

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

TrainResult train(kernels::Backend& backend, const GptShape& shape, const std::vector<float>& init,
                  const std::vector<Batch>& batches, kernels::DType activations, kernels::DType logits) {
  TrainConfig tc;
  tc.batch_size = kBatch;
  tc.seq_len = kSeq;
  tc.steps = kSteps;
  tc.lr = 1e-3;
  tc.warmup_steps = 5;
  tc.weight_decay = 0.1;
  tc.grad_clip = 1.0;
  GptModel model;
  PERIGEE_CHECK_OR_DIE(model.init(shape, &backend, kBatch, kSeq, activations, logits));
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

void check_against_cpu(kernels::cuda::GpuPrecision precision, double rtol,
                       kernels::DType activations = kernels::DType::kF32, bool gelu_fusion = false,
                       kernels::DType logits = kernels::DType::kF32, const GptShape& shape = kShape) {
  std::vector<kernels::cuda::DeviceInfo> devices;
  const Status probe = kernels::cuda::probe_devices(&devices);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  const Status made = kernels::cuda::make_cuda_backend(0, &gpu, precision);
  ASSERT_TRUE(made.is_ok()) << made.to_string();
  ASSERT_TRUE(kernels::cuda::set_gelu_fusion(*gpu, gelu_fusion).is_ok());
  EXPECT_EQ(gpu->fuses_gelu(), gelu_fusion);
  kernels::cpu::CpuBackend cpu(2);
  const char* name = kernels::cuda::gpu_precision_name(precision);

  std::vector<float> init;
  {
    GptModel m;
    ASSERT_TRUE(m.init(shape, &cpu, kBatch, kSeq).is_ok());
    ASSERT_TRUE(m.init_parameters(7).is_ok());
    ASSERT_TRUE(m.get_parameters(&init).is_ok());
  }
  const std::vector<Batch> batches = make_batches();

  const TrainResult ref = train(cpu, shape, init, batches, activations, logits);
  const TrainResult got = train(*gpu, shape, init, batches, activations, logits);
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  double worst = 0.0;
  for (int step = 0; step < kSteps; ++step) {
    EXPECT_TRUE(std::isfinite(got.losses[step])) << name << " step " << step;
    EXPECT_NEAR(got.losses[step], ref.losses[step], rtol * std::fabs(ref.losses[step]))
        << name << " step " << step;
    worst = std::max(worst, std::fabs(got.losses[step] - ref.losses[step]) / std::fabs(ref.losses[step]));
  }
  std::printf(
      "cuda %s (C %d; %s activations, %s logits%s) vs cpu over %d steps: loss %.6f -> %.6f (cpu), %.6f -> "
      "%.6f "
      "(cuda), largest relative loss difference %.3g (tolerance %.0e)\n",
      name, shape.n_embd, kernels::dtype_name(activations), kernels::dtype_name(logits),
      gelu_fusion ? ", GELU epilogues" : "", kSteps, ref.losses.front(), ref.losses.back(),
      got.losses.front(), got.losses.back(), worst, rtol);
  EXPECT_LT(ref.losses.back(), ref.losses.front());  // it learns
  EXPECT_LT(got.losses.back(), got.losses.front()) << name;

  const TrainResult again = train(*gpu, shape, init, batches, activations, logits);
  EXPECT_EQ(std::memcmp(got.losses.data(), again.losses.data(), got.losses.size() * sizeof(double)), 0)
      << name;
  ASSERT_EQ(got.params.size(), again.params.size());
  EXPECT_EQ(std::memcmp(got.params.data(), again.params.data(), got.params.size() * sizeof(float)), 0)
      << name;
}

// [fault] abft on CUDA with precision tf32/bf16: the checksums see fp32 operands the GEMM rounds.
TEST(AbftOperandRoundoff, FollowsTheDevicePrecision) {
  using kernels::DeviceKind;
  for (const char* p : {"fp32", "tf32", "bf16"})
    EXPECT_EQ(abft_operand_roundoff(DeviceKind::kCpu, p), 0.0) << p;
  EXPECT_EQ(abft_operand_roundoff(DeviceKind::kCuda, "fp32"), 0.0);
  EXPECT_EQ(abft_operand_roundoff(DeviceKind::kCuda, "tf32"), fault::kTf32OperandRoundoff);
  EXPECT_EQ(abft_operand_roundoff(DeviceKind::kCuda, "bf16"), fault::kBf16OperandRoundoff);
}

TEST(CudaTraining, TwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kFp32, 1e-4);
}

TEST(CudaTraining, Tf32TwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kTf32, 2e-3);
}

TEST(CudaTraining, Bf16TwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2);
}

TEST(CudaTraining, Bf16ActivationsTwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16);
}

// GELU in the cuBLASLt epilogues ([device] gelu_fusion), with either activation storage.
TEST(CudaTraining, Bf16GeluEpiloguesTwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kF32, true);
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16, true);
}

// bf16 logits ([device] logits): the LM head writes them as a bf16 D, the cross-entropy reads them and
// writes their gradient over them; with and without the GELU epilogues.
TEST(CudaTraining, Bf16LogitsTwentyStepsMatchTheCpuAndRepeatBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16, false,
                    kernels::DType::kBF16);
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16, true,
                    kernels::DType::kBF16);
}

// Every bf16 option on the odd shape: per-operand cuBLASLt alignments, bf16 attention (head 16).
TEST(CudaTraining, Bf16EverythingOnAnOddShapeMatchesTheCpuAndRepeatsBitForBit) {
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16, true,
                    kernels::DType::kBF16, kOddShape);
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kF32, false,
                    kernels::DType::kF32, kOddShape);
}

TEST(CudaTraining, Fp32WithBf16ActivationsTwentyStepsMatchTheCpu) {
  check_against_cpu(kernels::cuda::GpuPrecision::kFp32, 5e-3, kernels::DType::kBF16);
}

// The parameters the one-step checks start from, and a CUDA backend in `precision` (GELU epilogues on or
// off). Callers skip first without a device (cuda_probe).
Status cuda_probe() {
  std::vector<kernels::cuda::DeviceInfo> devices;
  return kernels::cuda::probe_devices(&devices);
}
void one_step_setup(kernels::cuda::GpuPrecision precision, bool gelu_fusion,
                    std::unique_ptr<kernels::Backend>* gpu, std::vector<float>* init) {
  PERIGEE_CHECK_OR_DIE(kernels::cuda::make_cuda_backend(0, gpu, precision));
  PERIGEE_CHECK_OR_DIE(kernels::cuda::set_gelu_fusion(**gpu, gelu_fusion));
  kernels::cpu::CpuBackend cpu(2);
  *init = testing::seeded_parameters(cpu, kShape, 9);
}

// Gradient accumulation ([train] micro_batch) on the GPU: every CUDA op that produces a parameter
// gradient must add to it. One that wrote it instead would drop the earlier passes: an O(1) relative
// difference in its tensor, where summing the passes in another order moves it by rounding only. The
// batch of kBatch sequences in one pass against kBatch passes of one, tensor by tensor; in fp32, and in
// bf16 with every bf16 option (native bf16 kernels, cuBLASLt bf16 D and GELU epilogues, in-place
// bf16 logits).
void check_micro_batches(kernels::cuda::GpuPrecision precision, double tol, kernels::DType acts,
                         bool gelu_fusion, kernels::DType logits) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  std::vector<float> init;
  one_step_setup(precision, gelu_fusion, &gpu, &init);
  const Batch batch = make_batches().front();
  const auto whole = testing::micro_batch_pass(*gpu, kShape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                               kBatch, acts, logits);
  kernels::cuda::LtLaunchCounts before, after;
  ASSERT_TRUE(kernels::cuda::lt_launch_counts(*gpu, &before).is_ok());
  const auto parts = testing::micro_batch_pass(*gpu, kShape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                               1, acts, logits);
  ASSERT_TRUE(kernels::cuda::lt_launch_counts(*gpu, &after).is_ok());
  if (gelu_fusion) {  // the accumulating passes really ran the GELU epilogues (no silent unfused fallback)
    EXPECT_GT(after.gelu_aux, before.gelu_aux);
    EXPECT_GT(after.dgelu, before.dgelu);
  }
  // bf16 logits: the LM head (no bias) writes them as a cuBLASLt bf16 D in every pass.
  if (logits == kernels::DType::kBF16) {
    EXPECT_GT(after.bf16_d, before.bf16_d);
  }
  const char* name = kernels::cuda::gpu_precision_name(precision);
  EXPECT_NEAR(parts.loss, whole.loss, 1e-5 * whole.loss) << name;
  const auto [tensor, diff] =
      testing::worst_tensor(ParameterTable::for_shape(kShape), parts.grads, whole.grads);
  std::printf(
      "cuda %s (%s activations, %s logits%s): %d passes of 1 vs 1 pass of %d: loss %.7f vs %.7f, "
      "worst tensor %s %.2e (tolerance %.0e)\n",
      name, kernels::dtype_name(acts), kernels::dtype_name(logits), gelu_fusion ? ", GELU epilogues" : "",
      kBatch, kBatch, parts.loss, whole.loss, tensor.c_str(), diff, tol);
  EXPECT_LE(diff, tol) << name << ": " << tensor;
}

TEST(CudaTraining, MicroBatchGradientsAddUpToTheWholeBatch) {
  check_micro_batches(kernels::cuda::GpuPrecision::kFp32, 1e-4, kernels::DType::kF32, false,
                      kernels::DType::kF32);
  // bf16: a last-bit difference between the passes' fp32 GEMM outputs (cuBLASLt may pick another
  // algorithm for another row count) can move a bf16 operand rounding by one step (2^-8).
  check_micro_batches(kernels::cuda::GpuPrecision::kBf16, 5e-3, kernels::DType::kF32, false,
                      kernels::DType::kF32);
  check_micro_batches(kernels::cuda::GpuPrecision::kBf16, 5e-3, kernels::DType::kBF16, true,
                      kernels::DType::kBF16);
  // bf16 activations with fp32 logits: the logits' gradient in a buffer of its own.
  check_micro_batches(kernels::cuda::GpuPrecision::kBf16, 5e-3, kernels::DType::kBF16, false,
                      kernels::DType::kF32);
  check_micro_batches(kernels::cuda::GpuPrecision::kTf32, 1e-3, kernels::DType::kF32, false,
                      kernels::DType::kF32);
}

// Activation recomputation ([train] recompute) on the GPU: the backward's re-run of each block's
// forward must give the forward's bits (the same deterministic kernels on the same values, and
// layernorm_forward the bits of the fused residual + LayerNorm the forward ran), so the loss and
// every gradient equal the kept-activation run's bit for bit; one pass and two accumulated passes.
void check_recompute(kernels::cuda::GpuPrecision precision, kernels::DType acts, bool gelu_fusion,
                     kernels::DType logits) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  std::vector<float> init;
  one_step_setup(precision, gelu_fusion, &gpu, &init);
  const Batch batch = make_batches().front();
  const char* name = kernels::cuda::gpu_precision_name(precision);
  for (int micro : {kBatch, kBatch / 2}) {
    const auto kept = testing::micro_batch_pass(*gpu, kShape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                                micro, acts, logits, false);
    const auto again = testing::micro_batch_pass(*gpu, kShape, init, batch.inputs, batch.targets, kBatch,
                                                 kSeq, micro, acts, logits, true);
    EXPECT_EQ(again.loss, kept.loss) << name << ", micro " << micro;
    ASSERT_EQ(again.grads.size(), kept.grads.size());
    EXPECT_EQ(std::memcmp(again.grads.data(), kept.grads.data(), kept.grads.size() * sizeof(float)), 0)
        << name << " (" << kernels::dtype_name(acts) << " activations), micro " << micro << ": worst tensor "
        << testing::worst_tensor(ParameterTable::for_shape(kShape), again.grads, kept.grads).first;
  }
}

TEST(CudaTraining, RecomputeGivesTheSameGradientsBitForBit) {
  check_recompute(kernels::cuda::GpuPrecision::kFp32, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kBf16, kernels::DType::kBF16, true, kernels::DType::kBF16);
  check_recompute(kernels::cuda::GpuPrecision::kBf16, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kTf32, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kFp32, kernels::DType::kBF16, false, kernels::DType::kF32);
}

// The bf16 weight cache ([device] weight_cache, on by default): the GEMMs read a bf16 copy of the
// parameters made once per forward pass instead of rounding each weight into scratch. The same
// rounding of the same values and, on a shape whose every tensor starts a multiple of 256 bytes into
// the copy (as in GPT-2 124M, where every tensor is a multiple of 768 elements), the same cuBLASLt
// plans: 20 steps give the uncached run's losses and parameters bit for bit, with bf16 precision alone
// and with every bf16 option, and so do accumulated passes. The cache really served the GEMMs, once
// refreshed per forward (per forward_backward with passes), and a forward after set_parameters reads
// the new weights, as a fresh model does (a stale copy would not).
const GptShape kAlignedShape{2, 4, 128, 64, 256, 256};

std::unique_ptr<kernels::Backend> bf16_backend(bool gelu_fusion, bool cache) {
  std::unique_ptr<kernels::Backend> gpu;
  PERIGEE_CHECK_OR_DIE(kernels::cuda::make_cuda_backend(0, &gpu, kernels::cuda::GpuPrecision::kBf16));
  PERIGEE_CHECK_OR_DIE(kernels::cuda::set_gelu_fusion(*gpu, gelu_fusion));
  PERIGEE_CHECK_OR_DIE(kernels::cuda::set_weight_cache(*gpu, cache));
  return gpu;
}

kernels::cuda::WeightCacheStats cache_stats(kernels::Backend& backend) {
  kernels::cuda::WeightCacheStats s;
  PERIGEE_CHECK_OR_DIE(kernels::cuda::weight_cache_stats(backend, &s));
  return s;
}

TEST(CudaTraining, WeightCacheGivesTheBitsOfRoundingEachGemmWeight) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  kernels::cpu::CpuBackend cpu(2);
  const std::vector<float> init = testing::seeded_parameters(cpu, kAlignedShape, 11);
  const std::vector<Batch> batches = make_batches();
  struct Case {
    kernels::DType acts;
    bool gelu_fusion;
    kernels::DType logits;
  };
  for (const Case& c : {Case{kernels::DType::kF32, false, kernels::DType::kF32},
                        Case{kernels::DType::kBF16, true, kernels::DType::kBF16}}) {
    auto cached = bf16_backend(c.gelu_fusion, true);
    auto plain = bf16_backend(c.gelu_fusion, false);
    const TrainResult with = train(*cached, kAlignedShape, init, batches, c.acts, c.logits);
    const TrainResult without = train(*plain, kAlignedShape, init, batches, c.acts, c.logits);
    const std::string what =
        str_cat(kernels::dtype_name(c.acts), " activations", c.gelu_fusion ? ", GELU epilogues" : "");
    EXPECT_EQ(with.losses, without.losses) << what;
    ASSERT_EQ(with.params.size(), without.params.size());
    EXPECT_EQ(std::memcmp(with.params.data(), without.params.data(), with.params.size() * sizeof(float)), 0)
        << what << ": worst tensor "
        << testing::worst_tensor(ParameterTable::for_shape(kAlignedShape), with.params, without.params).first;
    const auto on = cache_stats(*cached), off = cache_stats(*plain);
    EXPECT_EQ(on.refreshes, static_cast<uint64_t>(kSteps)) << what;  // one per forward
    // Per step at least the 4 forward and 4 input-gradient GEMM weights of each block and the LM head's.
    EXPECT_GE(on.hits, static_cast<uint64_t>(kSteps) * (8 * kAlignedShape.n_layer + 2)) << what;
    EXPECT_EQ(on.bytes, init.size() * 2) << what;
    EXPECT_EQ(off.refreshes + off.hits + off.bytes, 0u) << what;
    std::printf(
        "weight cache (%s): %llu refreshes, %llu GEMM weights read from it, %zu bytes; 20 steps "
        "bit-identical to rounding each weight (last loss %.7f)\n",
        what.c_str(), static_cast<unsigned long long>(on.refreshes), static_cast<unsigned long long>(on.hits),
        on.bytes, with.losses.back());
  }

  // Accumulated passes share one refresh and give the uncached bits.
  auto cached = bf16_backend(true, true);
  auto plain = bf16_backend(true, false);
  const Batch& batch = batches.front();
  const uint64_t before = cache_stats(*cached).refreshes;
  const auto with = testing::micro_batch_pass(*cached, kAlignedShape, init, batch.inputs, batch.targets,
                                              kBatch, kSeq, 1, kernels::DType::kBF16, kernels::DType::kBF16);
  const auto without =
      testing::micro_batch_pass(*plain, kAlignedShape, init, batch.inputs, batch.targets, kBatch, kSeq, 1,
                                kernels::DType::kBF16, kernels::DType::kBF16);
  EXPECT_EQ(cache_stats(*cached).refreshes - before, 1u);
  EXPECT_EQ(with.loss, without.loss);
  EXPECT_EQ(std::memcmp(with.grads.data(), without.grads.data(), with.grads.size() * sizeof(float)), 0);

  // New parameters reach the next forward.
  std::vector<float> other = testing::seeded_parameters(cpu, kAlignedShape, 12);
  double first = 0.0, second = 0.0, fresh = 0.0;
  {
    GptModel m;
    ASSERT_TRUE(m.init(kAlignedShape, cached.get(), kBatch, kSeq).is_ok());
    ASSERT_TRUE(m.set_parameters(init).is_ok());
    ASSERT_TRUE(m.forward(batch.inputs.data(), batch.targets.data(), kBatch, kSeq, &first).is_ok());
    ASSERT_TRUE(m.set_parameters(other).is_ok());
    ASSERT_TRUE(m.forward(batch.inputs.data(), batch.targets.data(), kBatch, kSeq, &second).is_ok());
  }
  EXPECT_EQ(cache_stats(*cached).bytes, 0u);  // released with the model
  {
    GptModel m;
    ASSERT_TRUE(m.init(kAlignedShape, plain.get(), kBatch, kSeq).is_ok());
    ASSERT_TRUE(m.set_parameters(other).is_ok());
    ASSERT_TRUE(m.forward(batch.inputs.data(), batch.targets.data(), kBatch, kSeq, &fresh).is_ok());
  }
  EXPECT_NE(second, first);
  EXPECT_EQ(second, fresh);
}

}  // namespace
}  // namespace perigee::runtime
