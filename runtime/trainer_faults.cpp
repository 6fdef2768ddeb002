// Trainer's fault handling (trainer.hpp): the [fault] setup (injection plan, ABFT decorator), planned
// upsets in the persistent state after each update, the cross-replica digest with repair, and the
// rollback to the newest good checkpoint.
#include <algorithm>
#include <csignal>
#include <cstdio>

#include "core/read_file.hpp"
#include "fault/cuda/abft_checksums_factory.hpp"
#include "runtime/log.hpp"
#include "runtime/trainer.hpp"

namespace perigee::runtime {

Status Trainer::setup_faults() {
  const FaultConfig& fc = config_.fault;
  invariants_ = StepInvariants(fc.loss_spike, fc.grad_spike, fc.window);
  if (!fc.plan.empty()) {
    PERIGEE_REQUIRE(backend_->kind() == kernels::DeviceKind::kCpu, StatusCode::kUnavailable,
                    "[fault] plan: fault injection reaches host memory only; use device = \"cpu\"");
    std::string text;
    PERIGEE_CHECK(read_small_file(fc.plan, "[fault] plan", &text));
    fault::FaultPlan plan;
    Status s = fault::parse_fault_plan(text, &plan);
    PERIGEE_REQUIRE(s.is_ok(), s.code(), "[fault] plan ", fc.plan, ": ", s.message());
    injector_ = std::make_unique<fault::FaultInjector>(std::move(plan), comm_->rank());
  }
  if (fc.abft) {
    std::unique_ptr<fault::ChecksumKernels> device_checksums;  // null: host checksums (CPU backend)
    if (backend_->kind() == kernels::DeviceKind::kCuda) {
      PERIGEE_CHECK(fault::cuda::make_cuda_checksum_kernels(backend_, &device_checksums));
    }
    fault::AbftOptions options;
    options.operand_roundoff = abft_operand_roundoff(backend_->kind(), config_.device.precision);
    abft_ = std::make_unique<fault::AbftBackend>(backend_, options, std::move(device_checksums));
    abft_->set_event_callback([this](const fault::AbftEvent& e) {
      const std::string when =
          validating_ ? str_cat("validation after step ", next_step_) : str_cat("step ", next_step_ + 1);
      log::warn("ABFT ", when, ": ", fault::gemm_kind_name(e.kind), " GEMM ", e.N, "x", e.C, "x", e.OC, ": ",
                fault::abft_outcome_name(e.outcome), e.detail.empty() ? "" : " (" + e.detail + ")");
    });
    if (injector_) {
      abft_->set_output_fault_hook(
          [this](float* out, size_t n, fault::GemmKind) { inject(fault::FaultTarget::kGemmOutput, out, n); });
    }
    backend_ = abft_.get();
  }
  return Status::ok();
}

Status Trainer::check_fault_plan_scope() {
  if (!injector_) return Status::ok();
  fault::PlanScope scope;
  scope.world_size = comm_->size();
  scope.parameters = model_.num_parameters();
  scope.steps = config_.train.steps;
  // The targets the training step injects into (inject() calls): GEMM outputs only through ABFT's hook.
  using fault::FaultTarget;
  scope.targets = 0;
  for (FaultTarget t : {FaultTarget::kParameter, FaultTarget::kAdamM, FaultTarget::kAdamV,
                        FaultTarget::kGradientPreAllreduce, FaultTarget::kGradientPostAllreduce})
    scope.targets |= 1u << static_cast<int>(t);
  if (abft_) scope.targets |= 1u << static_cast<int>(FaultTarget::kGemmOutput);
  scope.untargeted_hint =
      "the training step injects into parameter, adam_m, adam_v, gradient_pre_allreduce, "
      "gradient_post_allreduce and, with [fault] abft = true, gemm_output (activation and message are "
      "for the injector's own users)";
  std::vector<std::string> never;
  const Status s = fault::check_plan_scope(injector_->plan(), scope, &never);
  PERIGEE_REQUIRE(s.is_ok(), s.code(), "[fault] plan ", config_.fault.plan, ": ", s.message());
  if (comm_->rank() == 0) {
    for (const auto& line : never) log::warn("[fault] plan ", config_.fault.plan, ": ", line);
  }
  return Status::ok();
}

double abft_operand_roundoff(kernels::DeviceKind kind, const std::string& precision) {
  if (kind != kernels::DeviceKind::kCuda) return 0.0;  // the CPU multiplies the fp32 operands
  if (precision == "bf16") return fault::kBf16OperandRoundoff;
  if (precision == "tf32") return fault::kTf32OperandRoundoff;
  return 0.0;
}

size_t Trainer::inject(fault::FaultTarget target, float* buffer, size_t n) {
  // A replayed step after a rollback does not meet the same upset again; one that never ran before the
  // rollback does (rollback() sets the bounds).
  using fault::FaultTarget;
  const bool after_update =
      target == FaultTarget::kParameter || target == FaultTarget::kAdamM || target == FaultTarget::kAdamV;
  if (!injector_ || next_step_ < (after_update ? replay_after_update_below_ : replay_in_step_below_))
    return 0;
  // A plan's faults are the training steps': validation's GEMMs neither meet them nor shift their
  // occurrence counts (rate faults included: its forwards change no state).
  if (validating_) return 0;
  const size_t hits = injector_->inject(target, next_step_, buffer, n);
  counters_.injected += hits;
  return hits;
}

Status Trainer::after_update() {
  const int64_t done = next_step_;  // steps completed
  const size_t n = model_.num_parameters();
  // Memory upsets land in the state that persists between steps.
  inject(fault::FaultTarget::kParameter, model_.params(), n);
  inject(fault::FaultTarget::kAdamM, model_.adam_m(), n);
  inject(fault::FaultTarget::kAdamV, model_.adam_v(), n);
  // A planned rank death, in the launch the plan names (so that a relaunch past it does not die again).
  if (injector_ && death_launch_ > 0 && !planned_death_done_ &&
      injector_->rank_dead(comm_->rank(), done, death_launch_)) {
    planned_death_done_ = true;
    log::warn("fault plan: rank ", comm_->rank(), options_.planned_death ? " dies" : " dies (SIGKILL)",
              " after step ", done, " in launch ", death_launch_);
    std::fflush(nullptr);
    if (options_.planned_death) {
      options_.planned_death(done);
    } else {
      ::raise(SIGKILL);
    }
  }
  const int64_t k = config_.fault.digest_every;
  if (k > 0 && done % k == 0) {
    ReplicaCheck rc;
    std::string no_majority;
    PERIGEE_CHECK(check_replicas(done, &rc, &no_majority));
    digested_at_ = done;
    if (rc.needs_rollback) PERIGEE_CHECK(rollback(no_majority, /*after_update_ran=*/true));
  }
  return Status::ok();
}

Status Trainer::check_replicas_before_checkpoint(bool* rolled_back) {
  *rolled_back = false;
  if (config_.fault.digest_every <= 0 || comm_->size() == 1 || digested_at_ == next_step_)
    return Status::ok();
  ReplicaCheck rc;
  std::string no_majority;
  PERIGEE_CHECK(check_replicas(next_step_, &rc, &no_majority));
  digested_at_ = next_step_;
  if (!rc.needs_rollback) return Status::ok();
  *rolled_back = true;
  return rollback(str_cat(no_majority, ", before its checkpoint"), /*after_update_ran=*/true);
}

Status Trainer::check_replicas(int64_t done, ReplicaCheck* rc, std::string* no_majority) {
  ++counters_.replica_checks;
  PERIGEE_CHECK(check_and_repair_replicas(*comm_, model_, rc));
  if (rc->consistent) return Status::ok();
  std::string ranks;
  for (int r : rc->minority) ranks += str_cat(ranks.empty() ? "" : ",", r);
  if (rc->needs_rollback) {
    *no_majority = str_cat("replicas disagree after step ", done, " with no majority (ranks ", ranks, ")");
    return Status::ok();
  }
  ++counters_.replica_repairs;
  log::warn("replica digest after step ", done, ": rank(s) ", ranks, " differed; repaired from rank ",
            rc->source);
  return metrics_.write({metric_text("type", "fault"), metric("step", static_cast<double>(done)),
                         metric_text("rung", "replica_digest"), metric_text("ranks", ranks),
                         metric_text("action", "repaired")});
}

Status Trainer::rollback(const std::string& why, bool after_update_ran) {
  constexpr uint64_t kMaxRollbacks = 8;  // a fault that keeps coming back must end the run, not loop
  // The two give-ups are kFaultPersists: perigee-train exits with its own status, which perigee-run
  // relaunches once (a fresh process may clear what a rollback cannot) but not twice from one checkpoint.
  PERIGEE_REQUIRE(counters_.rollbacks < kMaxRollbacks, StatusCode::kFaultPersists, why, ", after ",
                  kMaxRollbacks, " rollbacks already: giving up (the fault keeps coming back)");
  log::warn(why, ": rolling back to the newest good checkpoint in ", checkpoint_dir_);
  // checkpoint_enabled_ comes from the config, so every rank takes the same branch. With nothing to roll
  // back to the ladder has given up as well (kFaultPersists: perigee-run relaunches once, not again and
  // again into the same divergence).
  PERIGEE_REQUIRE(
      checkpoint_enabled_, StatusCode::kFaultPersists, why,
      ", and checkpointing is off ([checkpoint] every_steps / every_seconds, or [orbit] eclipse): nothing to "
      "roll back to");
  // A write in flight ends first (all ranks wait for it, and all fail if it failed).
  PERIGEE_CHECK(
      checkpoint_fence("the checkpoint write before the rollback", writer_ ? writer_->wait() : Status::ok()));
  const int64_t before = next_step_;
  // The fault came back right after the previous rollback: that checkpoint already held it, so
  // go further back.
  const bool again = last_rollback_to_ >= 0 && before <= last_rollback_from_ + 3;
  const int64_t max_step = again ? last_rollback_to_ - 1 : INT64_MAX;
  checkpoint::Snapshot snapshot;
  int64_t restored = -1;
  PERIGEE_CHECK(resume_from(&snapshot, &restored, max_step));
  // Going further back found nothing older: every checkpoint left holds the fault.
  PERIGEE_REQUIRE(!again || restored >= 0, StatusCode::kFaultPersists, why,
                  " again right after the rollback to step ", last_rollback_to_, ", and ", checkpoint_dir_,
                  " holds no older checkpoint: giving up (every checkpoint left holds the fault)");
  PERIGEE_REQUIRE(restored >= 0, StatusCode::kFaultPersists, why, ", and ", checkpoint_dir_,
                  " holds no checkpoint to roll back to");
  ++counters_.rollbacks;
  consecutive_skips_ = 0;  // the restored state was saved after an applied update, whatever the trigger
  // The faults that ran before the rollback: those inside steps 0 .. before - 1, and those after the
  // updates that ended, which includes the one after step `before` when it ran (a digest's rollback).
  replay_in_step_below_ = std::max(replay_in_step_below_, before);
  replay_after_update_below_ = std::max(replay_after_update_below_, before + (after_update_ran ? 1 : 0));
  last_rollback_from_ = before;
  digested_at_ = -1;
  last_rollback_to_ = next_step_;
  return metrics_.write({metric_text("type", "fault"), metric("step", static_cast<double>(before)),
                         metric_text("rung", "rollback"), metric_text("reason", why),
                         metric("to_step", static_cast<double>(next_step_))});
}

}  // namespace perigee::runtime
