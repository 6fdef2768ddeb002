// AbftGemm on the CPU backend's GEMMs: zero false alarms over thousands of clean GEMMs of GPT-2-like
// shapes with realistic and adversarial value ranges, in fp32 and with bf16-rounded inputs (the
// calibration of the threshold constant; docs/faults.md quotes the printed numbers); location from a
// single flagged line through the weighted checksum; corrections of two-bit flips and of arbitrary
// values; unverifiable operands; thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <tuple>
#include <vector>

#include "fault/abft_gemm.hpp"
#include "fault/host_checksum_kernels.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "test_fault_util.hpp"

namespace perigee::fault {
namespace {

using fault_test::GemmData;
using fault_test::kAllKinds;

constexpr int kDistributions = 8;
const char* const kDistributionNames[kDistributions] = {
    "normal (LayerNorm-like)", "large magnitude", "tiny magnitude", "mixed-scale rows",
    "positive with offset",    "uniform [0,1)",   "repeated rows",  "heavy tails"};

// Operands of one case: distribution `dist` (see kDistributionNames), optionally rounded to bf16.
GemmData make_case(int N, int C, int OC, int dist, bool bf16, const fault_test::NormalPool& pool,
                   FaultRng& rng) {
  GemmData d = fault_test::make_data(N, C, OC, pool, rng);
  auto rows_scaled = [&](std::vector<float>* v, int rows, int cols, double lo, double hi) {
    for (int r = 0; r < rows; ++r) {
      const float s = static_cast<float>(std::pow(10.0, lo + (hi - lo) * rng.uniform()));
      for (int c = 0; c < cols; ++c) (*v)[static_cast<size_t>(r) * cols + c] *= s;
    }
  };
  auto map = [](std::vector<float>* v, auto f) {
    for (auto& x : *v) x = f(x);
  };
  switch (dist) {
    case 0:
      break;
    case 1:
      map(&d.inp, [](float x) { return 1e3f * x; });
      map(&d.weight, [](float x) { return 1.5e3f * x; });
      map(&d.bias, [](float x) { return 5e4f * x; });
      map(&d.dout, [](float x) { return 1e4f * x; });
      break;
    case 2:
      map(&d.inp, [](float x) { return 1e-3f * x; });
      map(&d.weight, [](float x) { return 5e-3f * x; });
      map(&d.dout, [](float x) { return 1e-5f * x; });
      break;
    case 3:
      rows_scaled(&d.inp, N, C, -3.0, 3.0);
      rows_scaled(&d.weight, OC, C, -2.0, 2.0);
      rows_scaled(&d.dout, N, OC, -4.0, 1.0);
      break;
    case 4:
      map(&d.inp, [](float x) { return std::fabs(x) + 2.0f; });
      map(&d.weight, [](float x) { return x + 0.01f; });
      map(&d.dout, [](float x) { return x + 5e-3f; });
      break;
    case 5: {
      for (auto* v : {&d.inp, &d.weight, &d.dout}) {
        for (auto& x : *v) x = static_cast<float>(rng.uniform());
      }
      map(&d.dout, [](float x) { return 1e-3f * x; });
      break;
    }
    case 6:
      // Sequences that start with the same token: identical activation and gradient rows.
      for (int r = 1; r < std::min(N, 16); ++r) {
        std::copy_n(d.inp.begin(), C, d.inp.begin() + static_cast<ptrdiff_t>(r) * C);
        std::copy_n(d.dout.begin(), OC, d.dout.begin() + static_cast<ptrdiff_t>(r) * OC);
      }
      break;
    case 7:
      map(&d.inp, [](float x) { return x * x * x; });
      map(&d.dout, [](float x) { return 1e-2f * x * x * x; });
      break;
  }
  if (bf16) {
    for (auto* v : {&d.inp, &d.weight, &d.bias, &d.dout}) map(v, fault_test::bf16_round);
  }
  return d;
}

TEST(AbftGemm, CleanGemmsNeverAlarm) {
  constexpr int kCases = 1024;  // x 4 outputs each
  const fault_test::NormalPool pool(2024);
  FaultRng rng(7);
  // One thread: the numbers do not depend on it (ChecksumsDoNotDependOnTheThreadCount), and these
  // small GEMMs would spend more time in OpenMP barriers than in arithmetic on a busy 2-core machine.
  kernels::cpu::CpuBackend cpu(1);
  HostChecksumKernels host(1);
  AbftGemm gemm(&host);
  const int Ns[] = {64, 128, 192, 256};
  const int Cs[] = {64, 96, 128, 192, 256};
  double worst[kDistributions][2] = {};
  double worst_kind[4] = {};
  int checks = 0, alarms = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < kCases; ++c) {
    const int dist = c % kDistributions;
    const bool bf16 = (c / kDistributions) % 2 == 1;
    const int N = Ns[rng.below(4)];
    int C = Cs[rng.below(5)];
    const int mult[] = {1, 3, 4};
    int OC = rng.below(4) == 0 ? 320 : C * mult[rng.below(3)];
    if (rng.below(2) == 0) std::swap(C, OC);  // projections back down (4C -> C)
    GemmData d = make_case(N, C, OC, dist, bf16, pool, rng);
    const bool with_bias = rng.below(4) != 0;
    for (GemmKind kind : kAllKinds) {
      GemmProblem p = fault_test::problem_of(kind, d);
      if (!with_bias) p.bias = nullptr;
      std::vector<float> before(p.size(), 0.0f);
      const bool accumulate = p.accumulates() && rng.below(2) == 0;
      if (accumulate) {
        fault_test::fill(&before, p.size(), pool, rng, kind == GemmKind::kBackwardWeight ? 1e-1f : 1e-2f);
        if (bf16)
          for (auto& x : before) x = fault_test::bf16_round(x);
      }
      std::vector<float> out = before;
      if (kind == GemmKind::kForward && !with_bias) {
        ASSERT_TRUE(cpu.matmul_forward(out.data(), d.inp.data(), d.weight.data(), nullptr, N, C, OC).is_ok());
      } else {
        ASSERT_TRUE(fault_test::run_kind(cpu, kind, d, out.data()).is_ok());
      }
      ASSERT_TRUE(gemm.encode(p, accumulate ? before.data() : nullptr).is_ok());
      AbftCheck check;
      ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
      ++checks;
      if (check.outcome != AbftOutcome::kClean) {
        ++alarms;
        ADD_FAILURE() << "false alarm: " << gemm_kind_name(kind) << " N=" << N << " C=" << C << " OC=" << OC
                      << " dist=" << kDistributionNames[dist] << (bf16 ? " bf16" : "") << " ratio "
                      << check.max_ratio << " outcome " << abft_outcome_name(check.outcome);
      }
      worst[dist][bf16] = std::max(worst[dist][bf16], check.max_ratio);
      worst_kind[static_cast<int>(kind)] = std::max(worst_kind[static_cast<int>(kind)], check.max_ratio);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double overall = 0.0;
  std::printf("clean GEMM checks: %d (%d cases x 4 outputs) in %.1f s, false alarms: %d\n", checks, kCases,
              seconds, alarms);
  std::printf("largest residual / threshold per distribution:   fp32       bf16-rounded inputs\n");
  for (int dist = 0; dist < kDistributions; ++dist) {
    std::printf("  %-28s %10.4f %10.4f\n", kDistributionNames[dist], worst[dist][0], worst[dist][1]);
    overall = std::max({overall, worst[dist][0], worst[dist][1]});
  }
  for (GemmKind kind : kAllKinds) {
    std::printf("  %-28s %10.4f\n", gemm_kind_name(kind), worst_kind[static_cast<int>(kind)]);
  }
  std::printf("  overall                      %10.4f (margin %.1fx)\n", overall, 1.0 / overall);
  EXPECT_EQ(alarms, 0);
  EXPECT_EQ(checks, 4 * kCases);
  EXPECT_LT(overall, 1.0);
}

// The CUDA backend with precision "bf16" or "tf32" rounds fp32 operands before the GEMM while the
// checksums see them unrounded (fault/abft_gemm.hpp): with AbftOptions::operand_roundoff no clean GEMM
// alarms, whatever the value range, while without it most would; an exponent-bit flip is still caught
// and corrected. TF32 is modelled by truncation to 10 fraction bits (the worst case for it).
TEST(AbftGemm, RoundedOperandGemmsNeedTheOperandRoundoff) {
  const fault_test::NormalPool pool(77);
  FaultRng rng(78);
  kernels::cpu::CpuBackend cpu(1);
  HostChecksumKernels host(1);
  auto tf32_truncate = [](float x) {
    return std::isfinite(x) ? std::bit_cast<float>(std::bit_cast<uint32_t>(x) & 0xFFFFE000u) : x;
  };
  int checks = 0, fp32_alarms = 0;
  double worst[2] = {};
  for (int c = 0; c < 64; ++c) {
    const bool bf16 = c % 2 == 0;
    const int N = 64 + 64 * static_cast<int>(rng.below(3)), C = 64 * (1 + static_cast<int>(rng.below(4)));
    const int OC = C * (1 + static_cast<int>(rng.below(4)));
    const GemmData d = make_case(N, C, OC, (c / 2) % kDistributions, false, pool, rng);
    GemmData r = d;  // the operands as the GEMM multiplies them (the bias is added in fp32)
    for (auto* v : {&r.inp, &r.weight, &r.dout}) {
      for (auto& x : *v) x = bf16 ? fault_test::bf16_round(x) : tf32_truncate(x);
    }
    AbftOptions rounded;
    rounded.operand_roundoff = bf16 ? kBf16OperandRoundoff : kTf32OperandRoundoff;
    for (GemmKind kind : {GemmKind::kForward, GemmKind::kBackwardInput, GemmKind::kBackwardWeight}) {
      std::vector<float> out(fault_test::problem_of(kind, d).size(), 0.0f);
      ASSERT_TRUE(fault_test::run_kind(cpu, kind, r, out.data()).is_ok());
      AbftGemm gemm(&host, rounded), fp32(&host);
      ASSERT_TRUE(gemm.encode(fault_test::problem_of(kind, d), nullptr).is_ok());
      ASSERT_TRUE(fp32.encode(fault_test::problem_of(kind, d), nullptr).is_ok());
      AbftCheck check, fp32_check;
      std::vector<float> copy = out;
      ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
      ASSERT_TRUE(fp32.check(copy.data(), &fp32_check, false).is_ok());
      ++checks;
      EXPECT_EQ(check.outcome, AbftOutcome::kClean) << gemm_kind_name(kind) << (bf16 ? " bf16" : " tf32")
                                                    << " case " << c << " ratio " << check.max_ratio;
      worst[bf16] = std::max(worst[bf16], check.max_ratio);
      fp32_alarms += fp32_check.outcome != AbftOutcome::kClean;
      // A flip of the top exponent bit (|x| < 1: x * 2^128, still finite) is still found.
      size_t e = rng.below(out.size());
      for (size_t tries = 0; tries < out.size() && !(out[e] != 0.0f && std::fabs(out[e]) < 1.0f); ++tries) {
        e = (e + 1) % out.size();
      }
      if (c < 16 && kind == GemmKind::kForward && out[e] != 0.0f && std::fabs(out[e]) < 1.0f) {
        std::vector<float> hit = out;
        hit[e] = fault_test::flip(hit[e], 1u << 30);
        AbftGemm again(&host, rounded);
        ASSERT_TRUE(again.encode(fault_test::problem_of(kind, d), nullptr).is_ok());
        ASSERT_TRUE(again.check(hit.data(), &check).is_ok());
        EXPECT_EQ(check.outcome, AbftOutcome::kCorrected) << check.detail;
        EXPECT_TRUE(fault_test::same_bits(hit, out));
      }
    }
  }
  std::printf(
      "rounded-operand GEMMs: %d checks, largest residual / threshold tf32 %.4f, bf16 %.4f; with "
      "no operand roundoff %d of them alarm\n",
      checks, worst[0], worst[1], fp32_alarms);
  EXPECT_LT(std::max(worst[0], worst[1]), 1.0);
  EXPECT_GT(fp32_alarms, checks / 2) << "the test would not tell the two settings apart";
}

// The worst case the bf16 bound is for: every operand positive and just below a rounding tie, so that
// each loses almost 2^-8 of itself (1 + 2^-8 rounds to 1) and every product almost 2^-7: the GEMM of
// the rounded operands misses the checksums of the fp32 ones by nearly 2^-7 S, which a clean GEMM must
// not be taken for a fault by (a bound of 2^-8 S would alarm and escalate). Each kind, at two shapes.
TEST(AbftGemm, Bf16OperandRoundoffCoversOperandsAllRoundedTheSameWay) {
  kernels::cpu::CpuBackend cpu(1);
  HostChecksumKernels host(1);
  FaultRng rng(91);
  const float below_tie = 1.0f + 0x1p-8f - 0x1p-20f;  // rounds down to 1 in bf16
  for (const auto& [N, C, OC] : {std::tuple{64, 256, 64}, std::tuple{128, 768, 192}}) {
    GemmData d;
    d.N = N, d.C = C, d.OC = OC;
    auto fill = [&](std::vector<float>* v, size_t n) {
      v->resize(n);
      for (auto& x : *v) x = std::ldexp(below_tie, static_cast<int>(rng.below(5)) - 2);
    };
    fill(&d.inp, static_cast<size_t>(N) * C);
    fill(&d.weight, static_cast<size_t>(OC) * C);
    fill(&d.dout, static_cast<size_t>(N) * OC);
    d.bias.assign(OC, 0.0f);
    GemmData r = d;  // the operands as a bf16 GEMM multiplies them: each a power of two
    for (auto* v : {&r.inp, &r.weight, &r.dout}) {
      for (auto& x : *v) x = fault_test::bf16_round(x);
    }
    ASSERT_EQ(r.inp[0] * below_tie, d.inp[0]);
    AbftOptions rounded;
    rounded.operand_roundoff = kBf16OperandRoundoff;
    for (GemmKind kind : {GemmKind::kForward, GemmKind::kBackwardInput, GemmKind::kBackwardWeight}) {
      std::vector<float> out(fault_test::problem_of(kind, d).size(), 0.0f);
      ASSERT_TRUE(fault_test::run_kind(cpu, kind, r, out.data()).is_ok());
      AbftGemm gemm(&host, rounded);
      ASSERT_TRUE(gemm.encode(fault_test::problem_of(kind, d), nullptr).is_ok());
      AbftCheck check;
      ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
      EXPECT_EQ(check.outcome, AbftOutcome::kClean)
          << gemm_kind_name(kind) << " N=" << N << " C=" << C << " OC=" << OC << " ratio " << check.max_ratio;
    }
  }
}

// Wide output (rows of 2048 elements, columns of 16): a flip above the column threshold but below the
// row threshold flags one column only; the column's weighted sum names the row (or, for a flip just
// over the threshold where the weighted sum is too noisy to name it, the scan of the column does).
// And the transpose.
TEST(AbftGemm, OneFlaggedLineLocatesTheElementByItsWeightedSum) {
  const fault_test::NormalPool pool(5);
  kernels::cpu::CpuBackend cpu(2);
  HostChecksumKernels host(2);
  for (bool wide : {true, false}) {
    FaultRng rng(wide ? 11 : 12);
    const GemmData d = fault_test::make_data(wide ? 16 : 2048, 64, wide ? 2048 : 16, pool, rng);
    const GemmProblem p = fault_test::problem_of(GemmKind::kForward, d);
    std::vector<float> clean(p.size());
    ASSERT_TRUE(fault_test::run_kind(cpu, GemmKind::kForward, d, clean.data()).is_ok());
    AbftGemm gemm(&host);
    ASSERT_TRUE(gemm.encode(p, nullptr).is_ok());
    // Flips well above the lower threshold, and just above it; both well below the higher one.
    for (auto [lo_factor, hi_factor] : {std::pair{4.0, 16.0}, std::pair{1.5, 2.5}}) {
      int64_t found = -1;
      uint32_t mask = 0;
      for (size_t e = 0; e < clean.size() && found < 0; e += 37) {
        const int64_t i = static_cast<int64_t>(e) / p.cols(), j = static_cast<int64_t>(e) % p.cols();
        const double lo = wide ? gemm.col_threshold(j) : gemm.row_threshold(i);
        const double hi = wide ? gemm.row_threshold(i) : gemm.col_threshold(j);
        for (int bit = 0; bit < 23; ++bit) {
          const double delta =
              std::fabs(static_cast<double>(fault_test::flip(clean[e], 1u << bit)) - clean[e]);
          if (delta > lo_factor * lo && delta < hi_factor * lo && delta < hi / 4.0) {
            found = static_cast<int64_t>(e);
            mask = 1u << bit;
            break;
          }
        }
      }
      ASSERT_GE(found, 0) << "no flip between the thresholds";
      std::vector<float> out = clean;
      out[found] = fault_test::flip(out[found], mask);
      AbftCheck check;
      ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
      EXPECT_EQ(check.outcome, AbftOutcome::kCorrected) << check.detail;
      EXPECT_EQ(check.rows_flagged, wide ? 0 : 1);
      EXPECT_EQ(check.cols_flagged, wide ? 1 : 0);
      EXPECT_EQ(check.correction.row * p.cols() + check.correction.col, found);
      EXPECT_EQ(check.correction.flip_mask, mask);
      EXPECT_TRUE(fault_test::same_bits(out, clean));
    }
  }
}

TEST(AbftGemm, TwoBitFlipsAndArbitraryValuesAreCorrected) {
  const fault_test::NormalPool pool(6);
  FaultRng rng(13);
  kernels::cpu::CpuBackend cpu(2);
  HostChecksumKernels host(2);
  for (GemmKind kind : kAllKinds) {
    const GemmData d = fault_test::make_data(128, 96, 288, pool, rng);
    const GemmProblem p = fault_test::problem_of(kind, d);
    std::vector<float> clean(p.size(), 0.0f);
    ASSERT_TRUE(fault_test::run_kind(cpu, kind, d, clean.data()).is_ok());
    AbftGemm gemm(&host);
    ASSERT_TRUE(gemm.encode(p, nullptr).is_ok());
    const size_t e = p.size() / 3;
    // Two bits of one element (exponent and mantissa): back to the exact bits.
    std::vector<float> out = clean;
    const uint32_t mask = (1u << 26) | (1u << 21);
    out[e] = fault_test::flip(out[e], mask);
    AbftCheck check;
    ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
    EXPECT_EQ(check.outcome, AbftOutcome::kCorrected) << gemm_kind_name(kind) << ": " << check.detail;
    EXPECT_EQ(check.correction.flip_mask, mask);
    EXPECT_TRUE(fault_test::same_bits(out, clean)) << gemm_kind_name(kind);
    // The log line says where and what: the element, old -> new, the bits.
    const std::string where = "element (" + std::to_string(e / static_cast<size_t>(p.cols())) + ", " +
                              std::to_string(e % static_cast<size_t>(p.cols())) + ") ";
    EXPECT_EQ(check.detail.rfind(where, 0), 0u) << check.detail;
    EXPECT_NE(check.detail.find(", bits 26 21 flipped back"), std::string::npos) << check.detail;
    // A value that is no bit flip of the clean one: the rounded exact value, within rounding.
    out[e] = clean[e] + 0.731f;
    ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
    EXPECT_EQ(check.outcome, AbftOutcome::kCorrected) << gemm_kind_name(kind) << ": " << check.detail;
    EXPECT_NEAR(out[e], clean[e], 1e-5 * (1.0 + std::fabs(clean[e])));
    EXPECT_NE(check.detail.find("the rounded exact value"), std::string::npos) << check.detail;
    for (size_t k = 0; k < out.size(); ++k) {
      if (k != e) {
        ASSERT_EQ(std::bit_cast<uint32_t>(out[k]), std::bit_cast<uint32_t>(clean[k]));
      }
    }
    // Several wrong elements: the caller must recompute; nothing is changed.
    out = clean;
    out[1] = fault_test::flip(out[1], 1u << 29);
    out[p.size() - 2] = fault_test::flip(out[p.size() - 2], 1u << 29);
    const std::vector<float> bad = out;
    ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
    if (p.rows() > 1) {
      EXPECT_EQ(check.outcome, AbftOutcome::kRecompute);
      EXPECT_TRUE(fault_test::same_bits(out, bad));
      EXPECT_FALSE(check.detail.empty());
    }
  }
}

// Rounding that beats the threshold (same-sign products of one size add their rounding errors up: a row
// of ones against a row of one constant) flags a clean output's row and column. The element at their
// crossing is within its own rounding bound, so it is not changed, even where one of its bit flips
// lands closer to the exact value (before, that flip was written: clean bits changed, and a run with
// ABFT differed from one without); the caller recomputes.
TEST(AbftGemm, ACleanElementWithinItsRoundingBoundIsNeverRewritten) {
  kernels::cpu::CpuBackend cpu(1);
  HostChecksumKernels host(1);
  const fault_test::NormalPool pool(3);
  FaultRng rng(5);
  const int N = 64, K = 256, OC = 64;
  int flagged = 0;
  for (int trial = 0; trial < 100; ++trial) {
    GemmData d = fault_test::make_data(N, K, OC, pool, rng);
    const float x = static_cast<float>(1.0 + rng.uniform());
    for (int k = 0; k < K; ++k) d.inp[k] = 1.0f, d.weight[k] = x;  // out[0][0] = K x, rounded K times
    const GemmProblem p = fault_test::problem_of(GemmKind::kForward, d);
    std::vector<float> clean(p.size(), 0.0f);
    ASSERT_TRUE(fault_test::run_kind(cpu, GemmKind::kForward, d, clean.data()).is_ok());
    AbftGemm gemm(&host);
    ASSERT_TRUE(gemm.encode(p, nullptr).is_ok());
    std::vector<float> out = clean;
    AbftCheck check;
    ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
    flagged += check.outcome != AbftOutcome::kClean;
    EXPECT_NE(check.outcome, AbftOutcome::kCorrected) << "trial " << trial << ", x = " << x;
    ASSERT_TRUE(fault_test::same_bits(out, clean)) << "trial " << trial << ": clean bits changed";
  }
  EXPECT_GT(flagged, 0) << "the case no longer reaches the threshold: it tests nothing";
}

TEST(AbftGemm, NonFiniteOperandsAreUnverifiable) {
  const fault_test::NormalPool pool(8);
  FaultRng rng(14);
  HostChecksumKernels host(1);
  GemmData d = fault_test::make_data(32, 16, 48, pool, rng);
  d.inp[5] = std::numeric_limits<float>::quiet_NaN();
  AbftGemm gemm(&host);
  ASSERT_TRUE(gemm.encode(fault_test::problem_of(GemmKind::kForward, d), nullptr).is_ok());
  std::vector<float> out(32 * 48, 0.0f);
  AbftCheck check;
  ASSERT_TRUE(gemm.check(out.data(), &check).is_ok());
  EXPECT_EQ(check.outcome, AbftOutcome::kUnverifiable);
  EXPECT_FALSE(check.detail.empty());
  // Bad arguments.
  EXPECT_EQ(gemm.encode(GemmProblem::forward(nullptr, d.weight.data(), nullptr, 32, 16, 48), nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gemm.encode(GemmProblem::backward_bias(d.dout.data(), 0, 48), nullptr).code(),
            StatusCode::kInvalidArgument);
}

// Checksums, thresholds and verdicts are the same bits for 1 and 2 threads.
TEST(AbftGemm, ChecksumsDoNotDependOnTheThreadCount) {
  const fault_test::NormalPool pool(9);
  FaultRng rng(15);
  kernels::cpu::CpuBackend cpu(2);
  const GemmData d = fault_test::make_data(1100, 200, 130, pool, rng);  // more than one row block
  for (GemmKind kind : kAllKinds) {
    const GemmProblem p = fault_test::problem_of(kind, d);
    std::vector<float> before(p.size());
    fault_test::fill(&before, p.size(), pool, rng, 0.1f);
    std::vector<float> out = before;
    ASSERT_TRUE(fault_test::run_kind(cpu, kind, d, out.data()).is_ok());
    out[p.size() / 2] = fault_test::flip(out[p.size() / 2], 1u << 24);
    std::vector<double> r[2], tau[2];
    for (int t = 1; t <= 2; ++t) {
      HostChecksumKernels host(t);
      AbftGemm gemm(&host);
      ASSERT_TRUE(gemm.encode(p, before.data()).is_ok());
      std::vector<float> copy = out;
      AbftCheck check;
      ASSERT_TRUE(gemm.check(copy.data(), &check, /*allow_correction=*/false).is_ok());
      EXPECT_EQ(check.outcome, AbftOutcome::kRecompute);
      for (int64_t i = 0; i < p.rows(); ++i) {
        r[t - 1].push_back(gemm.row_residual(i));
        tau[t - 1].push_back(gemm.row_threshold(i));
      }
      for (int64_t j = 0; j < p.cols(); ++j) {
        r[t - 1].push_back(gemm.col_residual(j));
        tau[t - 1].push_back(gemm.col_threshold(j));
      }
    }
    EXPECT_EQ(r[0], r[1]) << gemm_kind_name(kind);
    EXPECT_EQ(tau[0], tau[1]) << gemm_kind_name(kind);
  }
}

}  // namespace
}  // namespace perigee::fault
