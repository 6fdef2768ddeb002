// FaultInjector: seeded, recorded single-event upsets for fault campaigns and tests.
// A FaultPlan lists scheduled faults (flip a chosen or random bit, or several bits, of a chosen or
// random element, or of a warp-like burst of consecutive elements, at a given step), rates (upsets
// per bit per day, converted with the exposure time, or a probability per call), and rank deaths
// (data for the runtime, which kills the rank). The runtime calls inject(target, step, buffer) at the
// moment each target is live; every flip is recorded (target, step, index, mask, old, new).
// Randomness is xoshiro256** seeded through SplitMix64 from (seed, rank, target, step, occurrence,
// source), so a fault depends only on the plan and on where it lands, not on what else was injected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace perigee::fault {

// SplitMix64 (Steele, Lea, Flood 2014): seeds the generator and mixes stream keys.
inline uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256** (Blackman & Vigna 2018) with integer and real draws of its own (no std::
// distributions, so streams are the same on every platform).
class FaultRng {
 public:
  explicit FaultRng(uint64_t seed);
  uint64_t next();
  // Uniform integer in [0, bound) (bound > 0), unbiased (Lemire's multiply-and-reject).
  uint64_t below(uint64_t bound);
  // Uniform in [0, 1) with 53 random bits.
  double uniform();
  // Poisson(mean) by inversion, in chunks of mean <= 16 for large means.
  uint64_t poisson(double mean);

 private:
  uint64_t s_[4];
};

enum class FaultTarget : uint8_t {
  kGemmOutput,
  kActivation,
  kParameter,
  kGradientPreAllreduce,
  kGradientPostAllreduce,
  kAdamM,
  kAdamV,
  kMessage,
};
inline constexpr int kFaultTargetCount = 8;

// "gemm_output", "activation", "parameter", "gradient_pre_allreduce", "gradient_post_allreduce",
// "adam_m", "adam_v", "message".
const char* fault_target_name(FaultTarget target);
bool parse_fault_target(std::string_view name, FaultTarget* target);

// Older COTS memory in LEO (Alsat-1, 686 km SSO): upsets per bit per day.
inline constexpr double kLeoSeuPerBitDay = 4.04e-7;

// One scheduled upset.
struct FaultSpec {
  FaultTarget target = FaultTarget::kGemmOutput;
  int64_t step = 0;      // fires in inject() calls for this step
  int occurrence = 0;    // on the occurrence-th inject() call for (target, step), 0 = first
  int rank = -1;         // -1: every rank
  int64_t element = -1;  // first element hit; -1: uniform over the buffer
  int bit = -1;          // 0..31 (31 sign, 30..23 exponent, 22..0 mantissa); -1: random
  int bits = 1;          // distinct bits flipped per element (bit, when given, is one of them)
  uint32_t mask = 0;     // explicit bit mask; overrides bit and bits when non-zero
  int burst = 1;         // consecutive elements hit with the same mask (a warp-like run: 32)
  int line = 0;          // the plan line it came from (0: made in code)
};

// Random upsets at a rate, drawn at every inject() call for the target.
struct FaultRate {
  FaultTarget target = FaultTarget::kParameter;
  double per_bit_per_day = 0.0;       // Poisson rate per bit and day (e.g. kLeoSeuPerBitDay)
  double probability_per_call = 0.0;  // or: one upset with this probability per call
  int rank = -1;
  int bits = 1;
  int burst = 1;
  int line = 0;
};

struct RankDeath {
  int rank = 0;
  int64_t step = 0;
  int launch = 1;  // the launch (1 = the first; perigee-run numbers its relaunches 2, 3, ...) it happens in
  int line = 0;
};

struct FaultPlan {
  uint64_t seed = 0;
  double step_seconds = 1.0;  // exposure of one inject() call to the per-bit-day rates
  std::vector<FaultSpec> faults;
  std::vector<FaultRate> rates;
  std::vector<RankDeath> deaths;
  double checkpoint_delay_s = 0.0;  // each checkpoint commit on rank 0 takes this much longer (slow storage)
  double load_delay_s = 0.0;  // each checkpoint load on rank 0 (resume, rollback) takes this much longer
};

// One flipped element.
struct FaultRecord {
  FaultTarget target = FaultTarget::kGemmOutput;
  int64_t step = 0;
  int occurrence = 0;
  int rank = 0;
  size_t index = 0;
  uint32_t mask = 0;
  float old_value = 0.0f;
  float new_value = 0.0f;
};

// Expected upsets in `bits` bits exposed for `seconds` at `per_bit_per_day`.
double expected_upsets(double per_bit_per_day, double bits, double seconds);

// The most expected upsets per element per call a plan's rate may give (at its step_seconds): about
// 6.7 million times the LEO reference at one step a second, and far from a flood.
inline constexpr double kMaxUpsetsPerElementCall = 1e-3;

// Plan text, one entry per line ('#' starts a comment), key=value fields in any order:
//   seed 42
//   step_seconds 1.0
//   fault target=gemm_output step=3 [occurrence=0] [rank=-1] [element=17] [bit=30] [bits=1] [mask=0x..]
//   [burst=32] rate target=parameter per_bit_per_day=4.04e-7 [probability=0] [rank=-1] [bits=1] [burst=1]
//   death rank=2 step=100 [launch=1]
//   checkpoint_delay 2.5
//   load_delay 4
Status parse_fault_plan(std::string_view text, FaultPlan* plan);

// What a job offers a plan to hit.
struct PlanScope {
  int world_size = 1;
  size_t parameters = 0;  // the length of the parameter, gradient and moment buffers
  int64_t steps = 0;      // [train] steps
  // The targets the job calls inject() for (bit t: FaultTarget t); an entry for another is an error,
  // with `untargeted_hint` saying why (and how to hit it, where there is a way).
  uint32_t targets = (1u << kFaultTargetCount) - 1;
  std::string untargeted_hint;
};

// An error naming the plan line of the first entry aimed at something the job does not have: a target
// it never injects into, a rank past the world, an element past the parameters in a parameter-sized
// buffer. `never` gets a line for
// each entry whose step the job never reaches (a plan kept for longer runs is not wrong, but it should
// not go quiet): in-step targets fire at steps 0 .. steps-1, the state after an update (parameter,
// adam_m, adam_v) at 1 .. steps, a death after a step <= steps.
Status check_plan_scope(const FaultPlan& plan, const PlanScope& scope, std::vector<std::string>* never);

class FaultInjector {
 public:
  explicit FaultInjector(FaultPlan plan = {}, int rank = 0);

  const FaultPlan& plan() const { return plan_; }
  int rank() const { return rank_; }

  // Applies what the plan holds for (target, step) on this rank to buf[0, n): the scheduled faults of
  // this call's occurrence and a draw from every matching rate (exposure_seconds < 0: the plan's
  // step_seconds). Returns the number of upsets (a burst counts once); each element is recorded.
  size_t inject(FaultTarget target, int64_t step, float* buf, size_t n, double exposure_seconds = -1.0);

  // Applies one spec now (its step/occurrence/rank are not consulted); returns elements flipped.
  size_t apply(const FaultSpec& spec, int64_t step, float* buf, size_t n);

  // Flips `mask` in buf[index] and records it.
  FaultRecord flip(FaultTarget target, int64_t step, float* buf, size_t index, uint32_t mask);

  // The newest flips, at most record_limit() of them (older ones are dropped, so a long rate-driven
  // campaign keeps bounded memory); records_total() counts every flip since the last clear.
  static constexpr size_t kDefaultRecordLimit = size_t{1} << 16;
  const std::deque<FaultRecord>& records() const { return records_; }
  uint64_t records_total() const { return records_total_; }
  size_t record_limit() const { return record_limit_; }
  void set_record_limit(size_t limit);
  void clear_records() {
    records_.clear();
    records_total_ = 0;
  }

  // Rank deaths of the plan in launch `launch`: the step at which `rank` dies, and whether it is dead
  // at `step`.
  std::optional<int64_t> death_step(int rank, int launch = 1) const;
  bool rank_dead(int rank, int64_t step, int launch = 1) const;

  // True when a scheduled fault or a rate of the plan can hit `target` on any rank (the same answer
  // on every rank, so ranks can agree on how to run a collective).
  bool targets(FaultTarget target) const;

 private:
  FaultRng stream(FaultTarget target, int64_t step, int occurrence, uint64_t source) const;
  uint32_t draw_mask(FaultRng& rng, int bit, int bits, uint32_t mask) const;
  size_t apply_spec(const FaultSpec& spec, int64_t step, int occurrence, uint64_t source, float* buf,
                    size_t n);
  size_t flip_run(FaultTarget target, int64_t step, int occurrence, float* buf, size_t n, size_t first,
                  int burst, uint32_t mask);

  FaultPlan plan_;
  int rank_;
  int64_t calls_step_[kFaultTargetCount];
  int calls_[kFaultTargetCount];
  int current_occurrence_ = 0;
  std::deque<FaultRecord> records_;
  uint64_t records_total_ = 0;
  size_t record_limit_ = kDefaultRecordLimit;
};

}  // namespace perigee::fault
