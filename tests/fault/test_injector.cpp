// FaultInjector: the generator matches the published xoshiro256** / SplitMix64 definitions, faults
// are reproducible from the seed, the chosen bit of the chosen element is the one flipped, bursts
// cover consecutive elements, rates convert from upsets per bit per day, every flip is recorded,
// rank deaths are queryable and the plan text parses.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <set>
#include <vector>

#include "fault/injector.hpp"

namespace perigee::fault {
namespace {

std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.5f + static_cast<float>(i) * 0.25f;
  return v;
}

TEST(FaultRng, MatchesTheReferenceGenerators) {
  // SplitMix64 from state 0: the first outputs of the reference implementation (Vigna, splitmix64.c).
  uint64_t state = 0;
  EXPECT_EQ(splitmix64(&state), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(&state), 0x6E789E6AA1B965F4ull);
  // xoshiro256** seeded with four SplitMix64 outputs of seed 0; values from the reference algorithm.
  FaultRng rng(0);
  EXPECT_EQ(rng.next(), 0x99EC5F36CB75F2B4ull);
  EXPECT_EQ(rng.next(), 0xBF6E1F784956452Aull);
  // below() stays in range and hits every value; uniform() is in [0, 1).
  std::set<uint64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    const uint64_t x = rng.below(7);
    ASSERT_LT(x, 7u);
    seen.insert(x);
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_EQ(seen.size(), 7u);
}

TEST(FaultRng, PoissonHasTheRightMean) {
  FaultRng rng(5);
  for (double mean : {0.02, 0.7, 5.0, 60.0}) {
    const int n = 20000;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(rng.poisson(mean));
    EXPECT_NEAR(sum / n, mean, 5.0 * std::sqrt(mean / n)) << mean;
  }
  EXPECT_EQ(rng.poisson(0.0), 0u);
}

TEST(FaultInjector, FlipsTheChosenBitOfTheChosenElement) {
  FaultPlan plan;
  plan.faults.push_back({FaultTarget::kParameter, 3, 0, -1, 5, 30});
  FaultInjector inj(plan);
  auto buf = ramp(16);
  const auto orig = buf;
  EXPECT_EQ(inj.inject(FaultTarget::kParameter, 2, buf.data(), buf.size()), 0u);  // wrong step
  EXPECT_EQ(inj.inject(FaultTarget::kAdamM, 3, buf.data(), buf.size()), 0u);      // wrong target
  EXPECT_EQ(buf, orig);
  EXPECT_EQ(inj.inject(FaultTarget::kParameter, 3, buf.data(), buf.size()), 1u);
  for (size_t i = 0; i < buf.size(); ++i) {
    const uint32_t diff = std::bit_cast<uint32_t>(buf[i]) ^ std::bit_cast<uint32_t>(orig[i]);
    EXPECT_EQ(diff, i == 5 ? 1u << 30 : 0u) << i;
  }
  ASSERT_EQ(inj.records().size(), 1u);
  const FaultRecord& r = inj.records()[0];
  EXPECT_EQ(r.target, FaultTarget::kParameter);
  EXPECT_EQ(r.step, 3);
  EXPECT_EQ(r.index, 5u);
  EXPECT_EQ(r.mask, 1u << 30);
  EXPECT_EQ(r.old_value, orig[5]);
  EXPECT_EQ(std::bit_cast<uint32_t>(r.new_value), std::bit_cast<uint32_t>(buf[5]));
  // A second call in the same step is occurrence 1: the fault does not fire again.
  EXPECT_EQ(inj.inject(FaultTarget::kParameter, 3, buf.data(), buf.size()), 0u);
}

TEST(FaultInjector, MultiBitMasksAndRandomChoices) {
  FaultSpec spec{FaultTarget::kActivation, 0, 0, -1, -1, 4};
  spec.bits = 3;
  FaultInjector inj;
  for (int s = 0; s < 50; ++s) {
    auto buf = ramp(100);
    ASSERT_EQ(inj.apply(spec, s, buf.data(), buf.size()), 1u);
    const FaultRecord& r = inj.records().back();
    EXPECT_EQ(std::popcount(r.mask), 3);
    EXPECT_NE(r.mask & (1u << 4), 0u);  // the given bit is one of them
    EXPECT_LT(r.index, 100u);
  }
  spec.mask = 0x80000001u;  // explicit mask wins
  auto buf = ramp(4);
  inj.apply(spec, 0, buf.data(), buf.size());
  EXPECT_EQ(inj.records().back().mask, 0x80000001u);
}

TEST(FaultInjector, SameSeedSameFaultsDifferentSeedDifferentFaults) {
  auto run = [](uint64_t seed) {
    FaultPlan plan;
    plan.seed = seed;
    plan.faults.push_back({FaultTarget::kGradientPreAllreduce, 1, 0, -1, -1, -1});
    plan.rates.push_back({FaultTarget::kAdamV, 0.0, 0.3, -1, 2, 1});
    FaultInjector inj(plan, 1);
    auto g = ramp(1000), v = ramp(1000);
    for (int64_t s = 0; s < 40; ++s) {
      inj.inject(FaultTarget::kGradientPreAllreduce, s, g.data(), g.size());
      inj.inject(FaultTarget::kAdamV, s, v.data(), v.size());
    }
    return inj.records();
  };
  const auto a = run(11), b = run(11), c = run(12);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, b[i].index);
    EXPECT_EQ(a[i].mask, b[i].mask);
    EXPECT_EQ(a[i].step, b[i].step);
    EXPECT_EQ(a[i].target, b[i].target);
  }
  bool differs = a.size() != c.size();
  for (size_t i = 0; !differs && i < a.size(); ++i)
    differs = a[i].index != c[i].index || a[i].mask != c[i].mask;
  EXPECT_TRUE(differs);
}

