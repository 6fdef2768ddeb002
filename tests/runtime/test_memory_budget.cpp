// The memory budget (runtime/memory_budget.hpp): byte formatting, the fit check and its message, and
// GptModel::memory_items against what GptModel::init really allocates, and GptModel::working_calls
// against the calls a training step makes.
#include <gtest/gtest.h>

#include "fault/abft_backend.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/data_loader.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/memory_budget.hpp"
#include "runtime/optimizer.hpp"

namespace perigee::runtime {
namespace {

TEST(MemoryBudget, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(uint64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(uint64_t{200} << 40), "200.0 TiB");
  EXPECT_EQ(format_bytes(UINT64_MAX), "more than 16 EiB");
}

TEST(MemoryBudget, TotalsSaturate) {
  EXPECT_EQ(saturating_add(UINT64_MAX - 1, 2), UINT64_MAX);
  EXPECT_EQ(saturating_mul(uint64_t{1} << 40, uint64_t{1} << 30), UINT64_MAX);
  EXPECT_EQ(saturating_mul(0, UINT64_MAX), 0u);
  MemoryDemand d{"m", 0, {{"a", uint64_t{1} << 62}, {"b", uint64_t{1} << 62}}, 8, {{"c", 5}}};
  EXPECT_EQ(d.total(), UINT64_MAX);
}

TEST(MemoryBudget, FitsUpToTheLastByte) {
  MemoryDemand d{"test memory", 1000, {{"state", 300}, {"activations", 100}}, 2, {{"staging", 200}}};
  EXPECT_EQ(d.total(), 1000u);
  EXPECT_TRUE(check_fits(d, "advice").is_ok());
  d.available = 999;
  const Status s = check_fits(d, "Do less.");
  ASSERT_EQ(s.code(), StatusCode::kOutOfMemory);
  const std::string want =
      "the job does not fit in test memory: it needs 1000 B, 999 B is free (short by 1 B):\n"
      "    300 B  state\n    100 B  activations\n    = 400 B per rank, x 2 ranks sharing it\n"
      "    200 B  staging\n  Do less.";
  EXPECT_EQ(s.message(), want);
}

size_t item_bytes(const std::vector<MemoryItem>& items, const std::string& prefix) {
  for (const auto& i : items)
    if (i.what.starts_with(prefix)) return i.bytes;
  ADD_FAILURE() << "no item " << prefix;
  return 0;
}

// The estimate is the allocation: every storage choice, with and without recomputation.
TEST(MemoryBudget, ModelItemsAreWhatInitAllocates) {
  using kernels::DType;
  const GptShape shape{3, 4, 64, 32, 200, 256};
  struct Case {
    DType acts, logits;
    bool recompute;
  };
  for (const Case c : {Case{DType::kF32, DType::kF32, false}, Case{DType::kBF16, DType::kF32, false},
                       Case{DType::kBF16, DType::kBF16, false}, Case{DType::kF32, DType::kF32, true},
                       Case{DType::kBF16, DType::kBF16, true}}) {
    kernels::cpu::CpuBackend cpu(1);
    const auto items = GptModel::memory_items(shape, cpu, 3, 32, c.acts, c.logits, c.recompute);
    GptModel m;
    ASSERT_TRUE(m.init(shape, &cpu, 3, 32, c.acts, c.logits, c.recompute).is_ok());
    const std::string what = std::string(kernels::dtype_name(c.acts)) + "/" + kernels::dtype_name(c.logits) +
                             (c.recompute ? " recompute" : "");
    EXPECT_EQ(item_bytes(items, "parameters"), 16 * m.num_parameters()) << what;
    EXPECT_EQ(item_bytes(items, "activations"), m.activation_bytes()) << what;
    EXPECT_EQ(item_bytes(items, "input and target tokens"), 2u * 3 * 32 * 4) << what;
    // bf16 storage adds the CPU's fp32 temporaries, which init reserves.
    if (c.acts == DType::kBF16) {
      EXPECT_EQ(item_bytes(items, "cpu backend's working memory"), cpu.held_working_bytes()) << what;
    }
    EXPECT_EQ(items.size(), c.acts == DType::kBF16 ? 4u : 3u) << what;
  }
}

// With bf16 storage the CPU backend widens into fp32 temporaries: it counts the largest call's and init
// reserves exactly that, so a training step grows nothing. Here the LM head's GEMMs are the largest,
// [N, C] + [N, Vp] floats; the cross-entropy works a row at a time (its two [N, Vp] fp32 copies, twice
// as large, are gone).
TEST(MemoryBudget, CpuCountsAndReservesItsBf16Temporaries) {
  using kernels::DType;
  const GptShape shape{1, 2, 16, 32, 1000, 1024};
  const int B = 3, T = 32, N = B * T;
  const uint64_t lm_head = (uint64_t{96} * 16 + uint64_t{96} * 1024) * sizeof(float);
  for (DType logits : {DType::kF32, DType::kBF16}) {
    kernels::cpu::CpuBackend cpu(2);
    uint64_t bytes = 0;
    ASSERT_TRUE(
        cpu.working_memory_bytes(GptModel::working_calls(shape, B, T, DType::kBF16, logits), &bytes).is_ok());
    EXPECT_EQ(bytes, lm_head) << kernels::dtype_name(logits);
    uint64_t none = 1;
    ASSERT_TRUE(
        cpu.working_memory_bytes(GptModel::working_calls(shape, B, T, DType::kF32, DType::kF32), &none)
            .is_ok());
    EXPECT_EQ(none, 0u);
    GptModel m;
    ASSERT_TRUE(m.init(shape, &cpu, B, T, DType::kBF16, logits).is_ok());
    EXPECT_EQ(cpu.held_working_bytes(), lm_head);
    ASSERT_TRUE(m.init_parameters(3).is_ok());
    std::vector<int32_t> tokens(N);
    for (int i = 0; i < N; ++i) tokens[i] = (i * 37) % shape.vocab;
    double loss = 0.0;
    ASSERT_TRUE(m.zero_grad().is_ok());
    ASSERT_TRUE(m.forward_backward(tokens.data(), tokens.data(), B, T, B, &loss).is_ok());
    EXPECT_EQ(cpu.held_working_bytes(), lm_head) << "a step grew the reserved temporaries";
  }
}

// The CPU backend noting the op calls that take working memory on some backend, in the form of
// kernels::OpCall, and answering a made-up working memory size so that the model's plumbing shows.
class RecordingCpuBackend : public kernels::cpu::CpuBackend {
 public:
  using OpCall = kernels::OpCall;
  using Act = kernels::Act;
  using ConstAct = kernels::ConstAct;
  RecordingCpuBackend() : CpuBackend(1) {}

