// Trainer: config -> model -> data-parallel step loop -> validation, metrics, sample.
// One Trainer per rank. Parameters are initialised on rank 0 and broadcast; each step every rank
// runs forward/backward on its slice of the global batch (in passes of [train] micro_batch sequences,
// the gradients accumulated), gradients are averaged through the Communicator, and every replica
// applies the same AdamW update.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/async_writer.hpp"
#include "checkpoint/eclipse.hpp"
#include "checkpoint/store.hpp"
#include "collectives/communicator.hpp"
#include "collectives/gradient_buckets.hpp"
#include "core/folder_lock.hpp"
#include "core/status.hpp"
#include "fault/abft_backend.hpp"
#include "fault/injector.hpp"
#include "kernels/backend.hpp"
#include "runtime/config.hpp"
#include "runtime/data_loader.hpp"
#include "runtime/fault_ladder.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/metrics.hpp"

namespace perigee::runtime {

struct TrainerOptions {
  bool write_run_dir = true;  // run directory with config.json, metrics.jsonl, rank logs
  bool log_steps = true;      // per-step console lines (rank 0)
  bool progress_bar = false;  // draw a bar in the step lines (rank 0 on a terminal)
  // The setup's memory check ([device] memory_check; runtime/memory_budget.hpp): the ranks on this
  // host, those among them that allocate from this rank's backend memory (all of them on the CPU,
  // those sharing its GPU with CUDA; perigee-train: DeviceSelection::memory_ranks), and whether rank
  // 0, which alone stages checkpoints in host RAM, runs on this host.
  int host_ranks = 1;
  int memory_ranks = 1;
  bool rank0_on_host = true;
  // Which launch of the job this is (1 = the first; perigee-run exports PERIGEE_LAUNCH), for the fault
  // plan's `death ... launch=L`. 0 = not known: a fresh run counts as launch 1, and a resumed one, a
  // relaunch of unknown number, meets no planned death.
  int launch = 0;
  // How a planned death is carried out: empty = SIGKILL to this process, as a power cut would. Tests
  // that run the Trainer in-process record the step instead (called once); training then goes on.
  std::function<void(int64_t step)> planned_death = {};
};

// AbftOptions::operand_roundoff of the GEMMs a [device] runs (fault/abft_gemm.hpp): 0 on the CPU and
// with CUDA precision "fp32"; the TF32 or bf16 operand rounding with "tf32" or "bf16" on CUDA, as the
// checksums see the unrounded fp32 operands (without it every clean bf16 GEMM would alarm).
double abft_operand_roundoff(kernels::DeviceKind kind, const std::string& precision);

// What the detection ladder saw and did (docs/faults.md).
struct FaultCounters {
  uint64_t injected = 0;      // upsets the injector applied on this rank
  uint64_t triggers = 0;      // steps whose invariants fired
  uint64_t transient = 0;     // re-run differed: transient fault, re-run kept
  uint64_t reproducible = 0;  // re-run identical: batch skipped
  uint64_t skipped = 0;       // updates not applied
  uint64_t replica_checks = 0;
  uint64_t replica_repairs = 0;  // minority replicas repaired from the majority
  uint64_t rollbacks = 0;        // returns to the newest good checkpoint
  uint64_t instabilities = 0;    // reproducible finite triggers on a sound state: applied (level moved)
};

struct StepResult {
  int64_t step = 0;   // 0-based step that just ran
  double loss = 0.0;  // mean over the global batch
  double lr = 0.0;
  double grad_norm = 0.0;
  double ms = 0.0;       // wall time of the step on this rank
  double comm_ms = 0.0;  // time the gradient allreduce added after the backward pass
  double link_ms = 0.0;  // emulated time the gradient allreduce took on the modelled links (0: real network)
  double tokens_per_s = 0.0;   // global tokens / step time
  int buckets = 0;             // all-reduces the gradient went out in (none on one rank)
  int buckets_overlapped = 0;  // of them, started during the backward pass ([comm] bucket_mb > 0)
  bool applied = true;         // false: the ladder skipped this update
};

class Trainer {
 public:
  // comm carries host buffers (scalars, the initial broadcast, run-directory name); it also
  // averages the gradients unless set_gradient_communicator() names one for backend buffers
  // (NCCL on device memory, or MPI behind host staging).
  Trainer(Config config, collectives::Communicator* comm, kernels::Backend* backend,
          TrainerOptions options = {});
  void set_gradient_communicator(collectives::Communicator* grad_comm) { grad_comm_ = grad_comm; }