TEST(FaultInjector, BurstHitsConsecutiveElementsWithOneMask) {
  FaultPlan plan;
  FaultSpec spec{FaultTarget::kGemmOutput, 7, 0, -1, -1, 12};
  spec.burst = 32;
  plan.faults.push_back(spec);
  plan.seed = 99;
  FaultInjector inj(plan);
  auto buf = ramp(100);
  const auto orig = buf;
  EXPECT_EQ(inj.inject(FaultTarget::kGemmOutput, 7, buf.data(), buf.size()), 1u);
  ASSERT_EQ(inj.records().size(), 32u);
  const size_t first = inj.records()[0].index;
  EXPECT_LE(first + 32, buf.size());
  for (size_t k = 0; k < 32; ++k) {
    EXPECT_EQ(inj.records()[k].index, first + k);
    EXPECT_EQ(inj.records()[k].mask, 1u << 12);
  }
  int changed = 0;
  for (size_t i = 0; i < buf.size(); ++i) changed += buf[i] != orig[i];
  EXPECT_EQ(changed, 32);
  // A burst longer than the buffer covers the buffer.
  spec.burst = 500;
  auto small = ramp(10);
  EXPECT_EQ(inj.apply(spec, 0, small.data(), small.size()), 10u);
}

TEST(FaultInjector, KeepsABoundedWindowOfTheNewestRecords) {
  // A long rate-driven campaign must not grow the record list without bound: the injector keeps the
  // newest record_limit() flips and counts all of them.
  FaultPlan plan;
  plan.seed = 5;
  plan.rates.push_back({FaultTarget::kParameter, 0.0, 0.5, -1, 1, 1});
  FaultInjector inj(plan), all(plan);
  EXPECT_EQ(inj.record_limit(), FaultInjector::kDefaultRecordLimit);
  inj.set_record_limit(16);
  auto buf = ramp(64), same = ramp(64);
  size_t upsets = 0;
  for (int64_t s = 0; s < 200; ++s) {
    upsets += inj.inject(FaultTarget::kParameter, s, buf.data(), buf.size());
    all.inject(FaultTarget::kParameter, s, same.data(), same.size());
  }
  ASSERT_GT(upsets, 32u);
  EXPECT_EQ(buf, same);  // the window changes what is kept, not what is flipped
  EXPECT_EQ(inj.records_total(), upsets);
  ASSERT_EQ(all.records().size(), upsets);
  ASSERT_EQ(inj.records().size(), 16u);
  for (size_t k = 0; k < 16; ++k) {
    const FaultRecord& a = inj.records()[k];
    const FaultRecord& b = all.records()[upsets - 16 + k];
    EXPECT_EQ(a.step, b.step);
    EXPECT_EQ(a.index, b.index);
    EXPECT_EQ(a.mask, b.mask);
  }
  // Lowering the limit keeps the newest; zero keeps none but still counts.
  const FaultRecord newest = inj.records().back();
  inj.set_record_limit(4);
  ASSERT_EQ(inj.records().size(), 4u);
  EXPECT_EQ(inj.records().back().index, newest.index);
  EXPECT_EQ(inj.records().back().step, newest.step);
  inj.set_record_limit(0);
  EXPECT_TRUE(inj.records().empty());
  inj.flip(FaultTarget::kParameter, 300, buf.data(), 3, 1u);
  EXPECT_TRUE(inj.records().empty());
  EXPECT_EQ(inj.records_total(), upsets + 1);
  inj.clear_records();
  EXPECT_EQ(inj.records_total(), 0u);
}

