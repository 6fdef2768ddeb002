// bench_fault_campaign: a single-bit-flip campaign against the detection ladder on the CPU backend,
// and the ABFT overhead per training step. One process, a tiny GPT (2 layers, 64 channels, batch 4,
// seq 32, byte vocab) trained on a seeded synthetic token stream. The ladder is the Trainer's
// single-replica one, rebuilt around GptModel + optimizer_step: ABFT on every GEMM (AbftBackend),
// StepInvariants (non-finite, loss/grad spike vs the window), and a re-run of a triggered step.
// One clean reference trajectory is computed once; each flip restores a snapshot, runs two steps
// (s: the flip, s+1: its effect) and compares against the reference. Classes:
//   corrected    a rung fired and the state after step s+1 is bit-identical to the reference
//   detected     a rung fired, state differs (batch skipped, ABFT escalation: rollback territory)
//   harmful      no rung fired and |dloss(s+1)| / loss > bound, or |dparams| / |params| > bound,
//                or the state is not finite
//   harmless     no rung fired, effect below the bound (masked: bit-identical, counted apart)
// Memory flips (parameter, adam_m, adam_v) land after the update of step s; only replica digests
// (rung 4, needs >= 2 ranks) see them directly, so here they count as the single-replica ladder sees
// them. --digest emulates a 3-replica digest after step s for memory flips (a flipped state never
// matches the reference, so the majority repairs it).
//   bench_fault_campaign [--flips 10000] [--seed 1] [--bound 1e-3] [--json f] [--overhead] [--digest]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/memory_fit.hpp"
#include "fault/abft_backend.hpp"
#include "fault/injector.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/cli_checks.hpp"
#include "runtime/fault_ladder.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"

namespace {

using namespace perigee;
namespace rt = perigee::runtime;
using Clock = std::chrono::steady_clock;

enum Location { kGemmOutput, kGradient, kParameter, kAdamM, kAdamV, kLocationCount };
const char* kLocationNames[kLocationCount] = {"gemm_output", "gradient", "parameter", "adam_m", "adam_v"};
const fault::FaultTarget kLocationTargets[kLocationCount] = {
    fault::FaultTarget::kGemmOutput, fault::FaultTarget::kGradientPreAllreduce,
    fault::FaultTarget::kParameter, fault::FaultTarget::kAdamM, fault::FaultTarget::kAdamV};

enum BitClass { kSign, kExponent, kMantissaHigh, kMantissaLow, kBitClassCount };
const char* kBitClassNames[kBitClassCount] = {"sign", "exponent", "mant_hi", "mant_lo"};
// Inclusive bit ranges: sign 31, exponent 30..23, high mantissa 22..12, low mantissa 11..0.
const int kBitLo[kBitClassCount] = {31, 23, 12, 0};
const int kBitHi[kBitClassCount] = {31, 30, 22, 11};

enum Outcome { kCorrected, kDetected, kHarmful, kHarmless, kOutcomeCount };
const char* kOutcomeNames[kOutcomeCount] = {"corrected", "detected", "harmful", "harmless"};

struct Cell {
  std::array<uint64_t, kOutcomeCount> n{};
  uint64_t masked = 0;         // harmless and bit-identical
  uint64_t by_abft = 0;        // detections where ABFT fired
  uint64_t by_invariants = 0;  // detections where an invariant fired
};

// The campaign's model: small enough to keep a state per reference step.
const rt::GptShape kCampaignShape{2, 2, 64, 32, 256, 256};

struct State {
  std::vector<float> p, m, v;
  int64_t updates = 0;  // AdamW updates applied (the trainer's bias-correction count)
};

struct StepReport {
  double loss = 0.0;
  bool abft = false;       // ABFT flagged an output
  bool invariant = false;  // an invariant fired
  bool error = false;      // ABFT escalation (or another error): the step did not complete
};

// GPT + ABFT backend + the Trainer's single-replica ladder (rungs 1-3).
class Harness {
 public:
  Harness(rt::GptShape shape, int B, int T, int threads, bool abft) : cpu_(threads), B_(B), T_(T) {
    kernels::Backend* backend = &cpu_;
    if (abft) {
      abft_ = std::make_unique<fault::AbftBackend>(&cpu_);
      abft_->set_output_fault_hook([this](float* out, size_t n, fault::GemmKind) { on_gemm_output(out, n); });
      backend = abft_.get();
    }
    PERIGEE_CHECK_OR_DIE(model_.init(shape, backend, B, T));
    PERIGEE_CHECK_OR_DIE(model_.init_parameters(7));
    tc_.steps = 1000;
    tc_.warmup_steps = 5;
    tc_.lr = 1e-3;
    vocab_ = shape.vocab;
  }