  // Checks world size against the batch, opens data, builds and initialises the model
  // (rank 0's parameters broadcast to all), creates the run directory.
  Status setup();
  Status step(StepResult* result);
  // Mean validation loss over train.val_batches global batches (same value on every rank).
  Status evaluate(double* val_loss);
  // Rank 0 only: sample `tokens` bytes after the prompt (temperature from the config).
  Status sample(int tokens, std::string* text);
  // The whole run: steps, periodic validation and checkpoints, final validation, checkpoint and sample.
  Status run();
  // Rank 0 stages a checkpoint of the current state (async: written in the background); other
  // ranks do nothing. Needs checkpointing on: [checkpoint] every_steps or every_seconds, or [orbit] eclipse.
  Status save_checkpoint();
  // Waits for a checkpoint write in flight (rank 0) and returns its error, if any.
  Status finish_checkpoints();
  bool checkpointing() const { return !checkpoint_dir_.empty() && checkpoint_enabled_; }
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }
  // The checkpoint step this launch resumed from at setup (-1: a fresh start); a rollback since does
  // not change it.
  int64_t resumed_from_step() const { return resumed_from_step_; }
  // save_checkpoint() calls so far (every rank counts them; rank 0 writes).
  uint64_t checkpoints_saved() const { return checkpoints_saved_; }
  // Sequences per forward/backward pass on this rank, and passes per step (gradient accumulation).
  int micro_batch() const { return micro_batch_; }
  int passes_per_step() const { return train_.local_batch() / micro_batch_; }

  GptModel& model() { return model_; }
  const Config& config() const { return config_; }
  int64_t next_step() const { return next_step_; }
  const std::string& run_dir() const { return run_dir_; }
  const DataLoader& train_loader() const { return train_; }
  const FaultCounters& fault_counters() const { return counters_; }
  // AdamW updates applied so far, over resumes (the bias correction's count).
  int64_t adam_updates() const { return adam_updates_; }
  // ABFT statistics (null when [fault] abft is off).
  const fault::AbftBackend* abft() const { return abft_.get(); }
  const fault::FaultInjector* injector() const { return injector_.get(); }
  // The gradient all-reduce of the last step (buckets started, time it added); null before setup().
  const collectives::GradientBuckets* gradient_buckets() const { return buckets_.get(); }

