// FaultInjector: random streams, plan application, records and the plan text parser.
#include "fault/injector.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace perigee::fault {
namespace {

constexpr double kSecondsPerDay = 86400.0;
constexpr double kPoissonChunk = 16.0;        // exp(-16) is far from underflow
constexpr uint64_t kSourceRate = 1ull << 32;  // stream sources: spec index, or this + rate index
constexpr uint64_t kSourceDirect = ~0ull;

inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// Stream key: every field mixed through SplitMix64 in turn.
uint64_t mix(std::initializer_list<uint64_t> fields) {
  uint64_t state = 0x6A09E667F3BCC909ull;
  uint64_t h = 0;
  for (uint64_t f : fields) {
    state ^= f;
    h ^= splitmix64(&state);
  }
  return h;
}

std::string_view trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

template <typename Int>
bool parse_int(std::string_view v, Int* out) {
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    v.remove_prefix(2);
    base = 16;
  }
  const auto r = std::from_chars(v.data(), v.data() + v.size(), *out, base);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

bool parse_double(std::string_view v, double* out) {
  const auto r = std::from_chars(v.data(), v.data() + v.size(), *out);
  return r.ec == std::errc() && r.ptr == v.data() + v.size();
}

// Two plan entries that make the same flips (the line they came from aside).
bool same_fault(const FaultSpec& a, const FaultSpec& b) {
  return a.target == b.target && a.step == b.step && a.occurrence == b.occurrence && a.rank == b.rank &&
         a.element == b.element && a.bit == b.bit && a.bits == b.bits && a.mask == b.mask &&
         a.burst == b.burst;
}

}  // namespace

// ---------------------------------------------------------------- FaultRng

FaultRng::FaultRng(uint64_t seed) {
  uint64_t state = seed;
  for (auto& s : s_) s = splitmix64(&state);
}

