// A whole training loop on the CUDA backend against the CPU backend: a small GPT (2 layers, 4 heads of
// size 16, padded vocabulary, T not a multiple of the attention tile) trained 20 steps (forward,
// backward, global-norm clipping, AdamW with warmup and weight decay) from identical parameters on
// identical batches, in each GPU precision. The per-step losses agree with the CPU's within 1e-4
// relative in fp32, 2e-3 with TF32 GEMMs and 2e-2 in bf16 mixed precision, the loss falls, and a second
// CUDA run is bit-identical to the first (losses and final parameters). With bf16 activation storage
// ([device] activations = "bf16") both backends store the same tensors as bf16: the CPU is then the
// reference of the CUDA native bf16 kernels (bf16 precision) and of its ActCast path (fp32 precision).
// One step's gradient is compared with the CPU's tensor by tensor in every precision, and every GPU
// run counts its cuBLASLt launches (bf16 D, GELU epilogues) and ActCast fallbacks exactly. A shape with
// the backward scratch inside the dead logits (kSharedShape) runs through the same checks; that it
// shares is checked on the CPU too, and so does every bf16 option with all the kernel variants awaiting a
// GPU measurement on (each counted as run). Skipped without a CUDA device (but for that layout check).
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
// A vocabulary wide enough that GptModel puts the backward scratch (and the forward's tmp) inside the dead
// logits (gpt_model.cpp, Acts): they hold, per N*C, 40 bytes of scratch with fp32 activations, 30 with
// bf16 activations and fp32 logits, 26 with bf16 logits, so they share from a padded vocabulary of 10 C,
// 7.5 C and 13 C on. 1024 >= 13 * 64 = 832 shares in all three storages at every N below; the shapes
// above (320 < 7.5 * 64, 136 < 7.5 * 48) never do. Sharing reuses memory the LM head's backward has just
// read: a scratch tensor overlapping live data there would corrupt the gradients or losses compared here.
// TheScratchSharingShapePutsTheBackwardScratchInTheLogits holds the layout to that.
const GptShape kSharedShape{2, 4, 64, 64, 1000, 1024};

bool same_shape(const GptShape& a, const GptShape& b) {
  return a.n_layer == b.n_layer && a.n_head == b.n_head && a.n_embd == b.n_embd && a.context == b.context &&
         a.vocab == b.vocab && a.padded_vocab == b.padded_vocab;
}

// The bytes of backward scratch GptModel moves into the logits, per N*C: d_residual, d_atty and tmp
// (fp32) and d_qkv (3 C) and d_fch (4 C) of the activations' type, and d_ln (fp32) too when the logits'
// gradient has a buffer of its own (bf16 activations with fp32 logits; otherwise the LM head's backward
// writes d_ln while reading that gradient from the logits).
size_t scratch_bytes_per_nc(kernels::DType acts, kernels::DType logits) {
  return 3 * sizeof(float) + 7 * kernels::dtype_size(acts) + (acts != logits ? sizeof(float) : 0);
}

// The scratch of a model of kSharedShape for passes of `micro` sequences really is in its logits, all of
// it, on `backend`: a layout change that gave it memory of its own again would leave the kSharedShape
// cases testing nothing new, and fails here instead.
void expect_scratch_in_logits(kernels::Backend& backend, int micro, kernels::DType acts,
                              kernels::DType logits, bool recompute) {
  const size_t nc = static_cast<size_t>(micro) * kSeq * kSharedShape.n_embd;
  EXPECT_EQ(testing::scratch_bytes_in_logits(backend, kSharedShape, micro, kSeq, acts, logits, recompute),
            scratch_bytes_per_nc(acts, logits) * nc)
      << backend.name() << ": " << kernels::dtype_name(acts) << " activations, "
      << kernels::dtype_name(logits) << " logits, passes of " << micro << (recompute ? ", recompute" : "");
}

