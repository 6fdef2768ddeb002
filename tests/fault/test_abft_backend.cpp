// AbftBackend over the CPU backend, faults injected into GEMM outputs through the output fault hook:
// a flip of every bit of one element of each of the four outputs (forward, dinp, dweight, dbias) is
// either corrected back to the clean GEMM's exact bits at the right (row, col), or is below the
// detection threshold and changes the element by less than it; several wrong elements (two, a
// 32-element burst) are recomputed to the exact clean result; a persistent fault escalates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "fault/abft_backend.hpp"
#include "fault/host_checksum_kernels.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "test_fault_util.hpp"

namespace perigee::fault {
namespace {

using fault_test::kAllKinds;

struct Shape {
  int N, C, OC;
};

// GPT-2-like linear layers at CI size: c_attn (C -> 3C), mlp c_fc (C -> 4C), c_proj (4C -> C).
Shape shape_of(GemmKind kind) {
  switch (kind) {
    case GemmKind::kForward:
      return {256, 192, 576};
    case GemmKind::kBackwardInput:
      return {256, 192, 768};
    case GemmKind::kBackwardWeight:
      return {192, 256, 128};
    case GemmKind::kBackwardBias:
      return {256, 192, 768};
  }
  return {};
}

// Operands, prior content and the clean result of one kind.
struct Fixture {
  GemmKind kind;
  fault_test::GemmData data;
  std::vector<float> before, clean;
  int64_t rows = 0, cols = 0;
};

Fixture make_fixture(kernels::Backend& cpu, GemmKind kind, uint64_t seed) {
  static const fault_test::NormalPool pool(99);
  FaultRng rng(seed);
  const Shape s = shape_of(kind);
  Fixture f;
  f.kind = kind;
  f.data = fault_test::make_data(s.N, s.C, s.OC, pool, rng);
  const GemmProblem p = fault_test::problem_of(kind, f.data);
  f.rows = p.rows();
  f.cols = p.cols();
  f.before.assign(p.size(), 0.0f);
  // dweight and dbias accumulate onto earlier gradients (gradient accumulation); dinp starts at 0.
  if (kind == GemmKind::kBackwardWeight || kind == GemmKind::kBackwardBias)
    fault_test::fill(&f.before, p.size(), pool, rng, 1e-2f);
  f.clean = f.before;
  PERIGEE_CHECK_OR_DIE(fault_test::run_kind(cpu, kind, f.data, f.clean.data()));
  return f;
}

// Element indices: the largest |value|, one of typical size (closest to the rms), and a fixed one.
std::vector<size_t> pick_elements(const std::vector<float>& c) {
  double ss = 0.0;
  size_t imax = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    ss += static_cast<double>(c[i]) * c[i];
    if (std::fabs(c[i]) > std::fabs(c[imax])) imax = i;
  }
  const double rms = std::sqrt(ss / static_cast<double>(c.size()));
  size_t ityp = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (std::fabs(std::fabs(c[i]) - rms) < std::fabs(std::fabs(c[ityp]) - rms)) ityp = i;
  }
  return {imax, ityp, (c.size() * 7) / 13};
}

// Runs `kind` through the AbftBackend onto a copy of the prior content.
std::vector<float> run_abft(AbftBackend& abft, const Fixture& f, Status* status) {
  std::vector<float> out = f.before;
  *status = fault_test::run_kind(abft, f.kind, f.data, out.data());
  return out;
}

TEST(AbftBackend, CleanGemmsAreBitIdenticalToTheInnerBackend) {
  kernels::cpu::CpuBackend cpu(2);
  AbftBackend abft(&cpu);
  for (GemmKind kind : kAllKinds) {
    const Fixture f = make_fixture(cpu, kind, 1);
    Status st;
    const auto out = run_abft(abft, f, &st);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_TRUE(fault_test::same_bits(out, f.clean)) << gemm_kind_name(kind);
  }
  EXPECT_EQ(abft.stats().gemms_checked, 4u);
  EXPECT_EQ(abft.stats().faults_detected, 0u);
  EXPECT_GT(abft.stats().max_clean_ratio, 0.0);
  EXPECT_LT(abft.stats().max_clean_ratio, 1.0);
}