 private:
  Status make_run_dir();
  // Rank 0 writes config.json into the run folder (atomically: name.tmp, fsync, rename), at the end of
  // setup.
  Status write_run_config();
  // Rank 0 runs `work`; every rank returns an error when it failed ("rank 0 could not <what>").
  Status on_rank0_then_agree(const std::function<Status()>& work, const std::string& what);
  Status setup_faults();
  // Rank 0, before writing config.json: a run folder whose config.json is another model's is refused
  // (a reused [run] name would mix two jobs' configs, metrics and logs).
  Status refuse_another_models_run_dir() const;
  // After the model is built: the fault plan's entries against the world, the parameters and the steps.
  Status check_fault_plan_scope();
  // Gradient buckets over grad_comm_ ([comm] bucket_mb, grad_dtype), hooked into the model's
  // backward pass.
  Status setup_gradient_buckets();
  // Before the model allocates: the demands on the backend's memory and, for a GPU, rank 0's host RAM
  // (collective: every rank measures before any allocates, and all fail together).
  Status check_memory(const GptShape& shape, kernels::DType activations, kernels::DType logits);
  // forward, backward, gradient allreduce (with the injector's gradient faults), loss average, norm.
  Status compute_gradients(double* loss, double* grad_norm, double* comm_ms);
  // Post-update rungs: memory upsets (injection), rank death, replica digests.
  Status after_update();
  // Rung 4 on the state after `done` steps: digests every replica, repairs a minority from the
  // majority (logged, counted); without a majority *no_majority says so and the caller rolls back.
  Status check_replicas(int64_t done, ReplicaCheck* rc, std::string* no_majority);
  // Rung 4 before a checkpoint (with [fault] digest_every on and more than one replica): the file holds
  // rank 0's state, so an upset since the last digest would be saved, and a later rollback or resume
  // would spread it to every replica. A minority is repaired first; without a majority the run rolls
  // back instead (*rolled_back) and nothing is written.
  Status check_replicas_before_checkpoint(bool* rolled_back);
  // How long rank 0 waits for another process's folder lock to go (an exiting job's): half the comm
  // deadline at most, so that the other ranks, waiting in a broadcast meanwhile, hear rank 0's refusal
  // instead of timing out (which perigee-run would take for a setup timeout and relaunch).
  // Rank 0, before each checkpoint: the run and checkpoint folders' locks are still this job's (a folder
  // removed meanwhile is made anew and locked again; one another job took is an error).
  Status verify_folder_locks();
  double folder_lock_wait_s() const {
    return config_.comm.timeout_s > 0.0 ? std::min(FolderLock::kDefaultWaitS, 0.5 * config_.comm.timeout_s)
                                        : FolderLock::kDefaultWaitS;
  }
  // Rung 5: restores the newest good checkpoint. after_update_ran: the state after step next_step_ has
  // had its after-update upsets (a digest's rollback), which the replay must not meet again.
  Status rollback(const std::string& why, bool after_update_ran);
  // [orbit] eclipse policy before each step: checkpoint ahead of the shadow, idle inside it
  // (rank 0 decides from the mission clock; every rank follows).
  Status eclipse_gate();
  // Rank 0, eclipse policy: mission seconds since [orbit] phase_deg at a Unix time.
  double mission_time(double unix_s) const;
  // How long before a shadow entry its checkpoint starts: [orbit] margin_s, or 1.5 times the longest
  // eclipse checkpoint so far when that is more, within the sunlit arc.
  double eclipse_margin_s() const;
  // After an eclipse checkpoint that began at gate_unix for the shadow entering at entry_s (mission s):
  // records its duration when it `wrote`, warns when it was durable only inside the shadow or when the
  // margin grows.
  void note_eclipse_write(double gate_unix, double entry_s, bool wrote);
  // Whether a periodic checkpoint is due after this step, the same answer on every rank: every_steps
  // is known to all; the every_seconds clock is rank 0's, broadcast (only when every_seconds is set).
  Status periodic_checkpoint_due(bool* due);
  // A broadcast from rank 0 right after rank-0-only checkpoint work (a write, a wait for one, a load):
  // the other ranks wait under [checkpoint] timeout_s instead of [comm] timeout_s, since slow storage
  // is not a dead rank.
  Status broadcast_after_checkpoint_io(void* buffer, size_t count, collectives::DataType type);
  // Every rank calls it after rank 0's blocking checkpoint work, rank 0 passing that work's status:
  // every rank then returns an error when it failed (rank 0 its own, the others one naming `what`).
  Status checkpoint_fence(const char* what, const Status& rank0_work);
  size_t inject(fault::FaultTarget target, float* buffer, size_t n);
  // Opens the checkpoint folder and, with resume = "auto", continues from its newest good
  // checkpoint (rank 0 loads and verifies, every rank receives the state).
  Status setup_checkpoints();
  // Rank 0: with resume = "never", kInvalidArgument when the folder already holds checkpoints.
  Status refuse_fresh_run_over_checkpoints() const;
  // Rank 0, around a load: tells perigee-run's stall watchdog a load is coming (and applies the plan's
  // load_delay); true when it wrote the record, and then close_checkpoint_load says the load ended.
  bool announce_checkpoint_load();
  // outcome: "loaded", "none", "failed"; step: the checkpoint's when loaded, else the step the run is at.
  void close_checkpoint_load(double seconds, const char* outcome, int64_t step);
  // max_step: only checkpoints of at most that step (a rollback that must go further back).
  // *loaded_step: the step of the checkpoint loaded, or -1 when there was none to load.
  Status resume_from(checkpoint::Snapshot* snapshot, int64_t* loaded_step, int64_t max_step = INT64_MAX);
  void log_step(const StepResult& r) const;

