// The backend's working memory on a GPU (kernels/working_memory.hpp): GptModel::init reserves what
// the CUDA backend says a step's calls take, and real steps stay within it. Skipped without a CUDA
// device; MemoryBudget.WorkingCallsAreTheCallsATrainingStepMakes holds the list of calls to a real
// step on the CPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"

namespace perigee::runtime {
namespace {

constexpr int kBatch = 4;
constexpr int kSeq = 60;  // not a multiple of the attention tile
const GptShape kShape{2, 4, 64, 64, 256, 320};
// Tensor sizes that are no multiples of 256 bytes: parameters and their cuBLASLt operands (and the
// weight cache's copies) sit at different alignments from layer to layer.
const GptShape kOddShape{3, 3, 48, 64, 130, 136};

// kBatch * kSeq + 1 tokens of the vocabulary (inputs from the first, targets from the second).
std::vector<int32_t> random_tokens(const GptShape& shape, int seed) {
  SplitMix64 rng(static_cast<uint64_t>(seed) + 11);
  std::vector<int32_t> tokens(kBatch * kSeq + 1);
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(shape.vocab));
  return tokens;
}

// GptModel::init reserves the scratch its ops take (Backend::reserve_working_memory: what the memory
// check counts), and two training steps (forward, backward, gradient norm) then ask no more of it, so
// it never grows mid-step, in each precision and storage, with the weight cache off (every bf16 GEMM
// rounds its weight into scratch), with every kernel variant on, and on the ActCast path (fp32 GEMMs on
// bf16 activations), whose temporaries are reserved too. The bound is an upper one (a weight the cache
// holds, or a qkv read in place, asks less) but not a loose one.
TEST(CudaWorkingMemory, IsReservedAtInitAndCoversEveryStep) {
  using kernels::DType;
  using kernels::cuda::GpuPrecision;
  struct Case {
    const char* what;
    GpuPrecision precision;
    DType acts, logits;
    bool weight_cache;
    kernels::cuda::KernelVariants variants;
    const GptShape* shape;
  };
  const kernels::cuda::KernelVariants all{.attention_in_place_backward = true,
                                          .attention_wide_forward = true,
                                          .attention_one_pass_backward = true,
                                          .crossentropy_staged = true};
  const Case cases[] = {
      {"fp32", GpuPrecision::kFp32, DType::kF32, DType::kF32, true, {}, &kShape},
      {"bf16 GEMMs on fp32 activations, no weight cache",
       GpuPrecision::kBf16,
       DType::kF32,
       DType::kF32,
       false,
       {},
       &kShape},
      {"bf16 activations, odd shape", GpuPrecision::kBf16, DType::kBF16, DType::kF32, true, {}, &kOddShape},
      {"bf16 everything, every variant", GpuPrecision::kBf16, DType::kBF16, DType::kBF16, true, all, &kShape},
      {"fp32 GEMMs on bf16 activations (ActCast)",
       GpuPrecision::kFp32,
       DType::kBF16,
       DType::kF32,
       true,
       {},
       &kShape},
  };
  std::vector<kernels::cuda::DeviceInfo> devices;
  const Status probe = kernels::cuda::probe_devices(&devices);
  if (!probe.is_ok()) GTEST_SKIP() << probe.message();
  for (const Case& c : cases) {
    std::unique_ptr<kernels::Backend> gpu;
    const Status made = kernels::cuda::make_cuda_backend(0, &gpu, c.precision);
    ASSERT_TRUE(made.is_ok()) << made.to_string();
    ASSERT_TRUE(kernels::cuda::set_weight_cache(*gpu, c.weight_cache).is_ok());
    ASSERT_TRUE(kernels::cuda::set_kernel_variants(*gpu, c.variants).is_ok());
    uint64_t bound = 0;
    ASSERT_TRUE(
        gpu->working_memory_bytes(GptModel::working_calls(*c.shape, kBatch, kSeq, c.acts, c.logits), &bound)
            .is_ok());
    GptModel model;
    ASSERT_TRUE(model.init(*c.shape, gpu.get(), kBatch, kSeq, c.acts, c.logits).is_ok()) << c.what;
    kernels::cuda::ScratchUse use;
    ASSERT_TRUE(kernels::cuda::scratch_use(*gpu, &use).is_ok());
    EXPECT_EQ(use.capacity + use.cast_capacity, bound) << c.what << ": init reserves the bound";
    EXPECT_EQ(use.cast_capacity > 0, c.precision == GpuPrecision::kFp32 && c.acts == DType::kBF16) << c.what;
    EXPECT_EQ(use.largest_request, 0u) << c.what;
    const kernels::cuda::ScratchUse reserved = use;
    ASSERT_TRUE(model.init_parameters(7).is_ok());
    for (int step = 0; step < 2; ++step) {
      double loss = 0.0, norm = 0.0;
      const std::vector<int32_t> tokens = random_tokens(*c.shape, step);
      ASSERT_TRUE(model.zero_grad().is_ok());
      ASSERT_TRUE(model.forward(tokens.data(), tokens.data() + 1, kBatch, kSeq, &loss).is_ok()) << c.what;
      ASSERT_TRUE(model.backward().is_ok()) << c.what;
      ASSERT_TRUE(gradient_norm(model, &norm).is_ok()) << c.what;
    }
    ASSERT_TRUE(kernels::cuda::scratch_use(*gpu, &use).is_ok());
    EXPECT_EQ(use.capacity, reserved.capacity) << c.what << ": a step grew the scratch";
    EXPECT_EQ(use.cast_capacity, reserved.cast_capacity) << c.what << ": a step grew the ActCast temporaries";
    EXPECT_GT(use.largest_request, 0u) << c.what;
    EXPECT_LE(use.largest_request, use.capacity) << c.what;
    EXPECT_GE(3 * use.largest_request, use.capacity) << c.what << ": the bound is far above what the ops ask";
  }
}

}  // namespace
}  // namespace perigee::runtime