  std::vector<OpCall> seen, reserved;
  static constexpr uint64_t kWorkingBytes = 123457;

  Status working_memory_bytes(std::span<const OpCall> calls, uint64_t* bytes) const override {
    *bytes = calls.empty() ? 0 : kWorkingBytes;
    return Status::ok();
  }
  Status reserve_working_memory(std::span<const OpCall> calls) override {
    reserved.assign(calls.begin(), calls.end());
    return Status::ok();
  }
  Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C, int V) override {
    seen.push_back(OpCall::encoder_backward(B, T, C));
    return CpuBackend::encoder_backward(dwte, dwpe, dout, tokens, B, T, C, V);
  }
  Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* mean, const float* rstd, int N,
                            int C) override {
    seen.push_back(OpCall::layernorm_backward(N, C));
    return CpuBackend::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  Status matmul_forward(Act out, ConstAct inp, const float* weight, const float* bias, int N, int C,
                        int OC) override {
    seen.push_back(OpCall::matmul_forward(N, C, OC, inp.dtype, out.dtype, bias != nullptr));
    return CpuBackend::matmul_forward(out, inp, weight, bias, N, C, OC);
  }
  Status matmul_backward(Act dinp, float* dweight, float* dbias, ConstAct dout, ConstAct inp,
                         const float* weight, int N, int C, int OC) override {
    seen.push_back(OpCall::matmul_backward(N, C, OC, dinp.dtype, dout.dtype, inp.dtype, dinp.data != nullptr,
                                           dweight != nullptr, dbias != nullptr));
    return CpuBackend::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  }
  Status attention_forward(Act out, float* att, ConstAct qkv, int B, int T, int C, int NH) override {
    seen.push_back(OpCall::attention_forward(B, T, C, NH, out.dtype, qkv.dtype));
    return CpuBackend::attention_forward(out, att, qkv, B, T, C, NH);
  }
  Status attention_backward(Act dqkv, ConstAct dout, ConstAct qkv, ConstAct out, const float* att, int B,
                            int T, int C, int NH) override {
    EXPECT_EQ(out.dtype, qkv.dtype) << "OpCall takes the forward's output to have qkv's type";
    seen.push_back(OpCall::attention_backward(B, T, C, NH, dqkv.dtype, dout.dtype, qkv.dtype));
    return CpuBackend::attention_backward(dqkv, dout, qkv, out, att, B, T, C, NH);
  }
  Status gelu_forward(Act out, ConstAct inp, size_t n) override {
    seen.push_back(OpCall::gelu_forward(n, out.dtype, inp.dtype));
    return CpuBackend::gelu_forward(out, inp, n);
  }
  Status gelu_backward(Act dinp, ConstAct inp, ConstAct dout, size_t n) override {
    seen.push_back(OpCall::gelu_backward(n, dinp.dtype, inp.dtype, dout.dtype));
    return CpuBackend::gelu_backward(dinp, inp, dout, n);
  }
  Status sum_squares(const float* x, size_t n, double* out) override {
    seen.push_back(OpCall::sum_squares(n));
    return CpuBackend::sum_squares(x, n, out);
  }
};

// GptModel::working_calls lists every call of a training step that takes working memory, with the
// sizes and storage types the step really passes (the CPU backend's fused GELU forms are the plain
// calls, as on every backend that does not fuse them), for every storage choice and with
// recomputation; init() reserves exactly that list and memory_items counts the backend's answer.
TEST(MemoryBudget, WorkingCallsAreTheCallsATrainingStepMakes) {
  using kernels::DType;
  const GptShape shape{2, 4, 64, 32, 200, 256};
  const int B = 3, T = 32;
  std::vector<int32_t> tokens(B * T);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37) % shape.vocab);
  struct Case {
    DType acts, logits;
    bool recompute;
  };
  for (const Case c : {Case{DType::kF32, DType::kF32, false}, Case{DType::kBF16, DType::kF32, false},
                       Case{DType::kBF16, DType::kBF16, true}}) {
    const std::string what = std::string(kernels::dtype_name(c.acts)) + "/" + kernels::dtype_name(c.logits) +
                             (c.recompute ? " recompute" : "");
    const auto listed = GptModel::working_calls(shape, B, T, c.acts, c.logits);
    RecordingCpuBackend be;
    const auto items = GptModel::memory_items(shape, be, B, T, c.acts, c.logits, c.recompute);
    EXPECT_EQ(item_bytes(items, "cpu backend's working memory"), RecordingCpuBackend::kWorkingBytes) << what;
    GptModel m;
    ASSERT_TRUE(m.init(shape, &be, B, T, c.acts, c.logits, c.recompute).is_ok()) << what;
    EXPECT_TRUE(be.reserved == listed) << what;
    ASSERT_TRUE(m.init_parameters(7).is_ok());
    double loss = 0.0, norm = 0.0;
    ASSERT_TRUE(m.zero_grad().is_ok());
    ASSERT_TRUE(m.forward(tokens.data(), tokens.data(), B, T, &loss).is_ok()) << what;
    ASSERT_TRUE(m.backward().is_ok()) << what;
    ASSERT_TRUE(gradient_norm(m, &norm).is_ok()) << what;
    // Every kind of call was seen (the list is no larger than the step), and each is listed.
    std::vector<bool> matched(listed.size(), false);
    for (const kernels::OpCall& call : be.seen) {
      size_t i = 0;
      while (i < listed.size() && !(listed[i] == call)) ++i;
      EXPECT_LT(i, listed.size()) << what << ": an op call of kind " << static_cast<int>(call.op)
                                  << " with N " << call.N << ", C " << call.C << ", OC " << call.OC
                                  << " is not listed";
      if (i < listed.size()) matched[i] = true;
    }
    for (size_t i = 0; i < listed.size(); ++i)
      EXPECT_TRUE(matched[i]) << what << ": listed call " << i << " never ran";
  }
}

