// AbftBackend inside a real GptModel step: clean, the loss and every gradient are bit-identical to the
// plain CPU backend; with bit flips injected into GEMM outputs mid-step (forward and backward), the
// step is corrected (or recomputed) back to the same bits and the counters say so.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <vector>

#include "fault/abft_backend.hpp"
#include "fault/injector.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/random.hpp"

namespace perigee::fault {
namespace {

constexpr int kB = 4, kT = 64;
const runtime::GptShape kShape{2, 4, 128, 64, 500, 512};  // 2 layers, padded vocabulary

struct StepResult {
  double loss = 0.0;
  std::vector<float> grads;
};

std::vector<int32_t> tokens(uint64_t seed) {
  runtime::SplitMix64 rng(seed);
  std::vector<int32_t> t(kB * kT);
  for (auto& x : t) x = static_cast<int32_t>(rng.next() % kShape.vocab);
  return t;
}

StepResult step(kernels::Backend* backend) {
  runtime::GptModel model;
  PERIGEE_CHECK_OR_DIE(model.init(kShape, backend, kB, kT));
  PERIGEE_CHECK_OR_DIE(model.init_parameters(42));
  const auto x = tokens(1), y = tokens(2);
  StepResult r;
  PERIGEE_CHECK_OR_DIE(model.forward(x.data(), y.data(), kB, kT, &r.loss));
  PERIGEE_CHECK_OR_DIE(model.zero_grad());
  PERIGEE_CHECK_OR_DIE(model.backward());
  r.grads.resize(model.num_parameters());
  PERIGEE_CHECK_OR_DIE(backend->copy_to_host(r.grads.data(), model.grads(), r.grads.size() * sizeof(float)));
  return r;
}

bool same(const StepResult& a, const StepResult& b) {
  return std::bit_cast<uint64_t>(a.loss) == std::bit_cast<uint64_t>(b.loss) &&
         a.grads.size() == b.grads.size() &&
         std::memcmp(a.grads.data(), b.grads.data(), a.grads.size() * sizeof(float)) == 0;
}

// Outputs checked per step: forward 4 per layer + LM head; backward dinp, dweight, dbias per layer
// GEMM (4 per layer) and dinp, dweight for the bias-free LM head.
constexpr uint64_t kChecksPerStep = 4 * 2 + 1 + 12 * 2 + 2;

TEST(AbftModel, CleanStepIsBitIdenticalToThePlainBackend) {
  kernels::cpu::CpuBackend plain(2);
  const StepResult ref = step(&plain);
  kernels::cpu::CpuBackend inner(2);
  AbftBackend abft(&inner);
  const StepResult got = step(&abft);
  EXPECT_TRUE(same(ref, got)) << ref.loss << " vs " << got.loss;
  EXPECT_EQ(abft.stats().gemms_checked, kChecksPerStep);
  EXPECT_EQ(abft.stats().faults_detected, 0u);
  EXPECT_EQ(abft.stats().unverifiable, 0u);
  EXPECT_LT(abft.stats().max_clean_ratio, 1.0);
  std::printf("GPT step: %llu outputs checked, largest clean residual / threshold %.4f\n",
              static_cast<unsigned long long>(abft.stats().gemms_checked), abft.stats().max_clean_ratio);
}

// Faults planned with the FaultInjector on the GEMM-output target, delivered by the fault hook: one
// call of the hook is one occurrence of (kGemmOutput, step 0).
TEST(AbftModel, FlipsInGemmOutputsMidStepAreCorrectedToTheSameBits) {
  kernels::cpu::CpuBackend plain(2);
  const StepResult ref = step(&plain);

  FaultPlan plan;
  plan.seed = 3;
  // Forward: exponent flip in layer 0's c_fc output (call 2), sign flip in the logits (call 8).
  plan.faults.push_back({FaultTarget::kGemmOutput, 0, 2, -1, 1000, 30});
  plan.faults.push_back({FaultTarget::kGemmOutput, 0, 8, -1, 777, 31});
  // Backward: the LM head's dweight (call 10: 9 forward checks, then its dinp), a random element and
  // exponent bit of a later dbias, and a 32-element burst in a dinp (recomputed).
  plan.faults.push_back({FaultTarget::kGemmOutput, 0, 10, -1, -1, 29});
  plan.faults.push_back({FaultTarget::kGemmOutput, 0, 13, -1, -1, 27});
  FaultSpec burst{FaultTarget::kGemmOutput, 0, 17, -1, 64, 28};
  burst.burst = 32;
  plan.faults.push_back(burst);
  FaultInjector injector(plan);

  kernels::cpu::CpuBackend inner(2);
  AbftBackend abft(&inner);
  std::vector<AbftEvent> events;
  abft.set_event_callback([&](const AbftEvent& e) { events.push_back(e); });
  abft.set_output_fault_hook(
      [&](float* out, size_t n, GemmKind) { injector.inject(FaultTarget::kGemmOutput, 0, out, n); });
  const StepResult got = step(&abft);

  EXPECT_TRUE(same(ref, got)) << ref.loss << " vs " << got.loss;
  EXPECT_EQ(injector.records().size(), 4u + 32u);
  EXPECT_EQ(abft.stats().faults_detected, 5u);
  EXPECT_EQ(abft.stats().corrected, 4u);
  EXPECT_EQ(abft.stats().recomputed, 1u);
  EXPECT_EQ(abft.stats().escalated, 0u);
  EXPECT_EQ(abft.stats().gemms_checked, kChecksPerStep);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].kind, GemmKind::kForward);
  EXPECT_EQ(events[0].correction.row * 4 * kShape.n_embd + events[0].correction.col, 1000);
  EXPECT_EQ(events[0].correction.flip_mask, 1u << 30);
  EXPECT_EQ(events[1].correction.flip_mask, 1u << 31);
  EXPECT_EQ(events[2].kind, GemmKind::kBackwardWeight);
  EXPECT_EQ(events[4].outcome, AbftOutcome::kRecomputed);
  for (const auto& e : events) {
    std::printf("  check %2llu %-16s %-10s rows %lld cols %lld  %s\n",
                static_cast<unsigned long long>(e.gemm_index), gemm_kind_name(e.kind),
                abft_outcome_name(e.outcome), static_cast<long long>(e.rows_flagged),
                static_cast<long long>(e.cols_flagged), e.detail.c_str());
  }
}

}  // namespace
}  // namespace perigee::fault