// Runs on the CPU too (no device needed): GptModel's layout decides the sharing alike on every backend
// (only the attention state's size is the backend's, and the scratch does not depend on it), so this
// holds the GPU cases below to kSharedShape's purpose even where they skip. Every pass size they use
// (kBatch, kBatch / 2 and 1 sequences), with and without recompute, each storage; and the other shapes
// keep the scratch apart (so that a helper that always found sharing would fail here).
TEST(CudaTrainingShapes, TheScratchSharingShapePutsTheBackwardScratchInTheLogits) {
  using kernels::DType;
  kernels::cpu::CpuBackend cpu(1);
  struct Storage {
    DType acts, logits;
  };
  for (const Storage& st : {Storage{DType::kF32, DType::kF32}, Storage{DType::kBF16, DType::kF32},
                            Storage{DType::kBF16, DType::kBF16}}) {
    for (int micro : {kBatch, kBatch / 2, 1}) {
      for (bool recompute : {false, true}) {
        expect_scratch_in_logits(cpu, micro, st.acts, st.logits, recompute);
      }
    }
    for (const GptShape* other : {&kShape, &kOddShape}) {
      EXPECT_EQ(testing::scratch_bytes_in_logits(cpu, *other, kBatch, kSeq, st.acts, st.logits), 0u)
          << "C " << other->n_embd << ", vocabulary " << other->padded_vocab << ", "
          << kernels::dtype_name(st.acts) << " activations";
    }
  }
}

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
  size_t weight_cache_bytes = 0;  // the CUDA backend's weight cache while the model lived (0: none)
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
  kernels::cuda::WeightCacheStats cache;
  if (kernels::cuda::weight_cache_stats(backend, &cache).is_ok()) r.weight_cache_bytes = cache.bytes;
  return r;  // the model releases its weight cache here
}

// Counters of a CUDA backend that say which paths its ops took: cuBLASLt launches by kind, and Act op calls
// that went through the ActCast fallback (widen, fp32 op, round) instead of a native kernel.
struct PathCounts {
  kernels::cuda::LtLaunchCounts lt;
  uint64_t fallbacks = 0;
};

PathCounts path_counts(kernels::Backend& gpu) {
  PathCounts c;
  PERIGEE_CHECK_OR_DIE(kernels::cuda::lt_launch_counts(gpu, &c.lt));
  PERIGEE_CHECK_OR_DIE(kernels::cuda::act_cast_fallbacks(gpu, &c.fallbacks));
  return c;
}