// ABFT counts (and reserves) the copy of a gradient it adds to only when the step accumulates (more
// than one pass): the largest dweight and dbias of one GEMM.
TEST(MemoryBudget, AbftCountsGradientSnapshotsOnlyWhenAccumulating) {
  using kernels::DType;
  const GptShape shape{2, 4, 64, 32, 200, 256};
  kernels::cpu::CpuBackend cpu(1);
  fault::AbftBackend abft(&cpu);
  uint64_t single = 1, accumulating = 0;
  ASSERT_TRUE(
      abft.working_memory_bytes(GptModel::working_calls(shape, 3, 32, DType::kF32, DType::kF32), &single)
          .is_ok());
  ASSERT_TRUE(abft.working_memory_bytes(GptModel::working_calls(shape, 3, 32, DType::kF32, DType::kF32, true),
                                        &accumulating)
                  .is_ok());
  EXPECT_EQ(single, 0u);
  // c_fc's dweight and dbias (4C x C + 4C) beat the LM head's dweight (padded vocab 256 x C, no bias).
  EXPECT_EQ(accumulating, (uint64_t{256} * 64 + 256) * sizeof(float));
  const auto items = GptModel::memory_items(shape, abft, 3, 32, DType::kF32, DType::kF32, false, true);
  EXPECT_EQ(item_bytes(items, "abft:cpu backend's working memory"), accumulating);
  // Reserving allocates the snapshot (the host checksum kernels take no backend memory).
  EXPECT_EQ(abft.held_working_bytes(), 0u);
  ASSERT_TRUE(
      abft.reserve_working_memory(GptModel::working_calls(shape, 3, 32, DType::kF32, DType::kF32)).is_ok());
  EXPECT_EQ(abft.held_working_bytes(), 0u);
  ASSERT_TRUE(
      abft.reserve_working_memory(GptModel::working_calls(shape, 3, 32, DType::kF32, DType::kF32, true))
          .is_ok());
  EXPECT_EQ(abft.held_working_bytes(), accumulating);
}