  rt::GptModel& model() { return model_; }
  fault::AbftBackend* abft() { return abft_.get(); }
  rt::StepInvariants& invariants() { return invariants_; }
  const fault::FaultInjector& injector() const { return injector_; }
  uint64_t gemm_elements_seen() const { return seen_; }

  // Arms a flip of `mask` into the GEMM output element `element` (counted over the outputs of the
  // coming step in call order), or of the gradient element after backward.
  void arm_gemm(uint64_t element, uint32_t mask) {
    gemm_target_ = element, gemm_mask_ = mask, gemm_armed_ = true;
  }
  void arm_gradient(size_t element, uint32_t mask) {
    grad_target_ = element, grad_mask_ = mask, grad_armed_ = true;
  }
  void disarm() { gemm_armed_ = grad_armed_ = false; }
  void reset_count() { seen_ = 0; }

  // Deterministic synthetic text: a noisy cyclic walk over the byte vocabulary, batch per step.
  void make_batch(int64_t step) {
    const size_t n = static_cast<size_t>(B_) * T_;
    x_.resize(n);
    y_.resize(n);
    rt::SplitMix64 rng(1000003ull * static_cast<uint64_t>(step) + 17);
    for (int b = 0; b < B_; ++b) {
      int tok = static_cast<int>(rng.next() % vocab_);
      for (int t = 0; t <= T_; ++t) {
        const size_t i = static_cast<size_t>(b) * T_ + t;
        if (t < T_) x_[i] = tok;
        if (t > 0) y_[i - 1] = tok;
        tok = (rng.next() % 8 == 0) ? static_cast<int>(rng.next() % vocab_) : (tok * 5 + 3) % vocab_;
      }
    }
  }

  Status compute_gradients(int64_t step, double* loss, double* norm) {
    make_batch(step);
    PERIGEE_CHECK(model_.forward(x_.data(), y_.data(), B_, T_, loss));
    PERIGEE_CHECK(model_.zero_grad());
    PERIGEE_CHECK(model_.backward());
    if (grad_armed_) {
      grad_armed_ = false;
      injector_.flip(fault::FaultTarget::kGradientPreAllreduce, step, model_.grads(), grad_target_,
                     grad_mask_);
    }
    return rt::gradient_norm(model_, norm);
  }

  // Trainer::step without data loading, metrics and replica rungs.
  StepReport step(int64_t step, bool ladder = true) {
    StepReport r;
    const uint64_t abft0 = abft_ ? abft_->stats().faults_detected : 0;
    double loss = 0.0, norm = 0.0;
    Status s = compute_gradients(step, &loss, &norm);
    bool apply = true;
    if (s.is_ok() && ladder) {
      if (invariants_.check(loss, norm).triggered) {
        r.invariant = true;
        apply = false;
        double loss2 = 0.0, norm2 = 0.0;
        s = compute_gradients(step, &loss2, &norm2);
        if (s.is_ok() && !(loss2 == loss && norm2 == norm) && !invariants_.check(loss2, norm2).triggered) {
          loss = loss2, norm = norm2, apply = true;  // transient: the re-run is kept
        }
      }
    }
    if (s.is_ok() && apply) {
      rt::UpdateStats us;
      s = rt::optimizer_step(model_, tc_, step, &us, &norm, updates_);
      if (s.is_ok()) {
        ++updates_;
        invariants_.accept(loss, norm);
      }
    }
    r.error = !s.is_ok();
    r.abft = abft_ && abft_->stats().faults_detected > abft0;
    r.loss = loss;
    return r;
  }