// What `passes` forward + backward passes of `shape` over N positions each (training steps, or
// forward_backward's passes) must have launched between `before` and `after`, from GptModel's op
// sequence (gpt_model.cpp). In bf16 precision every GEMM is one cuBLASLt launch, fused or not (fp32 and
// TF32 precision run cuBLAS: no launch): per pass 4 per block forward (c_attn, attn c_proj, c_fc, mlp
// c_proj), 8 per block backward (dinp and dweight of each), the LM head's forward and 2 backward, and
// with recompute each block's c_attn and c_fc once more. With bf16 activations the GEMMs whose outputs
// are stored bf16 write a bf16 D: c_attn (qkv) and c_fc (fch, GELU_AUX epilogue when fused) in every
// block forward, mlp c_proj's input gradient (d_fch, DGELU epilogue when fused) in every block backward,
// and the LM head with bf16 logits; the GELU epilogues run once per block forward and backward. A bf16-D
// GEMM for which cuBLASLt has no algorithm (writes_bf16_*, with a printed note) takes the ActCast
// fallback instead, and nothing else may: with bf16 precision the native kernels cover every Act op of
// the model, and fp32 activations need no cast. Exact counts catch a GEMM that silently ran unfused or
// fell back to fp32-then-round (a missing plan, a refused launch), a bf16 output stored as fp32, an
// extra or missing GEMM, and a TF32/fp32 backend that ran the bf16 GEMMs. The fused GELU and the LM
// head's bf16 D are what their runs test: there a missing algorithm fails rather than notes. The
// writes_bf16_* and fuses_gelu_gemms probes plan for 256-byte aligned operands; a real call with a less
// aligned operand (a weight in the bf16 weight cache, kOddShape's biases) has a plan of its own, and
// should cuBLASLt lack that one the counts differ here and name the kind of launch that fell back.
void expect_pass_launches(kernels::Backend& gpu, kernels::cuda::GpuPrecision precision,
                          const PathCounts& before, const PathCounts& after, const GptShape& shape, int N,
                          int passes, kernels::DType acts, bool gelu_fusion, kernels::DType logits,
                          bool recompute, const std::string& what) {
  namespace cuda = kernels::cuda;
  using kernels::DType;
  const uint64_t L = shape.n_layer, P = passes;
  const uint64_t forwards = recompute ? 2 : 1;  // block forwards per pass
  const int C = shape.n_embd;
  const uint64_t fell_back = after.fallbacks - before.fallbacks;
  EXPECT_EQ(after.lt.refused_at_launch, before.lt.refused_at_launch)
      << what << ": cuBLASLt refused launches its plan-time checks accepted";
  if (precision != cuda::GpuPrecision::kBf16) {
    EXPECT_EQ(after.lt.launches, before.lt.launches)
        << what << ": cuBLASLt bf16 GEMMs ran in " << cuda::gpu_precision_name(precision) << " precision";
    if (acts == DType::kF32) {
      EXPECT_EQ(fell_back, 0u) << what << ": ActCast calls with fp32 storage";
    }
    return;
  }
  bool fused_fwd = false, fused_bwd = false, unused = false;
  if (gelu_fusion) {
    PERIGEE_CHECK_OR_DIE(cuda::fuses_gelu_gemms(gpu, N, C, 4 * C, acts, &fused_fwd, &unused));
    PERIGEE_CHECK_OR_DIE(cuda::fuses_gelu_gemms(gpu, N, 4 * C, C, acts, &unused, &fused_bwd));
    EXPECT_TRUE(fused_fwd && fused_bwd) << what << ": cuBLASLt has no GELU epilogue for c_fc (" << fused_fwd
                                        << ") or c_proj's input gradient (" << fused_bwd << ") at N " << N
                                        << ": the fused run tests the unfused ops";
  }
  uint64_t bf16_d = 0, fallbacks = 0;
  auto bf16_output = [&](bool native, uint64_t calls, const char* gemm) {
    if (native) {
      bf16_d += calls;
      return;
    }
    fallbacks += calls;
    std::printf("note (%s): cuBLASLt has no bf16-D algorithm for %s at N %d: ActCast fallback expected\n",
                what.c_str(), gemm, N);
  };
  if (acts == DType::kBF16) {
    bool qkv = false, fch = false, d_fch = false;
    PERIGEE_CHECK_OR_DIE(cuda::writes_bf16_gemm_outputs(gpu, N, C, 3 * C, true, &qkv));
    PERIGEE_CHECK_OR_DIE(cuda::writes_bf16_gemm_outputs(gpu, N, C, 4 * C, true, &fch));
    PERIGEE_CHECK_OR_DIE(cuda::writes_bf16_input_gradients(gpu, N, 4 * C, C, &d_fch));
    bf16_output(qkv, P * L * forwards, "c_attn (qkv)");
    bf16_output(fused_fwd || fch, P * L * forwards, "c_fc (fch)");
    bf16_output(fused_bwd || d_fch, P * L, "mlp c_proj's input gradient (d_fch)");
    if (logits == DType::kBF16) {
      bool head = false;
      PERIGEE_CHECK_OR_DIE(cuda::writes_bf16_gemm_outputs(gpu, N, C, shape.padded_vocab, false, &head));
      EXPECT_TRUE(head) << what << ": cuBLASLt has no bf16-D algorithm for the LM head (N " << N << ", " << C
                        << " -> " << shape.padded_vocab << "): the bf16 logits are an fp32 GEMM rounded";
      bf16_output(head, P, "the LM head (logits)");
    }
  }
  const uint64_t gemms = 12 * L + 3 + 2 * L * (forwards - 1);
  EXPECT_EQ(after.lt.launches - before.lt.launches, P * gemms) << what << ": cuBLASLt launches";
  EXPECT_EQ(after.lt.bf16_d - before.lt.bf16_d, bf16_d) << what << ": bf16-D launches";
  EXPECT_EQ(after.lt.gelu_aux - before.lt.gelu_aux, fused_fwd ? P * L * forwards : 0) << what << ": GELU_AUX";
  EXPECT_EQ(after.lt.dgelu - before.lt.dgelu, fused_bwd ? P * L : 0) << what << ": DGELU";
  EXPECT_EQ(fell_back, fallbacks) << what << ": ActCast fallbacks";
}