// What the memory check counts for a loader: 2 bytes a token, plus 8 per sample when it shuffles.
TEST(MemoryBudget, ALoaderHoldsTheTokensAsStoredPlusThePermutation) {
  EXPECT_EQ(DataLoader::memory_bytes(0, 16, true), 0u);
  EXPECT_EQ(DataLoader::memory_bytes(1001, 10, false), 2002u);
  EXPECT_EQ(DataLoader::memory_bytes(1001, 10, true), 2002u + 100 * 8);  // (1001 - 1) / 10 samples
}

TEST(MemoryBudget, AnUnaddressableShapeGetsOneRoughItem) {
  // T = 2^30: the CPU's attention probabilities alone would be B * NH * T^2 floats.
  const GptShape shape{2, 2, 64, 1 << 30, 256, 256};
  kernels::cpu::CpuBackend cpu(1);
  const auto items =
      GptModel::memory_items(shape, cpu, 4, 1 << 30, kernels::DType::kF32, kernels::DType::kF32, false);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_NE(items[0].what.find("rough estimate"), std::string::npos) << items[0].what;
  EXPECT_EQ(items[0].bytes, UINT64_MAX);
  EXPECT_FALSE(check_fits(MemoryDemand{"m", UINT64_MAX - 1, items, 1, {}}, "").is_ok());
}

}  // namespace
}  // namespace perigee::runtime