TEST(AbftBackend, EveryBitFlipIsCorrectedExactlyOrBelowThreshold) {
  kernels::cpu::CpuBackend cpu(2);
  HostChecksumKernels host(2);
  for (GemmKind kind : kAllKinds) {
    const Fixture f = make_fixture(cpu, kind, 2);
    AbftGemm thresholds(&host);
    ASSERT_TRUE(thresholds.encode(fault_test::problem_of(kind, f.data), f.before.data()).is_ok());

    AbftBackend abft(&cpu);
    size_t target = 0;
    uint32_t mask = 0;
    bool armed = false;
    abft.set_output_fault_hook([&](float* out, size_t n, GemmKind k) {
      ASSERT_EQ(n, f.clean.size());
      if (armed && k == kind) out[target] = fault_test::flip(out[target], mask);
      armed = false;
    });
    AbftEvent last;
    abft.set_event_callback([&](const AbftEvent& e) { last = e; });
    uint64_t recomputed = 0;

    std::printf("%-16s [%lld x %lld]  detected bits per element (31 sign, 30-23 exponent, 22-0 mantissa):\n",
                gemm_kind_name(kind), static_cast<long long>(f.rows), static_cast<long long>(f.cols));
    const auto elements = pick_elements(f.clean);
    for (size_t e = 0; e < elements.size(); ++e) {
      target = elements[e];
      const int64_t i = static_cast<int64_t>(target) / f.cols, j = static_cast<int64_t>(target) % f.cols;
      const double tau = std::min(thresholds.row_threshold(i), thresholds.col_threshold(j));
      int lowest_detected = 32;
      std::string map;
      for (int bit = 31; bit >= 0; --bit) {
        mask = 1u << bit;
        armed = true;
        const AbftStats before = abft.stats();
        Status st;
        const auto out = run_abft(abft, f, &st);
        ASSERT_TRUE(st.is_ok()) << st.to_string();
        const bool detected = abft.stats().faults_detected > before.faults_detected;
        const float bad = fault_test::flip(f.clean[target], mask);
        const double delta = std::fabs(static_cast<double>(bad) - f.clean[target]);
        if (detected) {
          lowest_detected = bit;
          EXPECT_TRUE(fault_test::same_bits(out, f.clean)) << gemm_kind_name(kind) << " bit " << bit;
          if (last.outcome == AbftOutcome::kRecomputed) {
            // Over tau but within the element's own rounding bound: not provably this element, so not
            // corrected in place; the recompute gives the exact bits. Only a low mantissa bit can be.
            ++recomputed;
            EXPECT_LT(bit, 20) << gemm_kind_name(kind) << ": " << last.detail;
          } else {
            EXPECT_EQ(abft.stats().corrected, before.corrected + 1) << "bit " << bit << ": " << last.detail;
            EXPECT_EQ(last.outcome, AbftOutcome::kCorrected);
            EXPECT_EQ(last.correction.row, i);
            EXPECT_EQ(last.correction.col, j);
            EXPECT_EQ(last.correction.flip_mask, mask);
          }
        } else {
          // Undetected: the output holds the flipped element, whose change is below the threshold
          // (the clean residual is below tau too, so the flip's share is at most 2 tau).
          std::vector<float> expect = f.clean;
          expect[target] = bad;
          EXPECT_TRUE(fault_test::same_bits(out, expect)) << "bit " << bit;
          EXPECT_LE(delta, 2.0 * tau) << gemm_kind_name(kind) << " bit " << bit << " undetected";
        }
        // Sign, exponent and the top mantissa bit change any element of typical size by far more
        // than the threshold: they must be caught.
        if (e < 2 && bit >= 22) {
          EXPECT_TRUE(detected) << gemm_kind_name(kind) << " bit " << bit;
        }
        map += !detected ? '.' : last.outcome == AbftOutcome::kRecomputed ? 'R' : 'D';
      }
      std::printf("  (%4lld, %4lld) value %+.4e  tau/|value| %.2e  %s  lowest detected bit %d\n",
                  static_cast<long long>(i), static_cast<long long>(j), f.clean[target],
                  tau / std::fabs(f.clean[target]), map.c_str(), lowest_detected);
    }
    EXPECT_EQ(abft.stats().recomputed, recomputed);
    EXPECT_EQ(abft.stats().escalated, 0u);
  }
}