void check_against_cpu(kernels::cuda::GpuPrecision precision, double rtol,
                       kernels::DType activations = kernels::DType::kF32, bool gelu_fusion = false,
                       kernels::DType logits = kernels::DType::kF32, const GptShape& shape = kShape,
                       const kernels::cuda::KernelVariants& variants = {}) {
  std::vector<kernels::cuda::DeviceInfo> devices;
  const Status probe = kernels::cuda::probe_devices(&devices);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  const Status made = kernels::cuda::make_cuda_backend(0, &gpu, precision);
  ASSERT_TRUE(made.is_ok()) << made.to_string();
  ASSERT_TRUE(kernels::cuda::set_gelu_fusion(*gpu, gelu_fusion).is_ok());
  EXPECT_EQ(gpu->fuses_gelu(), gelu_fusion);
  ASSERT_TRUE(kernels::cuda::set_kernel_variants(*gpu, variants).is_ok());
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
  const PathCounts before = path_counts(*gpu);
  const TrainResult got = train(*gpu, shape, init, batches, activations, logits);
  expect_pass_launches(*gpu, precision, before, path_counts(*gpu), shape, kBatch * kSeq, kSteps, activations,
                       gelu_fusion, logits, false, str_cat(name, " training"));
  if (same_shape(shape, kSharedShape)) expect_scratch_in_logits(*gpu, kBatch, activations, logits, false);
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

// Every kernel variant awaiting a GPU measurement (kernels/cuda/kernel_variants.hpp) on, with every bf16
// option: the losses follow the CPU's, reruns give the same bits, and each variant really ran (the
// backend's counts of launches down each variant's path). At T = 60 a head is one 64-row tile, so the
// one-pass backward's ordering of dQ partials between key blocks does not come into play here:
// CudaAttentionOnePass (kernels_test_cuda_attention_one_pass) covers it, up to 16 tiles a head.
TEST(CudaTraining, KernelVariantsTwentyStepsMatchTheCpuAndRepeatBitForBit) {
  const kernels::cuda::KernelVariants all{.attention_in_place_backward = true,
                                          .attention_wide_forward = true,
                                          .attention_one_pass_backward = true,
                                          .crossentropy_staged = true};
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, kernels::DType::kBF16, true,
                    kernels::DType::kBF16, kShape, all);
  if (HasFatalFailure() || IsSkipped()) return;
  // A backend of its own ran the checks above; one more step here, to read the counts.
  std::unique_ptr<kernels::Backend> gpu;
  ASSERT_TRUE(kernels::cuda::make_cuda_backend(0, &gpu, kernels::cuda::GpuPrecision::kBf16).is_ok());
  ASSERT_TRUE(kernels::cuda::set_kernel_variants(*gpu, all).is_ok());
  GptModel model;
  ASSERT_TRUE(
      model.init(kShape, gpu.get(), kBatch, kSeq, kernels::DType::kBF16, kernels::DType::kBF16).is_ok());
  ASSERT_TRUE(model.init_parameters(7).is_ok());
  const std::vector<Batch> batches = make_batches();
  double loss = 0.0;
  ASSERT_TRUE(model.zero_grad().is_ok());
  ASSERT_TRUE(
      model.forward(batches[0].inputs.data(), batches[0].targets.data(), kBatch, kSeq, &loss).is_ok());
  ASSERT_TRUE(model.backward().is_ok());
  kernels::cuda::KernelVariantRuns runs;
  ASSERT_TRUE(kernels::cuda::kernel_variant_runs(*gpu, &runs).is_ok());
  const uint64_t layers = static_cast<uint64_t>(kShape.n_layer);
  EXPECT_EQ(runs.attention_wide_forward, layers);
  EXPECT_EQ(runs.attention_in_place_backward, layers);
  EXPECT_EQ(runs.attention_one_pass_backward, layers);
  EXPECT_EQ(runs.crossentropy_staged, 1u);
}

TEST(CudaTraining, Fp32WithBf16ActivationsTwentyStepsMatchTheCpu) {
  check_against_cpu(kernels::cuda::GpuPrecision::kFp32, 5e-3, kernels::DType::kBF16);
}