TEST(FaultInjector, OccurrenceAndRankSelectTheCall) {
  FaultPlan plan;
  plan.faults.push_back({FaultTarget::kGemmOutput, 0, 2, 1, 0, 3});
  FaultInjector rank0(plan, 0), rank1(plan, 1);
  for (int call = 0; call < 4; ++call) {
    auto buf = ramp(8);
    EXPECT_EQ(rank0.inject(FaultTarget::kGemmOutput, 0, buf.data(), buf.size()), 0u);
    EXPECT_EQ(rank1.inject(FaultTarget::kGemmOutput, 0, buf.data(), buf.size()), call == 2 ? 1u : 0u) << call;
  }
  ASSERT_EQ(rank1.records().size(), 1u);
  EXPECT_EQ(rank1.records()[0].occurrence, 2);
  EXPECT_EQ(rank1.records()[0].rank, 1);
  // The occurrence count restarts with each step.
  auto buf = ramp(8);
  for (int call = 0; call < 3; ++call) rank1.inject(FaultTarget::kGemmOutput, 1, buf.data(), buf.size());
  EXPECT_EQ(rank1.records().size(), 1u);
}

TEST(FaultInjector, RateConversionFromUpsetsPerBitPerDay) {
  // GPT-2 124M parameters in fp32 at the LEO rate, one step per second.
  const double bits = 124475904.0 * 32.0;
  const double per_step = expected_upsets(kLeoSeuPerBitDay, bits, 1.0);
  EXPECT_NEAR(per_step, 4.04e-7 * bits / 86400.0, 1e-15);
  EXPECT_NEAR(per_step, 0.0186253, 1e-6);
  EXPECT_NEAR(1.0 / per_step, 53.69, 0.01);  // about one upset every 54 steps

  // The injector draws Poisson counts with that mean: a 1 Mi-float buffer exposed for 1 day per call
  // at 1e-6 per bit per day expects 33.55 upsets per call.
  FaultPlan plan;
  plan.seed = 4;
  plan.step_seconds = 86400.0;
  plan.rates.push_back({FaultTarget::kParameter, 1e-6, 0.0, -1, 1, 1});
  FaultInjector inj(plan);
  std::vector<float> buf(size_t{1} << 20, 1.0f);
  const double mean = expected_upsets(1e-6, 32.0 * buf.size(), 86400.0);
  const int steps = 400;
  double total = 0.0;
  for (int s = 0; s < steps; ++s)
    total += static_cast<double>(inj.inject(FaultTarget::kParameter, s, buf.data(), buf.size()));
  EXPECT_NEAR(total / steps, mean, 5.0 * std::sqrt(mean / steps));
  EXPECT_EQ(inj.records().size(), static_cast<size_t>(total));
  for (const auto& r : inj.records()) EXPECT_EQ(std::popcount(r.mask), 1);
  // exposure_seconds overrides the step duration: 1 s of exposure is 86400x fewer.
  FaultInjector short_exposure(plan);
  double few = 0.0;
  for (int s = 0; s < steps; ++s)
    few +=
        static_cast<double>(short_exposure.inject(FaultTarget::kParameter, s, buf.data(), buf.size(), 1.0));
  EXPECT_LE(few, 3.0);

  // probability per call.
  FaultPlan p2;
  p2.rates.push_back({FaultTarget::kMessage, 0.0, 0.25, -1, 1, 1});
  FaultInjector inj2(p2);
  std::vector<float> msg(64, 1.0f);
  double hits = 0.0;
  for (int s = 0; s < 8000; ++s)
    hits += static_cast<double>(inj2.inject(FaultTarget::kMessage, s, msg.data(), msg.size()));
  EXPECT_NEAR(hits / 8000.0, 0.25, 5.0 * std::sqrt(0.25 * 0.75 / 8000.0));
}