  void save(State* st) {
    const size_t n = model_.num_parameters();
    st->p.assign(model_.params(), model_.params() + n);
    st->m.assign(model_.adam_m(), model_.adam_m() + n);
    st->v.assign(model_.adam_v(), model_.adam_v() + n);
    st->updates = updates_;
  }
  void restore(const State& st) {
    std::memcpy(model_.params(), st.p.data(), st.p.size() * sizeof(float));
    std::memcpy(model_.adam_m(), st.m.data(), st.m.size() * sizeof(float));
    std::memcpy(model_.adam_v(), st.v.data(), st.v.size() * sizeof(float));
    updates_ = st.updates;
  }
  bool equals(const State& st) {
    const size_t bytes = st.p.size() * sizeof(float);
    return std::memcmp(model_.params(), st.p.data(), bytes) == 0 &&
           std::memcmp(model_.adam_m(), st.m.data(), bytes) == 0 &&
           std::memcmp(model_.adam_v(), st.v.data(), bytes) == 0 && updates_ == st.updates;
  }
  fault::FaultInjector& injector() { return injector_; }

 private:
  void on_gemm_output(float* out, size_t n) {
    if (gemm_armed_ && gemm_target_ >= seen_ && gemm_target_ < seen_ + n) {
      gemm_armed_ = false;
      injector_.flip(fault::FaultTarget::kGemmOutput, 0, out, static_cast<size_t>(gemm_target_ - seen_),
                     gemm_mask_);
    }
    seen_ += n;
  }

  kernels::cpu::CpuBackend cpu_;
  std::unique_ptr<fault::AbftBackend> abft_;  // before model_: the model releases through it
  rt::GptModel model_;
  rt::TrainConfig tc_;
  rt::StepInvariants invariants_{4.0, 20.0, 20};  // [fault] defaults
  int64_t updates_ = 0;
  fault::FaultInjector injector_;
  int B_, T_, vocab_ = 256;
  std::vector<int32_t> x_, y_;
  uint64_t seen_ = 0, gemm_target_ = 0;
  size_t grad_target_ = 0;
  uint32_t gemm_mask_ = 0, grad_mask_ = 0;
  bool gemm_armed_ = false, grad_armed_ = false;
};

bool finite_state(rt::GptModel& model) {
  const size_t n = model.num_parameters();
  for (const float* buf : {model.params(), model.adam_m(), model.adam_v()}) {
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(buf[i])) return false;
    }
  }
  return true;
}