  Config config_;
  collectives::Communicator* comm_;
  collectives::Communicator* grad_comm_;
  kernels::Backend* backend_;
  TrainerOptions options_;
  // Declared before model_: the model releases its buffers through the ABFT wrapper.
  std::unique_ptr<fault::AbftBackend> abft_;        // wraps the caller's backend when [fault] abft
  std::unique_ptr<fault::FaultInjector> injector_;  // when [fault] plan is set
  GptModel model_;
  std::unique_ptr<collectives::GradientBuckets> buckets_;
  // [comm] grad_dtype = "bf16" on several ranks: the gradients as bf16 for the all-reduce (backend
  // memory, released through backend_ before the model and the ABFT wrapper go).
  std::unique_ptr<uint16_t, std::function<void(uint16_t*)>> grad_wire_;
  DataLoader train_;
  DataLoader val_;
  int micro_batch_ = 1;  // sequences per forward/backward pass ([train] micro_batch, 0 = the local batch)
  bool has_val_ = false;
  uint64_t token_bytes_ = 0;  // host memory the train and val loaders take (DataLoader::memory_bytes)
  int64_t next_step_ = 0;
  int64_t adam_updates_ = 0;  // AdamW updates applied (steps the fault ladder skipped are not)
  std::string run_dir_;
  FolderLock run_dir_lock_;  // rank 0, for the run's life
  MetricsWriter metrics_;
  std::vector<int32_t> inputs_, targets_;
  std::chrono::steady_clock::time_point start_;
  int64_t start_step_ = 0;  // first step of this process (ETA)

  StepInvariants invariants_{0.0, 0.0, 1};
  FaultCounters counters_;
  // After a rollback, the upsets that already ran are not met again in the replay: in-step ones (gradients,
  // GEMM outputs) of steps below replay_in_step_below_, after-update ones (parameters, moments) tagged
  // below replay_after_update_below_.
  int64_t replay_in_step_below_ = 0, replay_after_update_below_ = 0;
  int consecutive_skips_ = 0;  // reproducible anomalies in a row: the state itself is suspect
  double link_ms_ = 0.0;       // emulated link time of this step's gradient all-reduces
  int64_t last_rollback_from_ = -1, last_rollback_to_ = -1;
  int64_t digested_at_ = -1;
  bool validating_ = false;  // evaluate() runs: no planned upsets; ABFT events say "validation"  // the step
                             // whose state the replica digests last compared (-1: none since)
  // The launch the fault plan's deaths are matched against (0: none), fixed at setup: a rollback loads a
  // checkpoint too, but the process is still the launch it started as.
  int death_launch_ = 0;
  bool planned_death_done_ = false;  // TrainerOptions::planned_death has been called

  std::optional<checkpoint::EclipseModel> eclipse_;
  double orbit_epoch_unix_ = 0.0;               // rank 0: Unix time at [orbit] phase_deg (orbit_clock.hpp)
  double last_gate_unix_ = 0.0;                 // rank 0: when eclipse_gate last ran (0: not yet)
  std::optional<int64_t> shadow_checkpointed_;  // rank 0: the shadow (ShadowInterval::orbit) saved for
  // rank 0: the longest eclipse checkpoint so far, gate to durable, in mission seconds; the gate
  // checkpoints at least 1.5 times that before a shadow entry when it exceeds [orbit] margin_s.
  double eclipse_write_mission_s_ = 0.0;
  bool orbit_drift_warned_ = false;  // rank 0: the one-day warning of the orbit model was logged

  std::string checkpoint_dir_;
  bool checkpoint_enabled_ = false;
  int64_t resumed_from_step_ = -1;    // -1: fresh start
  bool validated_at_resume_ = false;  // the loaded checkpoint's run recorded a validation at its step
  int64_t last_checkpoint_step_ = -1;
  uint64_t checkpoints_saved_ = 0;
  double last_lr_ = 0.0;
  std::chrono::steady_clock::time_point last_checkpoint_time_;
  std::unique_ptr<checkpoint::CheckpointStore> store_;         // rank 0
  std::unique_ptr<checkpoint::AsyncCheckpointWriter> writer_;  // rank 0, when checkpointing
};

}  // namespace perigee::runtime