// The backward scratch inside the logits (kSharedShape), in each of its three layouts: fp32 (d_ln apart),
// bf16 activations with fp32 logits (d_ln in the logits too, next to the logits' own bf16 gradient)
// and every bf16 option (the scratch in bf16 logits that held their gradient in place).
TEST(CudaTraining, ScratchInTheLogitsTwentyStepsMatchTheCpuAndRepeatBitForBit) {
  using kernels::DType;
  check_against_cpu(kernels::cuda::GpuPrecision::kFp32, 1e-4, DType::kF32, false, DType::kF32, kSharedShape);
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, DType::kBF16, false, DType::kF32, kSharedShape);
  check_against_cpu(kernels::cuda::GpuPrecision::kBf16, 2e-2, DType::kBF16, true, DType::kBF16, kSharedShape);
}

// The parameters the one-step checks start from (of `shape`), and a CUDA backend in `precision` (GELU
// epilogues on or off). Callers skip first without a device (cuda_probe).
Status cuda_probe() {
  std::vector<kernels::cuda::DeviceInfo> devices;
  return kernels::cuda::probe_devices(&devices);
}
void one_step_setup(kernels::cuda::GpuPrecision precision, bool gelu_fusion, const GptShape& shape,
                    std::unique_ptr<kernels::Backend>* gpu, std::vector<float>* init) {
  PERIGEE_CHECK_OR_DIE(kernels::cuda::make_cuda_backend(0, gpu, precision));
  PERIGEE_CHECK_OR_DIE(kernels::cuda::set_gelu_fusion(**gpu, gelu_fusion));
  kernels::cpu::CpuBackend cpu(2);
  *init = testing::seeded_parameters(cpu, shape, 9);
}

// One step's gradient on the GPU against the CPU's from the same parameters and batch, tensor by tensor:
// the 20-step loss comparisons cannot see one wrong parameter gradient (a wrong operand, a lost
// bias or LayerNorm term, a tensor written instead of accumulated, scratch over live data): it moves
// its own tensor by O(1) but the loss only a little and only later. The CPU stores the same tensors as
// bf16 (its ActCast path) and computes in fp32. Tolerances, relative L2 per tensor: fp32 1e-4, where
// only the summation order differs (~1e-6); TF32 5e-3 and bf16 3e-2, where GEMM operands lose their
// mantissa past 10 and 8 bits: rounding every GEMM operand (and the attention's qkv) so on the CPU, one
// step of kShape, kSharedShape and kOddShape from 3 seeds in each storage, gave at most 8.3e-4 (TF32)
// and 8.5e-3 (bf16), the largest on LayerNorm weights and biases (sums over every position that partly
// cancel); the rest of the bf16 margin is for what that leaves out: the bf16 attention's rounded
// probabilities and the GELU epilogue's own tanh.
void check_gradients_against_cpu(kernels::cuda::GpuPrecision precision, double tol, kernels::DType acts,
                                 bool gelu_fusion, kernels::DType logits, const GptShape& shape) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  std::vector<float> init;
  one_step_setup(precision, gelu_fusion, shape, &gpu, &init);
  kernels::cpu::CpuBackend cpu(2);
  const Batch batch = make_batches().front();
  const auto ref = testing::micro_batch_pass(cpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                             kBatch, acts, logits);
  const PathCounts before = path_counts(*gpu);
  const auto got = testing::micro_batch_pass(*gpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                             kBatch, acts, logits);
  const char* name = kernels::cuda::gpu_precision_name(precision);
  expect_pass_launches(*gpu, precision, before, path_counts(*gpu), shape, kBatch * kSeq, 1, acts, gelu_fusion,
                       logits, false, str_cat(name, " one step"));
  if (same_shape(shape, kSharedShape)) expect_scratch_in_logits(*gpu, kBatch, acts, logits, false);
  EXPECT_NEAR(got.loss, ref.loss, tol * ref.loss) << name;
  ASSERT_EQ(got.grads.size(), ref.grads.size());
  const auto [tensor, diff] = testing::worst_tensor(ParameterTable::for_shape(shape), got.grads, ref.grads);
  std::printf(
      "cuda %s (C %d, vocabulary %d; %s activations, %s logits%s) vs cpu, one step: loss %.7f vs %.7f, "
      "worst tensor %s %.2e (tolerance %.0e)\n",
      name, shape.n_embd, shape.padded_vocab, kernels::dtype_name(acts), kernels::dtype_name(logits),
      gelu_fusion ? ", GELU epilogues" : "", got.loss, ref.loss, tensor.c_str(), diff, tol);
  EXPECT_LE(diff, tol) << name << ": " << tensor;
}