uint64_t FaultRng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t FaultRng::below(uint64_t bound) {
  if (bound <= 1) return 0;
  unsigned __int128 m = static_cast<unsigned __int128>(next()) * bound;
  auto low = static_cast<uint64_t>(m);
  if (low < bound) {
    const uint64_t threshold = (0 - bound) % bound;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next()) * bound;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

double FaultRng::uniform() {
  return static_cast<double>(next() >> 11) * 0x1p-53;
}

uint64_t FaultRng::poisson(double mean) {
  uint64_t total = 0;
  while (mean > 0.0) {
    const double m = std::min(mean, kPoissonChunk);
    mean -= m;
    // Inversion: the smallest k with F(k) >= u.
    const double u = uniform();
    double p = std::exp(-m), cdf = p;
    uint64_t k = 0;
    while (u > cdf && k < 1000) {
      ++k;
      p *= m / static_cast<double>(k);
      cdf += p;
    }
    total += k;
  }
  return total;
}

// ---------------------------------------------------------------- names, rates, plan text

const char* fault_target_name(FaultTarget target) {
  switch (target) {
    case FaultTarget::kGemmOutput:
      return "gemm_output";
    case FaultTarget::kActivation:
      return "activation";
    case FaultTarget::kParameter:
      return "parameter";
    case FaultTarget::kGradientPreAllreduce:
      return "gradient_pre_allreduce";
    case FaultTarget::kGradientPostAllreduce:
      return "gradient_post_allreduce";
    case FaultTarget::kAdamM:
      return "adam_m";
    case FaultTarget::kAdamV:
      return "adam_v";
    case FaultTarget::kMessage:
      return "message";
  }
  return "unknown";
}

bool parse_fault_target(std::string_view name, FaultTarget* target) {
  for (int t = 0; t < kFaultTargetCount; ++t) {
    if (name == fault_target_name(static_cast<FaultTarget>(t))) {
      *target = static_cast<FaultTarget>(t);
      return true;
    }
  }
  return false;
}

double expected_upsets(double per_bit_per_day, double bits, double seconds) {
  return per_bit_per_day * bits * seconds / kSecondsPerDay;
}

Status parse_fault_plan(std::string_view text, FaultPlan* plan) {
  int line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (const auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    std::vector<std::string_view> tokens;
    while (!line.empty()) {
      const auto sp = line.find_first_of(" \t");
      tokens.push_back(line.substr(0, sp));
      line = sp == std::string_view::npos ? std::string_view{} : trim(line.substr(sp));
    }
    const std::string_view kind = tokens[0];
    auto bad = [&](std::string_view what) {
      return make_error(StatusCode::kInvalidArgument, "fault plan line ", line_no, ": ", what);
    };
    if (kind == "seed" || kind == "step_seconds" || kind == "checkpoint_delay" || kind == "load_delay") {
      if (tokens.size() != 2) return bad(str_cat("'", kind, "' takes one value"));
      // The step's exposure and the storage delays: finite seconds >= 0.
      auto delay = [&](double* out) {
        return parse_double(tokens[1], out) && std::isfinite(*out) && *out >= 0.0;
      };
      const bool ok = kind == "seed"               ? parse_int(tokens[1], &plan->seed)
                      : kind == "step_seconds"     ? delay(&plan->step_seconds)
                      : kind == "checkpoint_delay" ? delay(&plan->checkpoint_delay_s)
                                                   : delay(&plan->load_delay_s);
      if (!ok) return bad(str_cat("bad value '", tokens[1], "' for ", kind));
      continue;
    }
    if (kind != "fault" && kind != "rate" && kind != "death") {
      return bad(str_cat("unknown entry '", kind,
                         "' (seed, step_seconds, checkpoint_delay, load_delay, fault, rate, death)"));
    }
    FaultSpec spec;
    FaultRate rate;
    RankDeath death;
    bool has_target = false, has_step = false, has_rank = false;
    std::vector<std::string_view> keys;
    for (size_t t = 1; t < tokens.size(); ++t) {
      const auto eq = tokens[t].find('=');
      if (eq == std::string_view::npos) return bad(str_cat("expected key=value, got '", tokens[t], "'"));
      const std::string_view key = tokens[t].substr(0, eq), val = tokens[t].substr(eq + 1);
      if (std::find(keys.begin(), keys.end(), key) != keys.end())
        return bad(str_cat("'", key, "' is given twice"));
      keys.push_back(key);
      bool ok = true, known = true;
      if (key == "target" && kind != "death") {
        FaultTarget target = FaultTarget::kGemmOutput;
        ok = parse_fault_target(val, &target);
        spec.target = rate.target = target;
        has_target = true;
      } else if (key == "rank") {
        ok = parse_int(val, &spec.rank);
        rate.rank = death.rank = spec.rank;
        has_rank = true;
      } else if (key == "step" && kind != "rate") {
        ok = parse_int(val, &spec.step);
        death.step = spec.step;
        has_step = true;
      } else if (key == "bits" && kind != "death") {
        ok = parse_int(val, &spec.bits) && spec.bits >= 1 && spec.bits <= 32;
        rate.bits = spec.bits;
      } else if (key == "burst" && kind != "death") {
        ok = parse_int(val, &spec.burst) && spec.burst >= 1;
        rate.burst = spec.burst;
      } else if (kind == "death" && key == "launch") {
        ok = parse_int(val, &death.launch) && death.launch >= 1;
      } else if (kind == "fault" && key == "occurrence") {
        ok = parse_int(val, &spec.occurrence) && spec.occurrence >= 0;
      } else if (kind == "fault" && key == "element") {
        ok = parse_int(val, &spec.element);
      } else if (kind == "fault" && key == "bit") {
        ok = parse_int(val, &spec.bit) && spec.bit >= -1 && spec.bit <= 31;
      } else if (kind == "fault" && key == "mask") {
        ok = parse_int(val, &spec.mask);
      } else if (kind == "rate" && key == "per_bit_per_day") {
        ok = parse_double(val, &rate.per_bit_per_day) && std::isfinite(rate.per_bit_per_day) &&
             rate.per_bit_per_day >= 0.0;
      } else if (kind == "rate" && key == "probability") {
        ok = parse_double(val, &rate.probability_per_call) && rate.probability_per_call >= 0.0 &&
             rate.probability_per_call <= 1.0;
      } else {
        known = false;
      }
      if (!known) return bad(str_cat("unknown key '", key, "' for ", kind));
      if (!ok) return bad(str_cat("bad value '", val, "' for ", key));
    }
    if (spec.rank < -1)
      return bad(str_cat("bad value '", spec.rank, "' for rank (-1 = every rank, else >= 0)"));
    if (has_step && spec.step < 0)
      return bad(str_cat("bad value '", spec.step, "' for step (steps count from 0)"));
    if (spec.element < -1)
      return bad(str_cat("bad value '", spec.element, "' for element (-1 = random, else >= 0)"));
    spec.line = rate.line = death.line = line_no;
    if (kind == "fault") {
      if (!has_target || !has_step) return bad("fault needs target= and step=");
      for (const FaultSpec& f : plan->faults) {
        if (same_fault(f, spec))
          return bad(str_cat("repeats line ", f.line, " (the same flips twice cancel each other)"));
      }
      plan->faults.push_back(spec);
    } else if (kind == "rate") {
      if (!has_target) return bad("rate needs target=");
      plan->rates.push_back(rate);
    } else {
      if (!has_rank || !has_step || death.rank < 0) return bad("death needs rank= (>= 0) and step=");
      plan->deaths.push_back(death);
    }
  }
  // A rate is a radiation rate, not a flood: at most kMaxUpsetsPerElementCall expected upsets per
  // element per call (the Poisson draw and the flips grow with it).
  for (const FaultRate& r : plan->rates) {
    const double per_element = expected_upsets(r.per_bit_per_day, 32.0, plan->step_seconds);
    if (per_element > kMaxUpsetsPerElementCall) {
      return make_error(StatusCode::kInvalidArgument, "fault plan line ", r.line, ": per_bit_per_day ",
                        r.per_bit_per_day, " over step_seconds ", plan->step_seconds, " expects ",
                        per_element, " upsets per element per step, more than ", kMaxUpsetsPerElementCall,
                        " (the LEO reference is 1.5e-10 per element-second); lower the rate or step_seconds");
    }
  }
  return Status::ok();
}

namespace {

// The state after an update is hit once the step counter has moved on (1 .. steps).
bool hits_state_after_update(FaultTarget t) {
  return t == FaultTarget::kParameter || t == FaultTarget::kAdamM || t == FaultTarget::kAdamV;
}

bool parameter_sized(FaultTarget t) {
  return hits_state_after_update(t) || t == FaultTarget::kGradientPreAllreduce ||
         t == FaultTarget::kGradientPostAllreduce;
}

}  // namespace

Status check_plan_scope(const FaultPlan& plan, const PlanScope& scope, std::vector<std::string>* never) {
  auto bad = [](int line, const auto&... what) {
    return make_error(StatusCode::kInvalidArgument, "fault plan line ", line, ": ", what...);
  };
  auto check_rank = [&](int line, int rank) -> Status {
    if (rank < scope.world_size) return Status::ok();
    return bad(line, "rank ", rank, ", but the job has ", scope.world_size, " rank(s), 0 to ",
               scope.world_size - 1);
  };
  auto check_target = [&](int line, FaultTarget target) -> Status {
    if ((scope.targets >> static_cast<int>(target)) & 1u) return Status::ok();
    return bad(line, "target ", fault_target_name(target), " is never hit in this job",
               scope.untargeted_hint.empty() ? "" : ": ", scope.untargeted_hint);
  };
  for (const FaultSpec& f : plan.faults) {
    PERIGEE_CHECK(check_target(f.line, f.target));
    PERIGEE_CHECK(check_rank(f.line, f.rank));
    if (parameter_sized(f.target) && f.element >= 0 && static_cast<size_t>(f.element) >= scope.parameters) {
      return bad(f.line, "element ", f.element, " is past the ", scope.parameters, " elements of the ",
                 fault_target_name(f.target), " buffer (the model's parameters)");
    }
    const int64_t first = hits_state_after_update(f.target) ? 1 : 0;
    const int64_t last = hits_state_after_update(f.target) ? scope.steps : scope.steps - 1;
    if (never && (f.step < first || f.step > last)) {
      never->push_back(str_cat("fault plan line ", f.line, ": the ", fault_target_name(f.target),
                               " fault at step ", f.step, " never fires (this target is hit at steps ", first,
                               " to ", last, " of [train] steps = ", scope.steps, ")"));
    }
  }
  for (const FaultRate& r : plan.rates) {
    PERIGEE_CHECK(check_target(r.line, r.target));
    PERIGEE_CHECK(check_rank(r.line, r.rank));
  }
  for (const RankDeath& d : plan.deaths) {
    PERIGEE_CHECK(check_rank(d.line, d.rank));
    if (never && d.step > scope.steps) {
      never->push_back(str_cat("fault plan line ", d.line, ": the death of rank ", d.rank, " after step ",
                               d.step, " never happens ([train] steps = ", scope.steps, ")"));
    }
  }
  return Status::ok();
}

// ---------------------------------------------------------------- FaultInjector

FaultInjector::FaultInjector(FaultPlan plan, int rank) : plan_(std::move(plan)), rank_(rank) {
  std::fill(std::begin(calls_step_), std::end(calls_step_), INT64_MIN);
  std::fill(std::begin(calls_), std::end(calls_), 0);
}

FaultRng FaultInjector::stream(FaultTarget target, int64_t step, int occurrence, uint64_t source) const {
  return FaultRng(mix({plan_.seed, static_cast<uint64_t>(rank_), static_cast<uint64_t>(target),
                       static_cast<uint64_t>(step), static_cast<uint64_t>(occurrence), source}));
}

uint32_t FaultInjector::draw_mask(FaultRng& rng, int bit, int bits, uint32_t mask) const {
  if (mask != 0) return mask;
  bits = std::clamp(bits, 1, 32);
  uint32_t m = bit >= 0 && bit < 32 ? 1u << bit : 0u;
  while (std::popcount(m) < bits) m |= 1u << rng.below(32);
  return m;
}

FaultRecord FaultInjector::flip(FaultTarget target, int64_t step, float* buf, size_t index, uint32_t mask) {
  FaultRecord r;
  r.target = target;
  r.step = step;
  r.occurrence = current_occurrence_;
  r.rank = rank_;
  r.index = index;
  r.mask = mask;
  r.old_value = buf[index];
  buf[index] = std::bit_cast<float>(std::bit_cast<uint32_t>(buf[index]) ^ mask);
  r.new_value = buf[index];
  if (record_limit_ > 0) {
    if (records_.size() >= record_limit_) records_.pop_front();
    records_.push_back(r);
  }
  ++records_total_;
  return r;
}

void FaultInjector::set_record_limit(size_t limit) {
  record_limit_ = limit;
  while (records_.size() > record_limit_) records_.pop_front();
}

size_t FaultInjector::flip_run(FaultTarget target, int64_t step, int occurrence, float* buf, size_t n,
                               size_t first, int burst, uint32_t mask) {
  current_occurrence_ = occurrence;
  const size_t end = std::min(n, first + static_cast<size_t>(std::max(burst, 1)));
  for (size_t i = first; i < end; ++i) flip(target, step, buf, i, mask);
  current_occurrence_ = 0;
  return end > first ? end - first : 0;
}

size_t FaultInjector::apply_spec(const FaultSpec& spec, int64_t step, int occurrence, uint64_t source,
                                 float* buf, size_t n) {
  if (buf == nullptr || n == 0) return 0;
  FaultRng rng = stream(spec.target, step, occurrence, source);
  const size_t burst = std::min(n, static_cast<size_t>(std::max(spec.burst, 1)));
  size_t first = 0;
  if (spec.element >= 0) {
    if (static_cast<size_t>(spec.element) >= n) return 0;  // outside this buffer: nothing to hit
    first = static_cast<size_t>(spec.element);
  } else {
    first = rng.below(n - burst + 1);
  }
  const uint32_t mask = draw_mask(rng, spec.bit, spec.bits, spec.mask);
  return flip_run(spec.target, step, occurrence, buf, n, first, static_cast<int>(burst), mask);
}

size_t FaultInjector::apply(const FaultSpec& spec, int64_t step, float* buf, size_t n) {
  return apply_spec(spec, step, spec.occurrence, kSourceDirect, buf, n);
}

size_t FaultInjector::inject(FaultTarget target, int64_t step, float* buf, size_t n,
                             double exposure_seconds) {
  const auto t = static_cast<size_t>(target);
  if (calls_step_[t] != step) {
    calls_step_[t] = step;
    calls_[t] = 0;
  }
  const int occurrence = calls_[t]++;
  if (buf == nullptr || n == 0) return 0;
  size_t upsets = 0;
  for (size_t s = 0; s < plan_.faults.size(); ++s) {
    const FaultSpec& spec = plan_.faults[s];
    if (spec.target != target || spec.step != step || spec.occurrence != occurrence) continue;
    if (spec.rank >= 0 && spec.rank != rank_) continue;
    if (apply_spec(spec, step, occurrence, s, buf, n) > 0) ++upsets;
  }
  const double exposure = exposure_seconds >= 0.0 ? exposure_seconds : plan_.step_seconds;
  for (size_t r = 0; r < plan_.rates.size(); ++r) {
    const FaultRate& rate = plan_.rates[r];
    if (rate.target != target || (rate.rank >= 0 && rate.rank != rank_)) continue;
    FaultRng rng = stream(target, step, occurrence, kSourceRate + r);
    uint64_t count = 0;
    if (rate.per_bit_per_day > 0.0) {
      count += rng.poisson(expected_upsets(rate.per_bit_per_day, 32.0 * static_cast<double>(n), exposure));
    }
    if (rate.probability_per_call > 0.0 && rng.uniform() < rate.probability_per_call) ++count;
    const size_t burst = std::min(n, static_cast<size_t>(std::max(rate.burst, 1)));
    for (uint64_t k = 0; k < count; ++k) {
      const size_t first = rng.below(n - burst + 1);
      const uint32_t mask = draw_mask(rng, -1, rate.bits, 0);
      flip_run(target, step, occurrence, buf, n, first, static_cast<int>(burst), mask);
    }
    upsets += count;
  }
  return upsets;
}

std::optional<int64_t> FaultInjector::death_step(int rank, int launch) const {
  std::optional<int64_t> step;
  for (const auto& d : plan_.deaths) {
    if (d.rank == rank && d.launch == launch && (!step || d.step < *step)) step = d.step;
  }
  return step;
}

bool FaultInjector::rank_dead(int rank, int64_t step, int launch) const {
  const auto d = death_step(rank, launch);
  return d && step >= *d;
}

bool FaultInjector::targets(FaultTarget target) const {
  for (const FaultSpec& f : plan_.faults) {
    if (f.target == target) return true;
  }
  for (const FaultRate& r : plan_.rates) {
    if (r.target == target && (r.per_bit_per_day > 0.0 || r.probability_per_call > 0.0)) return true;
  }
  return false;
}

}  // namespace perigee::fault