TEST(FaultInjector, RankDeathsAreQueryable) {
  FaultPlan plan;
  plan.deaths.push_back({2, 100});
  plan.deaths.push_back({2, 50});
  FaultInjector inj(plan);
  ASSERT_TRUE(inj.death_step(2).has_value());
  EXPECT_EQ(*inj.death_step(2), 50);
  EXPECT_FALSE(inj.death_step(1).has_value());
  EXPECT_FALSE(inj.rank_dead(2, 49));
  EXPECT_TRUE(inj.rank_dead(2, 50));
  EXPECT_FALSE(inj.rank_dead(0, 1000));
}

TEST(FaultInjector, RankDeathsBelongToTheirLaunch) {
  FaultPlan plan;
  ASSERT_TRUE(parse_fault_plan(
                  "death rank=1 step=3\ndeath rank=1 step=7 launch=2\ndeath rank=0 step=9 launch=3", &plan)
                  .is_ok());
  ASSERT_EQ(plan.deaths.size(), 3u);
  EXPECT_EQ(plan.deaths[0].launch, 1);
  EXPECT_EQ(plan.deaths[1].launch, 2);
  FaultInjector inj(plan);
  EXPECT_EQ(inj.death_step(1), 3);
  EXPECT_EQ(inj.death_step(1, 2), 7);
  EXPECT_FALSE(inj.death_step(1, 3).has_value());
  EXPECT_FALSE(inj.death_step(0).has_value());
  EXPECT_EQ(inj.death_step(0, 3), 9);
  EXPECT_TRUE(inj.rank_dead(1, 3));
  EXPECT_FALSE(inj.rank_dead(1, 6, 2)) << "launch 2 passes step 3 alive";
  EXPECT_TRUE(inj.rank_dead(1, 7, 2));
  for (const char* bad : {"death rank=1 step=3 launch=0", "death rank=1 step=3 launch=x",
                          "fault target=activation step=1 launch=2"}) {
    FaultPlan p;
    EXPECT_EQ(parse_fault_plan(bad, &p).code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(FaultInjector, TargetsAnswersAlikeOnEveryRank) {
  FaultPlan plan;
  plan.faults.push_back(FaultSpec{FaultTarget::kGradientPreAllreduce, 3, 0, /*rank=*/1});
  FaultRate rate;
  rate.target = FaultTarget::kParameter;
  rate.per_bit_per_day = 1e-6;
  plan.rates.push_back(rate);
  FaultRate off;  // a rate of zero never fires
  off.target = FaultTarget::kAdamM;
  plan.rates.push_back(off);
  for (int rank : {0, 1, 2}) {
    FaultInjector inj(plan, rank);
    EXPECT_TRUE(inj.targets(FaultTarget::kGradientPreAllreduce)) << rank;
    EXPECT_TRUE(inj.targets(FaultTarget::kParameter)) << rank;
    EXPECT_FALSE(inj.targets(FaultTarget::kAdamM)) << rank;
    EXPECT_FALSE(inj.targets(FaultTarget::kGemmOutput)) << rank;
  }
}

TEST(FaultPlanText, ParsesEveryEntry) {
  FaultPlan plan;
  const char* text =
      "# campaign\n"
      "seed 42\n"
      "step_seconds 0.5\n"
      "fault target=gemm_output step=3 occurrence=1 element=17 bit=30\n"
      "fault target=gradient_post_allreduce step=9 burst=32 bits=2 rank=1   # warp-like\n"
      "fault target=adam_v step=1 mask=0x80000001\n"
      "rate target=parameter per_bit_per_day=4.04e-7\n"
      "rate target=message probability=0.01 rank=0\n"
      "death rank=3 step=250\n"
      "checkpoint_delay 2.5\n"
      "load_delay 4\n";
  ASSERT_TRUE(parse_fault_plan(text, &plan).is_ok());
  EXPECT_EQ(plan.checkpoint_delay_s, 2.5);
  EXPECT_EQ(plan.load_delay_s, 4.0);
  EXPECT_EQ(plan.seed, 42u);
  EXPECT_EQ(plan.step_seconds, 0.5);
  ASSERT_EQ(plan.faults.size(), 3u);
  EXPECT_EQ(plan.faults[0].target, FaultTarget::kGemmOutput);
  EXPECT_EQ(plan.faults[0].step, 3);
  EXPECT_EQ(plan.faults[0].occurrence, 1);
  EXPECT_EQ(plan.faults[0].element, 17);
  EXPECT_EQ(plan.faults[0].bit, 30);
  EXPECT_EQ(plan.faults[1].target, FaultTarget::kGradientPostAllreduce);
  EXPECT_EQ(plan.faults[1].burst, 32);
  EXPECT_EQ(plan.faults[1].bits, 2);
  EXPECT_EQ(plan.faults[1].rank, 1);
  EXPECT_EQ(plan.faults[2].mask, 0x80000001u);
  ASSERT_EQ(plan.rates.size(), 2u);
  EXPECT_EQ(plan.rates[0].per_bit_per_day, 4.04e-7);
  EXPECT_EQ(plan.rates[1].probability_per_call, 0.01);
  EXPECT_EQ(plan.rates[1].rank, 0);
  ASSERT_EQ(plan.deaths.size(), 1u);
  EXPECT_EQ(plan.deaths[0].rank, 3);
  EXPECT_EQ(plan.deaths[0].step, 250);
  for (int t = 0; t < kFaultTargetCount; ++t) {
    FaultTarget back;
    ASSERT_TRUE(parse_fault_target(fault_target_name(static_cast<FaultTarget>(t)), &back));
    EXPECT_EQ(back, static_cast<FaultTarget>(t));
  }
}

TEST(FaultPlanText, RejectsBadEntries) {
  for (const char* bad : {"fault step=3",
                          "fault target=gemm_output",
                          "fault target=nowhere step=1",
                          "fault target=activation step=1 bit=40",
                          "rate target=parameter colour=blue",
                          "death step=3",
                          "seed x",
                          "explode now",
                          "checkpoint_delay -1",
                          "checkpoint_delay inf",
                          "checkpoint_delay",
                          "checkpoint_delay 1 2",
                          "load_delay -0.5",
                          "load_delay nan",
                          "fault target=activation step=1 burst",
                          "death rank=1 step=-5",
                          "fault target=parameter step=-1",
                          "fault target=parameter step=2 rank=-2",
                          "rate target=adam_m probability=0.1 rank=-3",
                          "fault target=parameter step=2 element=-4",
                          "step_seconds nan",
                          "step_seconds -5",
                          "rate target=parameter per_bit_per_day=inf",
                          "rate target=parameter per_bit_per_day=-1",
                          "fault target=parameter step=2 bit=3 bit=4",
                          "death rank=0 step=1 target=adam_m"}) {
    FaultPlan plan;
    const Status s = parse_fault_plan(bad, &plan);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("line 1"), std::string::npos) << s.message();
  }
}

// A plan must not cancel itself or flood: two entries making the same flips are refused (a random
// element or bit draws the same), and so is a rate expecting more than kMaxUpsetsPerElementCall upsets
// per element per step, named by its line whatever comes after it.
TEST(FaultPlanText, RejectsRepeatsAndFloods) {
  FaultPlan repeated, other_bits, fits, floods;
  Status s =
      parse_fault_plan("fault target=adam_m step=2 bit=5\n\nfault bit=5 step=2 target=adam_m\n", &repeated);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("line 3: repeats line 1"), std::string::npos) << s.message();
  EXPECT_TRUE(
      parse_fault_plan("fault target=adam_m step=2 bit=5\nfault target=adam_m step=2 bit=6\n", &other_bits)
          .is_ok());

  // 1e-3 upsets per element per step is 2.7 per bit per day at one step a second.
  EXPECT_TRUE(parse_fault_plan("rate target=parameter per_bit_per_day=2.7\n", &fits).is_ok());
  s = parse_fault_plan("rate target=parameter per_bit_per_day=2.7\nstep_seconds 2\n", &floods);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("fault plan line 1: per_bit_per_day 2.7 over step_seconds 2 expects"),
            std::string::npos)
      << s.message();
}