// fp32, TF32, bf16, and bf16 with every option (bf16 activations, GELU epilogues, bf16 logits); on the
// plain shape and with the scratch inside the logits.
TEST(CudaTraining, OneStepGradientsMatchTheCpuTensorByTensor) {
  using kernels::DType;
  using kernels::cuda::GpuPrecision;
  for (const GptShape* shape : {&kShape, &kSharedShape}) {
    check_gradients_against_cpu(GpuPrecision::kFp32, 1e-4, DType::kF32, false, DType::kF32, *shape);
    check_gradients_against_cpu(GpuPrecision::kTf32, 5e-3, DType::kF32, false, DType::kF32, *shape);
    check_gradients_against_cpu(GpuPrecision::kBf16, 3e-2, DType::kF32, false, DType::kF32, *shape);
    check_gradients_against_cpu(GpuPrecision::kBf16, 3e-2, DType::kBF16, true, DType::kBF16, *shape);
  }
}

// Gradient accumulation ([train] micro_batch) on the GPU: every CUDA op that produces a parameter
// gradient must add to it. One that wrote it instead would drop the earlier passes: an O(1) relative
// difference in its tensor, where summing the passes in another order moves it by rounding only. The
// batch of kBatch sequences in one pass against kBatch passes of one, tensor by tensor; in fp32, and in
// bf16 with every bf16 option (native bf16 kernels, cuBLASLt bf16 D and GELU epilogues, in-place
// bf16 logits). Both runs launch exactly the GEMMs expect_pass_launches counts (per pass: the GELU
// epilogues in every block, the LM head's bf16 D with bf16 logits, no ActCast fallback).
void check_micro_batches(kernels::cuda::GpuPrecision precision, double tol, kernels::DType acts,
                         bool gelu_fusion, kernels::DType logits, const GptShape& shape = kShape) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  std::vector<float> init;
  one_step_setup(precision, gelu_fusion, shape, &gpu, &init);
  const Batch batch = make_batches().front();
  const char* name = kernels::cuda::gpu_precision_name(precision);
  const PathCounts start = path_counts(*gpu);
  const auto whole = testing::micro_batch_pass(*gpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                               kBatch, acts, logits);
  const PathCounts middle = path_counts(*gpu);
  const auto parts = testing::micro_batch_pass(*gpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                               1, acts, logits);
  const PathCounts end = path_counts(*gpu);
  expect_pass_launches(*gpu, precision, start, middle, shape, kBatch * kSeq, 1, acts, gelu_fusion, logits,
                       false, str_cat(name, " one pass"));
  expect_pass_launches(*gpu, precision, middle, end, shape, kSeq, kBatch, acts, gelu_fusion, logits, false,
                       str_cat(name, " passes of 1"));
  if (same_shape(shape, kSharedShape)) {
    expect_scratch_in_logits(*gpu, kBatch, acts, logits, false);
    expect_scratch_in_logits(*gpu, 1, acts, logits, false);
  }
  EXPECT_NEAR(parts.loss, whole.loss, 1e-5 * whole.loss) << name;
  const auto [tensor, diff] =
      testing::worst_tensor(ParameterTable::for_shape(shape), parts.grads, whole.grads);
  std::printf(
      "cuda %s (vocabulary %d; %s activations, %s logits%s): %d passes of 1 vs 1 pass of %d: loss %.7f vs "
      "%.7f, worst tensor %s %.2e (tolerance %.0e)\n",
      name, shape.padded_vocab, kernels::dtype_name(acts), kernels::dtype_name(logits),
      gelu_fusion ? ", GELU epilogues" : "", kBatch, kBatch, parts.loss, whole.loss, tensor.c_str(), diff,
      tol);
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
  // The scratch inside the logits, in its three layouts (fp32; bf16 activations, fp32 logits; all bf16).
  check_micro_batches(kernels::cuda::GpuPrecision::kFp32, 1e-4, kernels::DType::kF32, false,
                      kernels::DType::kF32, kSharedShape);
  check_micro_batches(kernels::cuda::GpuPrecision::kBf16, 5e-3, kernels::DType::kBF16, false,
                      kernels::DType::kF32, kSharedShape);
  check_micro_batches(kernels::cuda::GpuPrecision::kBf16, 5e-3, kernels::DType::kBF16, true,
                      kernels::DType::kBF16, kSharedShape);
}