TEST(AbftBackend, NanAndInfOutputsAreCorrected) {
  kernels::cpu::CpuBackend cpu(2);
  for (GemmKind kind : kAllKinds) {
    const Fixture f = make_fixture(cpu, kind, 3);
    AbftBackend abft(&cpu);
    for (float poison : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      bool armed = true;
      abft.set_output_fault_hook([&](float* out, size_t, GemmKind) {
        if (armed) out[5] = poison;
        armed = false;
      });
      Status st;
      const auto out = run_abft(abft, f, &st);
      ASSERT_TRUE(st.is_ok()) << st.to_string();
      // Not a bit flip of the clean value: corrected to the rounded exact value, within rounding.
      EXPECT_TRUE(std::isfinite(out[5]));
      EXPECT_NEAR(out[5], f.clean[5], 1e-5 * (1.0 + std::fabs(f.clean[5])));
      for (size_t k = 0; k < out.size(); ++k) {
        if (k != 5) {
          ASSERT_EQ(std::bit_cast<uint32_t>(out[k]), std::bit_cast<uint32_t>(f.clean[k]));
        }
      }
    }
    EXPECT_EQ(abft.stats().corrected, 2u) << gemm_kind_name(kind);
  }
}

// Several wrong elements: detected, recomputed by the inner backend, exact clean result.
TEST(AbftBackend, MultipleErrorsAndBurstsAreRecomputedExactly) {
  kernels::cpu::CpuBackend cpu(2);
  for (GemmKind kind : kAllKinds) {
    const Fixture f = make_fixture(cpu, kind, 4);
    const size_t cols = static_cast<size_t>(f.cols);
    struct Pattern {
      const char* name;
      std::vector<size_t> elements;
    };
    std::vector<Pattern> patterns;
    if (f.rows > 1) {
      patterns.push_back({"two elements, different rows and columns", {1 * cols + 3, 7 * cols + 11}});
      patterns.push_back({"three elements", {0, 2 * cols + 5, 9 * cols + 1}});
    }
    patterns.push_back(
        {"two elements in one row", {3 * (f.rows > 1 ? cols : 0) + 2, 3 * (f.rows > 1 ? cols : 0) + 9}});
    std::vector<size_t> burst;
    for (size_t k = 0; k < 32; ++k) burst.push_back(cols + k < f.clean.size() ? cols + k : k);
    patterns.push_back({"burst of 32 consecutive elements", burst});

    for (const auto& pattern : patterns) {
      for (uint32_t mask : {1u << 30, 1u << 27, 1u << 22}) {
        AbftBackend abft(&cpu);
        int calls = 0;
        abft.set_output_fault_hook([&](float* out, size_t, GemmKind) {
          if (calls++ == 0) {
            for (size_t e : pattern.elements) out[e] = fault_test::flip(out[e], mask);
          }
        });
        AbftEvent last;
        abft.set_event_callback([&](const AbftEvent& e) { last = e; });
        Status st;
        const auto out = run_abft(abft, f, &st);
        ASSERT_TRUE(st.is_ok()) << st.to_string();
        EXPECT_EQ(calls, 2) << pattern.name;  // the GEMM and its recompute
        EXPECT_EQ(abft.stats().recomputed, 1u) << gemm_kind_name(kind) << ": " << pattern.name;
        EXPECT_EQ(last.outcome, AbftOutcome::kRecomputed) << last.detail;
        EXPECT_TRUE(fault_test::same_bits(out, f.clean)) << gemm_kind_name(kind) << ": " << pattern.name;
      }
    }
  }
}

TEST(AbftBackend, PersistentFaultEscalates) {
  kernels::cpu::CpuBackend cpu(2);
  for (GemmKind kind : kAllKinds) {
    const Fixture f = make_fixture(cpu, kind, 5);
    AbftBackend abft(&cpu);
    int calls = 0;
    abft.set_output_fault_hook([&](float* out, size_t, GemmKind) {
      ++calls;
      out[0] = fault_test::flip(out[0], 1u << 29);
      out[f.clean.size() - 1] = fault_test::flip(out[f.clean.size() - 1], 1u << 29);
    });
    std::vector<AbftEvent> events;
    abft.set_event_callback([&](const AbftEvent& e) { events.push_back(e); });
    Status st;
    (void)run_abft(abft, f, &st);
    EXPECT_EQ(calls, 2);
    ASSERT_FALSE(st.is_ok()) << gemm_kind_name(kind);
    EXPECT_EQ(st.code(), StatusCode::kInternal);
    EXPECT_NE(st.message().find("ABFT escalation"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(gemm_kind_name(kind)), std::string::npos) << st.message();
    EXPECT_EQ(abft.stats().escalated, 1u);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].outcome, AbftOutcome::kEscalated);
  }
}

