// Trainer's checkpointing (trainer.hpp): the checkpoint folder and the orbit clock at setup, resume
// and rollback loads, staging and waiting for writes, the periodic and eclipse decisions, and the
// fences in which the other ranks wait for rank 0's blocking checkpoint work under [checkpoint]
// timeout_s.
#include <chrono>
#include <filesystem>
#include <thread>

#include "runtime/log.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/orbit_clock.hpp"
#include "runtime/trainer.hpp"
#include "runtime/trainer_checkpoint.hpp"

namespace perigee::runtime {
namespace {

using collectives::DataType;
using Clock = std::chrono::steady_clock;

}  // namespace

Status Trainer::setup_checkpoints() {
  const CheckpointConfig& cc = config_.checkpoint;
  checkpoint_dir_ = !cc.dir.empty() ? cc.dir : (run_dir_.empty() ? "" : run_dir_ + "/checkpoints");
  const OrbitConfig& oc = config_.orbit;
  if (oc.eclipse != "off") {
    PERIGEE_REQUIRE(!checkpoint_dir_.empty(), StatusCode::kInvalidArgument, "[orbit] eclipse = \"",
                    oc.eclipse, "\" needs a checkpoint folder: set [checkpoint] dir");
    checkpoint::EclipseModel model;
    PERIGEE_CHECK(checkpoint::EclipseModel::from_beta(oc.altitude_km, oc.beta_deg, oc.phase_deg, &model));
    eclipse_ = model;
    // The eclipse policy checkpoints before each shadow; an orbit without one would never checkpoint,
    // and a relaunch after a power cut would start again from step 0.
    PERIGEE_REQUIRE(
        model.has_eclipse() || cc.every_steps > 0 || cc.every_seconds > 0.0, StatusCode::kInvalidArgument,
        "[orbit] eclipse = \"", oc.eclipse, "\" at beta_deg ", oc.beta_deg, ": this orbit (", oc.altitude_km,
        " km) is never in shadow (|beta| >= ", fixed(model.critical_beta_deg(), 1),
        " deg), so no checkpoint would ever be taken; set [checkpoint] every_steps or every_seconds");
    // The checkpoint for a shadow must fall in the sunlit arc after the previous one.
    PERIGEE_REQUIRE(!model.has_eclipse() || oc.margin_s < model.sunlit_s(), StatusCode::kInvalidArgument,
                    "[orbit] margin_s = ", oc.margin_s,
                    " s is not shorter than the sunlit part of the orbit (", fixed(model.sunlit_s(), 0),
                    " s at ", oc.altitude_km, " km, beta ", oc.beta_deg,
                    " deg): the checkpoint for a shadow would fall in the one before; lower it");
    log::info("orbit: ", oc.altitude_km, " km, beta ", oc.beta_deg, " deg: period ",
              fixed(model.period_s() / 60, 1), " min, shadow ", fixed(model.eclipse_duration_s() / 60, 1),
              " min per orbit; eclipse policy ", oc.eclipse, ", time scale ", oc.time_scale, "x");
  }
  checkpoint_enabled_ = !checkpoint_dir_.empty() && schedules_checkpoints(config_);
  last_checkpoint_time_ = Clock::now();
  if (checkpoint_dir_.empty()) return Status::ok();
  // Rank 0 decides (the folder may appear while other ranks look), every rank follows. A path it cannot
  // look at (a link loop, a name too long) opens the store below, which then fails naming it.
  std::error_code unreadable;
  int32_t try_resume =
      comm_->rank() == 0 && cc.resume == "auto" && std::filesystem::exists(checkpoint_dir_, unreadable);
  if (unreadable) try_resume = 1;
  PERIGEE_CHECK(comm_->broadcast(&try_resume, 1, DataType::kInt32, 0));
  // Rank 0 opens the store and runs the orbit clock (a relaunch continues it); the others hear at once
  // when that fails, instead of at their next collective's deadline.
  auto open_store = [&]() -> Status {
    PERIGEE_REQUIRE(!unreadable, StatusCode::kIoError, "checkpoint folder ", checkpoint_dir_, ": ",
                    unreadable.message());
    store_ = std::make_unique<checkpoint::CheckpointStore>();
    checkpoint::StoreOptions options = store_options(cc);
    options.lock_wait_s = folder_lock_wait_s();
    PERIGEE_CHECK(checkpoint::CheckpointStore::open(checkpoint_dir_, options, store_.get()));
    for (const std::string& path : store_->cleaned_at_open())
      log::info("checkpoint folder: removed '", path, "' (left by an interrupted write)");
    // The orbit clock's file is written beside the checkpoints, whatever [orbit] says now.
    std::string orbit_leftover;
    PERIGEE_CHECK(remove_orbit_clock_leftover(checkpoint_dir_, &orbit_leftover));
    if (!orbit_leftover.empty())
      log::info("checkpoint folder: removed '", orbit_leftover, "' (left by an interrupted write)");
    if (checkpoint_enabled_) {
      PERIGEE_CHECK(refuse_fresh_run_over_checkpoints());
      PERIGEE_CHECK(store_->check_writable());  // now, not at the first background write
      std::string warning;
      PERIGEE_CHECK(store_->check_space(checkpoint_file_bytes(model_.num_parameters()), &warning));
      if (!warning.empty()) log::warn(warning);
    }
    if (eclipse_) {
      std::string how, warning;
      PERIGEE_CHECK(resolve_orbit_epoch(oc, checkpoint_dir_, cc.resume == "auto", unix_now(),
                                        &orbit_epoch_unix_, &how, &warning));
      log::info("orbit clock: ", how);
      if (!warning.empty()) log::warn(warning);
    }
    return Status::ok();
  };
  const bool opens = checkpoint_enabled_ || try_resume;  // the same on every rank
  if (opens)
    PERIGEE_CHECK(
        checkpoint_fence("opening the checkpoint folder", comm_->rank() == 0 ? open_store() : Status::ok()));
  if (try_resume) {
    checkpoint::Snapshot snapshot;
    const int64_t before = next_step_;
    PERIGEE_CHECK(resume_from(&snapshot, &resumed_from_step_));
    if (next_step_ != before && !checkpoint_enabled_ && comm_->rank() == 0) {
      log::warn("resumed from ", checkpoint_dir_, " at step ", next_step_,
                ", but checkpointing is off ([checkpoint] every_steps and every_seconds are 0 and [orbit] "
                "eclipse is \"off\"): this run writes no checkpoint, so a relaunch starts again from step ",
                next_step_);
    }
  }
  if (comm_->rank() == 0 && checkpoint_enabled_) {
    // The fault plan's slow storage makes every commit delay_s longer.
    const double delay_s = injector_ ? injector_->plan().checkpoint_delay_s : 0.0;
    checkpoint::CheckpointStore* store = store_.get();
    writer_ = std::make_unique<checkpoint::AsyncCheckpointWriter>(
        [store, delay_s](const checkpoint::Snapshot& s, checkpoint::CommitStats* stats) {
          if (delay_s > 0.0) std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
          return store->commit(s, stats);
        });
    // Allocate the staging copy now, so the first checkpoint's stall is only the copy.
    PERIGEE_CHECK(writer_->prepare(make_state_source(
        model_, make_checkpoint_meta(config_, model_, next_step_, comm_->size(), train_.cursor(), last_lr_,
                                     invariants_.window(), train_.file_header(), adam_updates_))));
  }
  return Status::ok();
}

// Rank 0: a run that does not resume (resume = "never") would overwrite the folder's checkpoints of the
// same steps and, at its first commit, delete every newer one as an abandoned timeline. It refuses.
Status Trainer::refuse_fresh_run_over_checkpoints() const {
  if (config_.checkpoint.resume != "never") return Status::ok();
  std::vector<checkpoint::CheckpointEntry> entries;
  PERIGEE_CHECK(store_->list(&entries));
  PERIGEE_REQUIRE(entries.empty(), StatusCode::kInvalidArgument, "[checkpoint] resume = \"never\" but ",
                  checkpoint_dir_, " already holds ", entries.size(), " checkpoint(s), the newest ",
                  entries.empty() ? "" : entries.front().path,
                  ": a fresh run would overwrite or delete them. Choose an empty [checkpoint] dir, move them "
                  "away, or set resume = \"auto\" to continue from them");
  return Status::ok();
}

// Rank 0, before a load: a load writes nothing perigee-run's stall watchdog watches while it reads, so
// when there is a checkpoint to read, a {"type":"checkpoint_load", "quiet_s":T} record asks the watchdog
// to allow the other ranks' deadline for it, T = [checkpoint] timeout_s (no record when that is 0); the
// record written after the load (close_checkpoint_load) ends the allowance. Best effort: a metrics
// write that fails is a warning, since the other ranks are already waiting for the load's outcome.
// The fault plan's slow storage (load_delay) then makes the read that much longer.
bool Trainer::announce_checkpoint_load() {
  std::vector<checkpoint::CheckpointEntry> entries;
  if (!store_->list(&entries).is_ok() || entries.empty()) return false;  // the load reports it
  bool announced = false;
  const double quiet_s = config_.checkpoint.timeout_s;
  if (quiet_s > 0.0) {
    const Status s =
        metrics_.write({metric_text("type", "checkpoint_load"),
                        metric("step", static_cast<double>(next_step_)), metric("quiet_s", quiet_s)});
    if (s.is_ok())
      announced = true;
    else
      log::warn("cannot announce the checkpoint load in metrics.jsonl: ", s.to_string());
  }
  const double delay_s = injector_ ? injector_->plan().load_delay_s : 0.0;
  if (delay_s > 0.0) std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
  return announced;
}

void Trainer::close_checkpoint_load(double seconds, const char* outcome, int64_t step) {
  const Status s =
      metrics_.write({metric_text("type", "checkpoint_loaded"), metric("step", static_cast<double>(step)),
                      metric("load_s", seconds), metric_text("outcome", outcome)});
  if (!s.is_ok()) log::warn("cannot record the end of the checkpoint load in metrics.jsonl: ", s.to_string());
}

// Rank 0 loads; a status code, then the state, go to every rank, so all ranks leave together.
Status Trainer::resume_from(checkpoint::Snapshot* snapshot, int64_t* loaded_step, int64_t max_step) {
  *loaded_step = -1;
  int32_t outcome = 0;  // 0: nothing to resume, 1: loaded, 2: failed on rank 0
  Status load_status;
  bool newer_refused = false;  // a newer checkpoint of another job is in the folder
  if (comm_->rank() == 0) {
    const auto load_start = Clock::now();
    const bool announced = announce_checkpoint_load();
    const auto expected = checkpoint_expectation(model_, comm_->size());
    if (max_step == INT64_MAX) {
      checkpoint::LoadReport report;
      load_status = store_->load_latest(expected, snapshot, &report,
                                        [](const std::string& line) { log::info("checkpoint: ", line); });
      // A newer checkpoint that was skipped only for being another model's or job's (the store's
      // kInvalidArgument) would be deleted as an abandoned timeline at this run's next commit: refuse.
      for (const checkpoint::SkippedCheckpoint& k : report.skipped) {
        if (!load_status.is_ok() || k.step <= report.step || k.reason.code() != StatusCode::kInvalidArgument)
          continue;
        newer_refused = true;
        load_status = make_error(
            StatusCode::kInvalidArgument, "newer checkpoint ", k.path, " (step ", k.step,
            ") does not match this job: ", k.reason.message(), "\n  resuming from step ", report.step,
            " instead would delete it at the next commit; run with the build and config it was written with, "
            "or give this job its own [checkpoint] dir or [run] name");
      }
      // A newer checkpoint that failed to read twice may have failed for a transient reason: set it
      // aside so this run's next commit does not delete it as an abandoned timeline.
      for (const checkpoint::SkippedCheckpoint& k : report.skipped) {
        const StatusCode code = k.reason.code();
        if (!load_status.is_ok() || k.step <= report.step ||
            (code != StatusCode::kIoError && code != StatusCode::kHdf5Error))
          continue;
        std::string moved_to;
        if (const Status s = store_->set_aside(k.path, &moved_to); s.is_ok()) {
          log::warn("checkpoint: ", k.path, " (step ", k.step, ") was passed over (",
                    first_line(k.reason.message()), "); set aside as ", moved_to,
                    " (rename it back to try it again; it is removed when this run commits step ", k.step,
                    ")");
        } else {
          log::warn("checkpoint: ", s.message(), "; this run's next commit removes ", k.path);
        }
      }
    } else {
      // Newest checkpoint of at most max_step that verifies.
      std::vector<checkpoint::CheckpointEntry> entries;
      load_status = store_->list(&entries);
      Status found =
          make_error(StatusCode::kNotFound, "no checkpoint of step <= ", max_step, " in ", checkpoint_dir_);
      for (const auto& e : entries) {
        if (!load_status.is_ok() || e.step > max_step) continue;
        found = store_->load(e.path, expected, snapshot);
        if (found.is_ok()) break;
        log::warn("checkpoint: skipping ", e.path, ": ", found.message());
      }
      if (load_status.is_ok()) load_status = found;
    }
    outcome = load_status.is_ok() ? 1 : (load_status.code() == StatusCode::kNotFound ? 0 : 2);
    if (announced) {
      close_checkpoint_load(std::chrono::duration<double>(Clock::now() - load_start).count(),
                            outcome == 1   ? "loaded"
                            : outcome == 0 ? "none"
                                           : "failed",
                            outcome == 1 ? snapshot->meta.step : next_step_);
    }
  }
  PERIGEE_CHECK(broadcast_after_checkpoint_io(&outcome, 1, DataType::kInt32));
  if (outcome == 2) {
    if (comm_->rank() == 0) {
      return make_error(
          load_status.code(), "cannot resume from ", checkpoint_dir_, ": ", load_status.message(),
          newer_refused ? ""
                        : "\n  (no checkpoint there verifies; to start fresh, move them away or "
                          "choose another [checkpoint] dir)");
    }
    return make_error(StatusCode::kUnavailable, "rank 0 could not resume from ", checkpoint_dir_);
  }
  if (outcome == 0) return Status::ok();

  // step, cursor, stored world size, invariant window length, restore failed on rank 0 (the other
  // ranks must hear of it now, not at their next collective's timeout), and whether the run that wrote
  // the checkpoint recorded a validation at its step, AdamW updates applied
  int64_t header[7] = {0, 0, 0, 0, 0, 0, 0};
  DataCursor cursor;
  InvariantWindow window;
  Status restored;
  if (comm_->rank() == 0) {
    restored = restore_checkpoint(*snapshot, model_, &header[0], &cursor, &window, &header[6]);
    header[1] = static_cast<int64_t>(cursor.position);
    header[2] = snapshot->meta.world_size;
    header[3] = static_cast<int64_t>(window.losses.size());
    header[4] = restored.is_ok() ? 0 : 1;
    header[5] = validation_recorded_at(snapshot->meta.config_json, header[0]) ? 1 : 0;
  }
  PERIGEE_CHECK(broadcast_after_checkpoint_io(header, 7, DataType::kInt64));
  if (header[4] != 0) {
    if (comm_->rank() == 0)
      return make_error(restored.code(), "cannot resume from ", checkpoint_dir_, ": ", restored.message());
    return make_error(StatusCode::kUnavailable, "rank 0 could not restore its checkpoint from ",
                      checkpoint_dir_);
  }
  if (comm_->size() > 1 && header[3] > 0) {
    window.losses.resize(static_cast<size_t>(header[3]));
    window.grad_norms.resize(static_cast<size_t>(header[3]));
    PERIGEE_CHECK(comm_->broadcast(window.losses.data(), window.losses.size(), DataType::kFloat64, 0));
    PERIGEE_CHECK(
        comm_->broadcast(window.grad_norms.data(), window.grad_norms.size(), DataType::kFloat64, 0));
  }
  PERIGEE_CHECK(invariants_.restore(window));
  if (comm_->size() > 1) {
    std::vector<float> host(model_.num_parameters());
    for (float* live : {model_.params(), model_.adam_m(), model_.adam_v()}) {
      if (comm_->rank() == 0)
        PERIGEE_CHECK(backend_->copy_to_host(host.data(), live, host.size() * sizeof(float)));
      PERIGEE_CHECK(comm_->broadcast(host.data(), host.size(), DataType::kFloat32, 0));
      if (comm_->rank() != 0)
        PERIGEE_CHECK(backend_->copy_to_device(live, host.data(), host.size() * sizeof(float)));
    }
  }
  // Rank 0 says what the resumed run does differently from the one that wrote the checkpoint: other
  // data settings mean other samples from here on; other optimizer settings are a user's choice.
  bool same_data = true;
  if (comm_->rank() == 0) {
    const auto data = config_changes(snapshot->meta.config_json, config_,
                                     {"data.train_file", "train.seed", "train.seq_len", "model.vocab_size"});
    if (!data.empty()) {
      same_data = false;
      log::warn("resuming with other data settings than the run that wrote the checkpoint (",
                str_join(data, "; "),
                "): the samples from here on are not the ones that run would have seen");
    }
    const std::string tokens =
        train_data_change(snapshot->meta, train_.file_header(), config_.data.train_file);
    if (!tokens.empty()) {
      same_data = false;
      log::warn("resuming on other data: ", tokens,
                ": the samples from here on are not the ones that run would have seen");
    }
    const auto optimizer = config_changes(
        snapshot->meta.config_json, config_,
        {"train.lr", "train.min_lr_ratio", "train.warmup_steps", "train.steps", "train.batch_size",
         "train.weight_decay", "train.beta1", "train.beta2", "train.grad_clip"});
    if (!optimizer.empty()) log::info("resuming with changed settings: ", str_join(optimizer, "; "));
  }
  next_step_ = header[0];
  adam_updates_ = header[6];
  train_.set_cursor(DataCursor{static_cast<uint64_t>(header[1])});
  *loaded_step = next_step_;
  last_checkpoint_step_ = next_step_;
  validated_at_resume_ = header[5] != 0;
  if (next_step_ > 0) last_lr_ = learning_rate(config_.train, next_step_ - 1);
  log::info("resumed from step ", next_step_, " (data position ", header[1], ")",
            header[2] != comm_->size()
                ? str_cat("; written by ", header[2], " ranks, re-sharded to ", comm_->size(),
                          same_data ? " (the data position is global, so the sample order is unchanged)" : "")
                : std::string());
  return Status::ok();
}

Status Trainer::save_checkpoint() {
  PERIGEE_REQUIRE(checkpoint_enabled_, StatusCode::kInvalidArgument,
                  "checkpointing is off: set [checkpoint] every_steps or every_seconds, or [orbit] eclipse");
  last_checkpoint_step_ = next_step_;
  last_checkpoint_time_ = Clock::now();
  ++checkpoints_saved_;
  if (comm_->rank() != 0) return Status::ok();
  PERIGEE_CHECK(verify_folder_locks());
  checkpoint::StageStats st;
  PERIGEE_CHECK(writer_->stage(
      make_state_source(
          model_, make_checkpoint_meta(config_, model_, next_step_, comm_->size(), train_.cursor(), last_lr_,
                                       invariants_.window(), train_.file_header(), adam_updates_)),
      &st));
  checkpoint::WriteRecord rec;
  if (!config_.checkpoint.async) PERIGEE_CHECK(writer_->wait(&rec));
  log::info("checkpoint at step ", next_step_, ": ", st.bytes / (1 << 20), " MiB staged, training stalled ",
            fixed(st.stall_seconds * 1e3, 1), " ms",
            config_.checkpoint.async
                ? " (written in the background)"
                : str_cat(", written in ", fixed(rec.write_seconds, 2), " s",
                          rec.commit.verify_seconds > 0 ? " (read back and verified)" : "", " -> ",
                          rec.commit.path));
  return metrics_.write({metric_text("type", "checkpoint"), metric("step", static_cast<double>(next_step_)),
                         metric("stall_ms", st.stall_seconds * 1e3), metric("wait_ms", st.wait_seconds * 1e3),
                         metric("bytes", static_cast<double>(st.bytes))});
}

Status Trainer::verify_folder_locks() {
  bool retaken = false;
  PERIGEE_CHECK(store_->verify_lock(&retaken));
  if (retaken) {
    log::warn(
        "checkpoint folder ", checkpoint_dir_, " (or its lock file) was removed while the job ran: ",
        "locked again, so that no second job can take it; the checkpoints it held are gone, the next is ",
        "step ", next_step_, "'s");
  }
  if (!run_dir_lock_.held()) return Status::ok();
  PERIGEE_CHECK(run_dir_lock_.verify(run_dir_, "run folder", &retaken));
  if (!retaken) return Status::ok();
  // Made anew: this rank's log and metrics go there again, with the run's config.
  PERIGEE_CHECK(log::set_file(run_dir_));
  PERIGEE_CHECK(metrics_.open(run_dir_ + "/metrics.jsonl"));
  PERIGEE_CHECK(checkpoint::write_file_atomic(run_dir_, "config.json", config_to_json(config_) + "\n"));
  log::warn("run folder ", run_dir_,
            " (or its lock file) was removed while the job ran: locked again and made ",
            "anew with rank 0's log, config.json and the metrics from step ", next_step_, " on");
  return Status::ok();
}

Status Trainer::broadcast_after_checkpoint_io(void* buffer, size_t count, DataType type) {
  const double comm_timeout = comm_->timeout_s();
  PERIGEE_CHECK(comm_->set_timeout(config_.checkpoint.timeout_s));
  const Status s = comm_->broadcast(buffer, count, type, 0);
  const Status restored = comm_->set_timeout(comm_timeout);
  if (!s.is_ok()) {
    return make_error(s.code(), "waiting for rank 0's checkpoint work ([checkpoint] timeout_s = ",
                      config_.checkpoint.timeout_s, " s): ", s.message());
  }
  return restored;
}

Status Trainer::checkpoint_fence(const char* what, const Status& rank0_work) {
  int32_t failed = comm_->rank() == 0 && !rank0_work.is_ok() ? 1 : 0;
  PERIGEE_CHECK(broadcast_after_checkpoint_io(&failed, 1, DataType::kInt32));
  if (comm_->rank() == 0) return rank0_work;
  PERIGEE_REQUIRE(failed == 0, StatusCode::kIoError, what, " failed on rank 0 (its log says why)");
  return Status::ok();
}

Status Trainer::periodic_checkpoint_due(bool* due) {
  const CheckpointConfig& cc = config_.checkpoint;
  *due = false;
  // Never save suspect state; the end of the run has its own checkpoint; a rollback or resume just
  // loaded this step's checkpoint (a rewrite would add nothing but the I/O).
  if (!checkpoint_enabled_ || next_step_ == config_.train.steps || consecutive_skips_ != 0 ||
      last_checkpoint_step_ == next_step_) {
    return Status::ok();
  }
  int32_t decision = cc.every_steps > 0 && next_step_ % cc.every_steps == 0;
  if (cc.every_seconds > 0) {
    const double since = std::chrono::duration<double>(Clock::now() - last_checkpoint_time_).count();
    if (comm_->rank() == 0) decision = decision || since >= cc.every_seconds;
    PERIGEE_CHECK(comm_->broadcast(&decision, 1, DataType::kInt32, 0));
  }
  *due = decision != 0;
  return Status::ok();
}

Status Trainer::finish_checkpoints() {
  if (!writer_) return Status::ok();
  checkpoint::WriteRecord rec;
  PERIGEE_CHECK(writer_->wait(&rec));
  if (writer_->writes_completed() > 0) {
    log::info("last checkpoint: step ", rec.step, " written in ", fixed(rec.write_seconds, 2), " s",
              rec.commit.verify_seconds > 0 ? " (read back and verified)" : "", " -> ", rec.commit.path);
  }
  return Status::ok();
}

double Trainer::mission_time(double unix_s) const {
  return (unix_s - orbit_epoch_unix_) * config_.orbit.time_scale;
}

double Trainer::eclipse_margin_s() const {
  const double margin = std::max(config_.orbit.margin_s, 1.5 * eclipse_write_mission_s_);
  return std::min(margin, 0.999 * eclipse_->sunlit_s());
}

void Trainer::note_eclipse_write(double gate_unix, double entry_s, bool wrote) {
  const OrbitConfig& oc = config_.orbit;
  const double now = unix_now();
  const double took = (now - gate_unix) * oc.time_scale;  // mission s, gate to durable
  const double late = mission_time(now) - entry_s;
  const double margin_before = eclipse_margin_s();
  if (wrote) eclipse_write_mission_s_ = std::max(eclipse_write_mission_s_, took);
  const double margin = eclipse_margin_s();
  if (late > 0.0 && mission_time(gate_unix) < entry_s) {
    log::warn("orbit: the eclipse checkpoint was durable ", fixed(late, 1),
              " mission s after the shadow entry (", fixed(took, 1), " s from the gate, ",
              fixed(took / oc.time_scale, 2), " s wall at time scale ", oc.time_scale,
              "); raise [orbit] margin_s (", oc.margin_s, " s) above it");
  }
  if (margin > margin_before) {
    log::warn("orbit: the eclipse checkpoint took ", fixed(took, 1),
              " mission s, more than 2/3 of the margin ([orbit] margin_s = ", oc.margin_s,
              " s): the next ones start ", fixed(margin, 1), " s before the shadow entry");
  }
}

Status Trainer::eclipse_gate() {
  if (!eclipse_) return Status::ok();
  // decision[0]: 0 nothing, 1 checkpoint now, 2 idle, 3 this step's state is saved already (a resume,
  // a rollback, a periodic checkpoint): make sure it is durable; decision[1]: idle wall seconds (2),
  // mission seconds left to the shadow entry (1 and 3; <= 0 in shadow already).
  double decision[2] = {0.0, 0.0};
  double gate_unix = 0.0, entry_s = 0.0;  // rank 0
  if (comm_->rank() == 0) {
    gate_unix = unix_now();
    const double t = mission_time(gate_unix);
    if (t > 86400.0 && !orbit_drift_warned_) {
      orbit_drift_warned_ = true;
      log::warn("orbit: the clock is ", fixed(t / 86400.0, 1),
                " mission days from its epoch; the model (circular two-body orbit, fixed beta) drifts from "
                "the real one by a minute or more a day: set [orbit] epoch_unix, phase_deg and beta_deg from "
                "a recent ephemeris before the drift passes [orbit] margin_s");
    }
    // The next gate comes about one step later (the last gap between gates, in mission seconds).
    const double step_s =
        last_gate_unix_ > 0.0 ? mission_time(gate_unix) - mission_time(last_gate_unix_) : 0.0;
    last_gate_unix_ = gate_unix;
    const auto shadow = eclipse_->next_shadow(t);
    if (shadow) {
      const bool inside = t >= shadow->entry_s;
      const bool near = eclipse_->checkpoint_due(t, eclipse_margin_s(), step_s);
      // Never save suspect state (as for the periodic checkpoints): while steps are being skipped the
      // shadow's checkpoint waits for a clean step, or the newest clean checkpoint stands.
      if (near && shadow_checkpointed_ != shadow->orbit && consecutive_skips_ == 0) {
        decision[0] = last_checkpoint_step_ == next_step_ ? 3.0 : 1.0;
        decision[1] = shadow->entry_s - t;
        shadow_checkpointed_ = shadow->orbit;
        entry_s = shadow->entry_s;
      } else if (inside && config_.orbit.eclipse == "pause") {
        decision[0] = 2.0;
        decision[1] = (shadow->exit_s - t) / config_.orbit.time_scale;
      }
    }
  }
  PERIGEE_CHECK(comm_->broadcast(decision, 2, DataType::kFloat64, 0));
  if (decision[0] == 1.0 || decision[0] == 3.0) {
    const bool write = decision[0] == 1.0;
    const std::string when = decision[1] > 0.0
                                 ? str_cat("shadow entry in ", fixed(decision[1], 0), " mission s")
                                 : std::string("in shadow already");
    if (write) {
      log::info("orbit: ", when, ": checkpoint before the power drops");
    } else {
      log::info("orbit: ", when, ": the state of step ", next_step_, " is saved already");
    }
    bool rolled_back = false;  // then the restored step's checkpoint stands (it is durable)
    if (write) PERIGEE_CHECK(check_replicas_before_checkpoint(&rolled_back));
    Status written = write && !rolled_back ? save_checkpoint() : Status::ok();
    if (written.is_ok()) written = finish_checkpoints();  // durable before the shadow
    PERIGEE_CHECK(checkpoint_fence("the eclipse checkpoint", written));
    if (comm_->rank() == 0) note_eclipse_write(gate_unix, entry_s, write);
  } else if (decision[0] == 2.0) {
    log::info("orbit: in shadow, compute paused for ",
              fixed(decision[1] * config_.orbit.time_scale / 60.0, 1), " mission min (",
              fixed(decision[1], 1), " s wall)");
    PERIGEE_CHECK(
        metrics_.write({metric_text("type", "eclipse"), metric("step", static_cast<double>(next_step_)),
                        metric("pause_s", decision[1])}));
    std::this_thread::sleep_for(std::chrono::duration<double>(decision[1]));
    last_gate_unix_ = 0.0;  // the pause is no step: no look-ahead from it
    log::info("orbit: sunlight again, training resumes at step ", next_step_ + 1);
  }
  return Status::ok();
}

}  // namespace perigee::runtime