// Activation recomputation ([train] recompute) on the GPU: the backward's re-run of each block's
// forward must give the forward's bits (the same deterministic kernels on the same values, and
// layernorm_forward the bits of the fused residual + LayerNorm the forward ran), so the loss and
// every gradient equal the kept-activation run's bit for bit; one pass and two accumulated passes.
// The recomputing run launches the re-run c_attn and c_fc GEMMs too (in bf16 D and the GELU
// epilogue where the forward's are), and nothing falls back.
void check_recompute(kernels::cuda::GpuPrecision precision, kernels::DType acts, bool gelu_fusion,
                     kernels::DType logits, const GptShape& shape = kShape) {
  const Status probe = cuda_probe();
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  std::unique_ptr<kernels::Backend> gpu;
  std::vector<float> init;
  one_step_setup(precision, gelu_fusion, shape, &gpu, &init);
  const Batch batch = make_batches().front();
  const char* name = kernels::cuda::gpu_precision_name(precision);
  for (int micro : {kBatch, kBatch / 2}) {
    const auto kept = testing::micro_batch_pass(*gpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                                micro, acts, logits, false);
    const PathCounts before = path_counts(*gpu);
    const auto again = testing::micro_batch_pass(*gpu, shape, init, batch.inputs, batch.targets, kBatch, kSeq,
                                                 micro, acts, logits, true);
    expect_pass_launches(*gpu, precision, before, path_counts(*gpu), shape, micro * kSeq, kBatch / micro,
                         acts, gelu_fusion, logits, true, str_cat(name, " recompute, micro ", micro));
    if (same_shape(shape, kSharedShape)) {
      expect_scratch_in_logits(*gpu, micro, acts, logits, false);
      expect_scratch_in_logits(*gpu, micro, acts, logits, true);
    }
    EXPECT_EQ(again.loss, kept.loss) << name << ", micro " << micro;
    ASSERT_EQ(again.grads.size(), kept.grads.size());
    EXPECT_EQ(std::memcmp(again.grads.data(), kept.grads.data(), kept.grads.size() * sizeof(float)), 0)
        << name << " (" << kernels::dtype_name(acts) << " activations, vocabulary " << shape.padded_vocab
        << "), micro " << micro << ": worst tensor "
        << testing::worst_tensor(ParameterTable::for_shape(shape), again.grads, kept.grads).first;
  }
}

TEST(CudaTraining, RecomputeGivesTheSameGradientsBitForBit) {
  check_recompute(kernels::cuda::GpuPrecision::kFp32, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kBf16, kernels::DType::kBF16, true, kernels::DType::kBF16);
  check_recompute(kernels::cuda::GpuPrecision::kBf16, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kTf32, kernels::DType::kF32, false, kernels::DType::kF32);
  check_recompute(kernels::cuda::GpuPrecision::kFp32, kernels::DType::kBF16, false, kernels::DType::kF32);
  // The scratch inside the logits (recompute re-runs the blocks' forward around it).
  check_recompute(kernels::cuda::GpuPrecision::kFp32, kernels::DType::kF32, false, kernels::DType::kF32,
                  kSharedShape);
  check_recompute(kernels::cuda::GpuPrecision::kBf16, kernels::DType::kBF16, true, kernels::DType::kBF16,
                  kSharedShape);
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
    EXPECT_EQ(with.weight_cache_bytes, init.size() * 2) << what;
    EXPECT_EQ(on.bytes, 0u) << what << ": released with the model";
    EXPECT_EQ(without.weight_cache_bytes, 0u) << what;
    EXPECT_EQ(off.refreshes + off.hits + off.bytes, 0u) << what;
    std::printf(
        "weight cache (%s): %llu refreshes, %llu GEMM weights read from it, %zu bytes; 20 steps "
        "bit-identical to rounding each weight (last loss %.7f)\n",
        what.c_str(), static_cast<unsigned long long>(on.refreshes), static_cast<unsigned long long>(on.hits),
        with.weight_cache_bytes, with.losses.back());
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