// Residuals over tau that persist after a recompute but stay within the worst-case rounding bound are
// tolerated (counted), not escalated: the backstop against a threshold calibration miss.
TEST(AbftBackend, ResidualsWithinTheRoundingBoundAreTolerated) {
  kernels::cpu::CpuBackend cpu(2);
  HostChecksumKernels host(2);
  const Fixture f = make_fixture(cpu, GemmKind::kForward, 6);
  AbftGemm thresholds(&host);
  ASSERT_TRUE(thresholds.encode(fault_test::problem_of(GemmKind::kForward, f.data), nullptr).is_ok());
  // Two elements in different rows and columns, each nudged by twice the larger of its two thresholds
  // (still below the bound: beta / tau is about sqrt(K + 2) = 14 here).
  const std::vector<std::pair<int64_t, int64_t>> where = {{2, 3}, {40, 17}};
  AbftBackend abft(&cpu);
  abft.set_output_fault_hook([&](float* out, size_t, GemmKind) {
    for (auto [i, j] : where) {
      const double tau = std::max(thresholds.row_threshold(i), thresholds.col_threshold(j));
      ASSERT_LT(4.0 * tau, std::min(thresholds.row_bound(i), thresholds.col_bound(j)));
      out[i * f.cols + j] += static_cast<float>(2.0 * tau);
    }
  });
  Status st;
  (void)run_abft(abft, f, &st);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(abft.stats().faults_detected, 1u);
  EXPECT_EQ(abft.stats().tolerated, 1u);
  EXPECT_EQ(abft.stats().escalated, 0u);
}

TEST(AbftBackend, BackwardCallChecksEveryOutputAndForwardsOtherOps) {
  kernels::cpu::CpuBackend cpu(2);
  AbftBackend abft(&cpu);
  EXPECT_EQ(abft.kind(), kernels::DeviceKind::kCpu);
  EXPECT_EQ(std::string(abft.name()), "abft:cpu");
  const Fixture f = make_fixture(cpu, GemmKind::kBackwardWeight, 7);
  const auto& d = f.data;
  std::vector<float> dinp(static_cast<size_t>(d.N) * d.C, 0.0f), dw = f.before, db(d.OC, 0.5f);
  std::vector<float> dinp_ref = dinp, dw_ref = dw, db_ref = db;
  ASSERT_TRUE(cpu.matmul_backward(dinp_ref.data(), dw_ref.data(), db_ref.data(), d.dout.data(), d.inp.data(),
                                  d.weight.data(), d.N, d.C, d.OC)
                  .is_ok());
  // A flip in each output of one backward call: all three corrected.
  abft.set_output_fault_hook(
      [&](float* out, size_t n, GemmKind) { out[n / 2] = fault_test::flip(out[n / 2], 1u << 28); });
  ASSERT_TRUE(abft.matmul_backward(dinp.data(), dw.data(), db.data(), d.dout.data(), d.inp.data(),
                                   d.weight.data(), d.N, d.C, d.OC)
                  .is_ok());
  EXPECT_TRUE(fault_test::same_bits(dinp, dinp_ref));
  EXPECT_TRUE(fault_test::same_bits(dw, dw_ref));
  EXPECT_TRUE(fault_test::same_bits(db, db_ref));
  EXPECT_EQ(abft.stats().gemms_checked, 3u);
  EXPECT_EQ(abft.stats().corrected, 3u);
  // Argument errors come back as Status, before any checksum touches memory.
  EXPECT_EQ(abft.matmul_backward(dinp.data(), nullptr, nullptr, nullptr, d.inp.data(), d.weight.data(), d.N,
                                 d.C, d.OC)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(abft.matmul_forward(dinp.data(), d.inp.data(), d.weight.data(), nullptr, 0, d.C, d.OC).code(),
            StatusCode::kInvalidArgument);
  // Non-GEMM ops pass through.
  std::vector<float> x(64, 2.0f), y(64, 1.0f), z(64);
  ASSERT_TRUE(abft.residual_forward(z.data(), x.data(), y.data(), z.size()).is_ok());
  EXPECT_EQ(z[10], 3.0f);
  double ss = 0.0;
  ASSERT_TRUE(abft.sum_squares(x.data(), x.size(), &ss).is_ok());
  EXPECT_EQ(ss, 256.0);
}

}  // namespace
}  // namespace perigee::fault