double relative_distance(const float* a, const std::vector<float>& ref) {
  double d = 0.0, r = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = static_cast<double>(a[i]) - ref[i];
    d += e * e;
    r += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(d) / std::max(std::sqrt(r), 1e-30);
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ABFT off vs on for one shape: both models step on the same batches, interleaved, median ms.
nlohmann::ordered_json measure_overhead(const std::string& name, rt::GptShape shape, int B, int T, int iters,
                                        int threads) {
  Harness off(shape, B, T, threads, false), on(shape, B, T, threads, true);
  std::vector<double> t_off, t_on;
  for (int i = 0; i < iters + 1; ++i) {
    for (Harness* h : {&off, &on}) {
      const auto t0 = Clock::now();
      StepReport r = h->step(i, false);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (r.error) {
        std::fprintf(stderr, "overhead step failed\n");
        std::exit(1);
      }
      if (i > 0) (h == &off ? t_off : t_on).push_back(ms);
    }
  }
  const double m_off = median_of(t_off), m_on = median_of(t_on);
  std::printf("  %-28s %10zu %10.2f %10.2f %8.3f\n", name.c_str(), off.model().num_parameters(), m_off, m_on,
              m_on / m_off);
  std::fflush(stdout);
  return {{"model", name},
          {"params", off.model().num_parameters()},
          {"batch", B},
          {"seq", T},
          {"ms_abft_off", m_off},
          {"ms_abft_on", m_on},
          {"ratio", m_on / m_off},
          {"iters", iters}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_fault_campaign: single-bit-flip campaign against the detection ladder (CPU)"};
  int64_t flips = 10000;
  uint64_t seed = 1;
  double bound = 1e-3;
  int points = 4, warm = 12, threads = 0, iters = 7;
  bool overhead = false, digest = false, campaign = true;
  std::string json_path;
  app.add_option("--flips", flips, "injected single-bit flips")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--seed", seed, "campaign seed");
  app.add_option("--bound", bound, "harm bound: relative loss change at s+1 or relative parameter distance")
      ->check(perigee::runtime::cli::finite_above_zero());
  app.add_option("--points", points, "snapshot steps on the reference trajectory")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--warm", warm, "clean steps before the first snapshot (fills the invariant window)")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--threads", threads, "CPU threads (0 = all)")->check(perigee::runtime::cli::thread_count());
  app.add_option("--iters", iters, "timed steps per overhead case (median)")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_flag("--overhead", overhead, "also measure the ABFT overhead per training step");
  app.add_flag("!--no-campaign", campaign, "skip the campaign (overhead only)");
  app.add_flag("--digest", digest, "emulate a 3-replica digest after step s (memory flips repaired)");
  app.add_option("--json", json_path, "JSON output file");
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "bench_fault_campaign");
      rc >= 0)
    return rc;
  if (!json_path.empty() && !perigee::bench::check_json_path("bench_fault_campaign", json_path)) return 2;
  if (campaign) {  // the reference trajectory keeps parameters and both moments at every step
    const double states = static_cast<double>(warm) + 2.0 * points + 3.0;
    const double bytes = states * 3.0 * sizeof(float) * rt::ParameterTable::for_shape(kCampaignShape).total();
    if (!perigee::bench::check_fits_in_memory(
            "bench_fault_campaign",
            "--points " + std::to_string(points) + " with --warm " + std::to_string(warm) + " (" +
                std::to_string(static_cast<long long>(states)) + " saved model states)",
            bytes))
      return 2;
  }
  perigee::bench::exit_when_out_of_memory("bench_fault_campaign");

  nlohmann::ordered_json doc = {{"benchmark", "fault_campaign"},
                                {"backend", "cpu"},
                                {"seed", seed},
                                {"bound", bound},
                                {"digest_emulated", digest}};
  const auto t_start = Clock::now();

  if (campaign) {
    const int B = 4, T = 32;
    Harness h(kCampaignShape, B, T, threads, true);
    const size_t n = h.model().num_parameters();

    // Reference trajectory: states at the start of every step, losses, invariant windows.
    const int64_t last = warm + 2 * points + 2;
    std::vector<State> states(last + 1);
    std::vector<rt::StepInvariants> windows(last + 1, h.invariants());
    std::vector<double> losses(last + 1, 0.0);
    uint64_t gemm_elements = 0;
    for (int64_t s = 0; s < last; ++s) {
      h.save(&states[s]);
      windows[s] = h.invariants();
      h.reset_count();
      StepReport r = h.step(s);
      if (r.error || r.abft || r.invariant) {
        std::fprintf(stderr, "reference step %lld not clean\n", static_cast<long long>(s));
        return 1;
      }
      losses[s] = r.loss;
      gemm_elements = h.gemm_elements_seen();
    }
    h.save(&states[last]);
    std::vector<int64_t> snap;
    for (int p = 0; p < points; ++p) snap.push_back(warm + 2 * p);
    std::printf(
        "# bench_fault_campaign: %lld flips, GPT 2L 2H 64C vocab 256, batch %d, seq %d, %zu params, "
        "%llu GEMM output elements per step; reference loss %.4f -> %.4f over %lld steps\n",
        static_cast<long long>(flips), B, T, n, static_cast<unsigned long long>(gemm_elements), losses[0],
        losses[last - 1], static_cast<long long>(last));
    std::fflush(stdout);

    std::array<std::array<Cell, kBitClassCount>, kLocationCount> table{};
    fault::FaultRng rng(seed);
    uint64_t errors = 0;
    const auto t_campaign = Clock::now();
    for (int64_t i = 0; i < flips; ++i) {
      const auto loc = static_cast<Location>(rng.below(kLocationCount));
      const auto bc = static_cast<BitClass>(rng.below(kBitClassCount));
      const int bit = kBitLo[bc] + static_cast<int>(rng.below(kBitHi[bc] - kBitLo[bc] + 1));
      const uint32_t mask = 1u << bit;
      const int64_t s = snap[rng.below(snap.size())];
      h.restore(states[s]);
      h.invariants() = windows[s];
      h.reset_count();
      h.disarm();
      h.injector().clear_records();
      if (loc == kGemmOutput) h.arm_gemm(rng.below(gemm_elements), mask);
      if (loc == kGradient) h.arm_gradient(rng.below(n), mask);
      StepReport r1 = h.step(s);
      StepReport r2;
      bool digest_repaired = false;
      if (!r1.error) {
        if (loc == kParameter || loc == kAdamM || loc == kAdamV) {
          float* buf = loc == kParameter ? h.model().params()
                       : loc == kAdamM   ? h.model().adam_m()
                                         : h.model().adam_v();
          h.injector().flip(kLocationTargets[loc], s, buf, rng.below(n), mask);
        }
        // Compute flips act before the allreduce, so every replica shares them: no digest sees them.
        const bool memory = loc == kParameter || loc == kAdamM || loc == kAdamV;
        if (digest && memory && !h.equals(states[s + 1])) {
          h.restore(states[s + 1]);  // the two clean replicas outvote this one
          digest_repaired = true;
        }
        r2 = h.step(s + 1);
      } else {
        ++errors;
      }
      const bool abft = r1.abft || r2.abft;
      const bool inv = r1.invariant || r2.invariant;
      const bool detected = abft || inv || r1.error || r2.error || digest_repaired;
      const bool identical = !r1.error && !r2.error && h.equals(states[s + 2]);
      Cell& c = table[loc][bc];
      Outcome o;
      if (detected) {
        o = identical ? kCorrected : kDetected;
        c.by_abft += abft;
        c.by_invariants += inv;
      } else if (identical) {
        o = kHarmless;
        ++c.masked;
      } else {
        const double dl = std::fabs(r2.loss - losses[s + 1]) / std::fabs(losses[s + 1]);
        const double dp = relative_distance(h.model().params(), states[s + 2].p);
        const bool bad =
            !std::isfinite(r2.loss) || !finite_state(h.model()) || !(dl <= bound) || !(dp <= bound);
        o = bad ? kHarmful : kHarmless;
      }
      ++c.n[o];
    }
    const double campaign_s = std::chrono::duration<double>(Clock::now() - t_campaign).count();

    // Table: location x bit class, outcome counts.
    std::printf("# %-12s %-9s %10s %10s %10s %10s %10s   (masked, by ABFT, by invariants)\n", "location",
                "bits", "corrected", "detected", "harmful", "harmless", "total");
    std::array<uint64_t, kOutcomeCount> grand{};
    nlohmann::ordered_json rows = nlohmann::json::array();
    for (int l = 0; l < kLocationCount; ++l) {
      std::array<uint64_t, kOutcomeCount> lt{};
      for (int b = 0; b < kBitClassCount; ++b) {
        const Cell& c = table[l][b];
        uint64_t tot = 0;
        for (int o = 0; o < kOutcomeCount; ++o) tot += c.n[o], lt[o] += c.n[o], grand[o] += c.n[o];
        std::printf("  %-12s %-9s %10llu %10llu %10llu %10llu %10llu   (%llu, %llu, %llu)\n",
                    kLocationNames[l], kBitClassNames[b], static_cast<unsigned long long>(c.n[0]),
                    static_cast<unsigned long long>(c.n[1]), static_cast<unsigned long long>(c.n[2]),
                    static_cast<unsigned long long>(c.n[3]), static_cast<unsigned long long>(tot),
                    static_cast<unsigned long long>(c.masked), static_cast<unsigned long long>(c.by_abft),
                    static_cast<unsigned long long>(c.by_invariants));
        nlohmann::ordered_json row = {{"location", kLocationNames[l]}, {"bits", kBitClassNames[b]}};
        for (int o = 0; o < kOutcomeCount; ++o) row[kOutcomeNames[o]] = c.n[o];
        row["total"] = tot;
        row["masked"] = c.masked;
        row["by_abft"] = c.by_abft;
        row["by_invariants"] = c.by_invariants;
        rows.push_back(row);
      }
      std::printf("  %-12s %-9s %10llu %10llu %10llu %10llu %10llu\n", kLocationNames[l], "all",
                  static_cast<unsigned long long>(lt[0]), static_cast<unsigned long long>(lt[1]),
                  static_cast<unsigned long long>(lt[2]), static_cast<unsigned long long>(lt[3]),
                  static_cast<unsigned long long>(lt[0] + lt[1] + lt[2] + lt[3]));
    }
    std::printf("  %-12s %-9s %10llu %10llu %10llu %10llu %10lld\n", "TOTAL", "all",
                static_cast<unsigned long long>(grand[0]), static_cast<unsigned long long>(grand[1]),
                static_cast<unsigned long long>(grand[2]), static_cast<unsigned long long>(grand[3]),
                static_cast<long long>(flips));
    const fault::AbftStats& st = h.abft()->stats();
    nlohmann::ordered_json totals;
    for (int o = 0; o < kOutcomeCount; ++o) totals[kOutcomeNames[o]] = grand[o];
    doc["campaign"] = {{"flips", flips},
                       {"model", "2L 2H 64C vocab 256"},
                       {"batch", B},
                       {"seq", T},
                       {"params", n},
                       {"gemm_output_elements_per_step", gemm_elements},
                       {"snapshot_steps", snap},
                       {"seconds", campaign_s},
                       {"step_errors", errors},
                       {"abft",
                        {{"gemms_checked", st.gemms_checked},
                         {"faults_detected", st.faults_detected},
                         {"corrected", st.corrected},
                         {"recomputed", st.recomputed},
                         {"escalated", st.escalated},
                         {"tolerated", st.tolerated},
                         {"unverifiable", st.unverifiable}}},
                       {"totals", totals},
                       {"rows", rows}};
    std::printf(
        "# %lld flips in %.1f s: %llu corrected, %llu detected not corrected, %llu escaped harmful, "
        "%llu escaped harmless (bound %.0e; %s)\n",
        static_cast<long long>(flips), campaign_s, static_cast<unsigned long long>(grand[0]),
        static_cast<unsigned long long>(grand[1]), static_cast<unsigned long long>(grand[2]),
        static_cast<unsigned long long>(grand[3]), bound,
        digest ? "3-replica digest emulated" : "single replica: no digest rung");
    std::fflush(stdout);
  }

  if (overhead) {
    std::printf("# ABFT overhead per training step (forward + backward + AdamW), median of %d, interleaved\n",
                iters);
    std::printf("# %-28s %10s %10s %10s %8s\n", "model", "params", "ms off", "ms on", "ratio");
    nlohmann::ordered_json cases = nlohmann::json::array();
    cases.push_back(measure_overhead("tiny 2L 64C B4 T32", rt::GptShape{2, 2, 64, 32, 256, 256}, 4, 32,
                                     iters * 5, threads));
    cases.push_back(measure_overhead("medium 4L 256C B4 T256", rt::GptShape{4, 4, 256, 256, 256, 256}, 4, 256,
                                     iters, threads));
    doc["overhead"] = cases;
  }
  doc["seconds_total"] = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (!json_path.empty()) {
    if (!perigee::bench::write_json_text("bench_fault_campaign", json_path, doc.dump(2))) return 1;
    std::printf("# wrote %s\n", json_path.c_str());
  }
  return 0;
}