// A target the job never injects into is an error (an entry that silently does nothing would make a
// campaign report upsets it never had), with the job's reason.
TEST(FaultPlanText, ScopeRefusesTargetsTheJobNeverHits) {
  PlanScope scope;
  scope.parameters = 1000;
  scope.steps = 20;
  scope.targets = 1u << static_cast<int>(FaultTarget::kParameter);
  scope.untargeted_hint = "only parameters here";
  FaultPlan plan;
  ASSERT_TRUE(
      parse_fault_plan("fault target=parameter step=2\nrate target=message probability=1\n", &plan).is_ok());
  const Status s = check_plan_scope(plan, scope, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind(
                "fault plan line 2: target message is never hit in this job: only parameters here", 0),
            0u)
      << s.message();
}

// Entries aimed past the job are errors naming their line; steps the run never reaches are listed.
TEST(FaultPlanText, ScopeChecksRanksElementsAndSteps) {
  PlanScope scope;
  scope.world_size = 2;
  scope.parameters = 1000;
  scope.steps = 20;
  auto check = [&](const std::string& text, std::vector<std::string>* never) {
    FaultPlan plan;
    EXPECT_TRUE(parse_fault_plan(text, &plan).is_ok()) << text;
    return check_plan_scope(plan, scope, never);
  };
  std::vector<std::string> never;
  // Everything inside the job: no error, nothing listed. The edges: in-step targets 0 .. 19, the state
  // after an update 1 .. 20, a death after step 20.
  ASSERT_TRUE(
      check("fault target=gemm_output step=0 rank=1\n"
            "fault target=gradient_post_allreduce step=19 element=999\n"
            "fault target=parameter step=20 element=0\n"
            "fault target=adam_v step=1\n"
            "fault target=activation step=5 element=123456789\n"  // activations are not parameter-sized
            "rate target=parameter probability=0.5 rank=0\n"
            "death rank=1 step=20\n",
            &never)
          .is_ok());
  EXPECT_TRUE(never.empty()) << never.front();

  const Status rank = check("seed 1\n# rank 7 of 2\nfault target=parameter step=3 rank=7\n", &never);
  EXPECT_EQ(rank.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rank.message().rfind("fault plan line 3: rank 7, but the job has 2 rank(s), 0 to 1", 0), 0u)
      << rank.message();
  EXPECT_NE(check("rate target=parameter probability=0.1 rank=2\n", &never).message().find("line 1: rank 2,"),
            std::string::npos);
  EXPECT_NE(check("\ndeath rank=2 step=3\n", &never).message().find("line 2: rank 2,"), std::string::npos);
  const Status element = check("fault target=adam_m step=3 element=1000\n", &never);
  EXPECT_EQ(element.message().rfind("fault plan line 1: element 1000 is past the 1000 elements of the adam_m "
                                    "buffer (the model's parameters)",
                                    0),
            0u)
      << element.message();
  EXPECT_FALSE(check("fault target=gradient_pre_allreduce step=3 element=5000\n", &never).is_ok());

  ASSERT_TRUE(check("fault target=gemm_output step=20\nfault target=parameter step=0\n"
                    "fault target=adam_v step=21\ndeath rank=0 step=21 launch=2\n",
                    &never)
                  .is_ok());
  ASSERT_EQ(never.size(), 4u);
  EXPECT_EQ(
      never[0],
      "fault plan line 1: the gemm_output fault at step 20 never fires (this target is hit at steps 0 to 19 "
      "of [train] steps = 20)");
  EXPECT_NE(
      never[1].find("line 2: the parameter fault at step 0 never fires (this target is hit at steps 1 to 20"),
      std::string::npos)
      << never[1];
  EXPECT_NE(never[2].find("line 3: the adam_v fault at step 21"), std::string::npos) << never[2];
  EXPECT_EQ(never[3],
            "fault plan line 4: the death of rank 0 after step 21 never happens ([train] steps = 20)");
}

}  // namespace
}  // namespace perigee::fault
