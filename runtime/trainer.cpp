#include "runtime/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/read_file.hpp"
#include "runtime/device.hpp"
#include "runtime/log.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"
#include "runtime/run_name.hpp"
#include "runtime/tokenizer.hpp"

namespace perigee::runtime {
namespace {

using collectives::DataType;
using collectives::ReduceOp;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  if (s >= 3600) return str_cat(s / 3600, "h", (s % 3600) / 60, "m");
  if (s >= 60) return str_cat(s / 60, "m", s % 60, "s");
  return str_cat(s, "s");
}

std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2e", v);
  return buf;
}

}  // namespace

Trainer::Trainer(Config config, collectives::Communicator* comm, kernels::Backend* backend,
                 TrainerOptions options)
    : config_(std::move(config)), comm_(comm), grad_comm_(comm), backend_(backend), options_(options) {}

Status Trainer::setup() {
  const TrainConfig& tc = config_.train;
  PERIGEE_CHECK(setup_faults());
  const int world = comm_->size();
  PERIGEE_REQUIRE(tc.batch_size % world == 0, StatusCode::kInvalidArgument,
                  "[train] batch_size = ", tc.batch_size,
                  " is the global batch and must be divisible by the world size ", world,
                  " (each rank takes batch_size / world sequences)");
  const int local = tc.batch_size / world;
  micro_batch_ = tc.micro_batch > 0 ? tc.micro_batch : local;
  PERIGEE_REQUIRE(local % micro_batch_ == 0, StatusCode::kInvalidArgument,
                  "[train] micro_batch = ", tc.micro_batch, " must divide the per-rank batch ", local,
                  " (batch_size ", tc.batch_size, " / ", world,
                  " ranks): each rank runs its batch in passes of micro_batch sequences");
  DataLoaderOptions lo;
  lo.global_batch = tc.batch_size;
  lo.seq_len = tc.seq_len;
  lo.rank = comm_->rank();
  lo.world_size = world;
  lo.seed = tc.seed;
  lo.model_vocab = config_.model.vocab_size;
  // The token files' headers now (a missing or malformed file fails here, at once); their tokens are
  // read after the memory check, which counts them.
  TokenFileHeader train_header, val_header;
  PERIGEE_CHECK(read_token_header(config_.data.train_file, &train_header));
  // val_every = 0 disables validation: the val file is then neither needed nor read.
  const bool load_val = tc.val_every > 0;
  const char* val_hint =
      "\n  (validation needs [data] val_file; set [train] val_every = 0 to train without it)";
  if (load_val) {
    Status s = read_token_header(config_.data.val_file, &val_header);
    PERIGEE_REQUIRE(s.is_ok(), s.code(), s.message(), val_hint);
  }
  token_bytes_ = DataLoader::memory_bytes(train_header.count, tc.seq_len, true) +
                 (load_val ? DataLoader::memory_bytes(val_header.count, tc.seq_len, false) : 0);

  const ModelConfig& mc = config_.model;
  GptShape shape{mc.n_layer, mc.n_head, mc.n_embd, mc.context, mc.vocab_size, mc.padded_vocab};
  // "auto" storage for this backend (perigee_train resolved it already; a caller may not have).
  config_.device =
      resolve_device_auto(config_.device, config_.fault.abft, backend_->kind() == kernels::DeviceKind::kCuda);
  config_.device.gelu_fusion = backend_->fuses_gelu() ? "on" : "off";  // what runs, for config.json
  const kernels::DType acts =
      config_.device.activations == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32;
  const kernels::DType logits =
      config_.device.logits == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32;
  PERIGEE_CHECK(check_memory(shape, acts, logits));
  PERIGEE_CHECK(DataLoader::open(config_.data.train_file, lo, &train_));
  if (load_val) {
    lo.shuffle = false;
    Status s = DataLoader::open(config_.data.val_file, lo, &val_);
    PERIGEE_REQUIRE(s.is_ok(), s.code(), s.message(), val_hint);
    has_val_ = true;
    const uint64_t holds = std::max<uint64_t>(1, val_.num_samples() / tc.batch_size);
    if (static_cast<uint64_t>(tc.val_batches) > holds && comm_->rank() == 0) {
      log::warn("[train] val_batches = ", tc.val_batches, ", but ", config_.data.val_file, " holds ", holds,
                " batch(es) of ", tc.batch_size, " x ", tc.seq_len, " tokens: each validation evaluates ",
                holds == 1 ? "that one" : str_cat("those ", holds), " once");
    }
  }
  // Activations for one pass (micro_batch_ sequences); inputs_/targets_ hold the rank's whole batch.
  PERIGEE_CHECK(model_.init(shape, backend_, micro_batch_, tc.seq_len, acts, logits, tc.recompute));
  PERIGEE_CHECK(model_.init_parameters(tc.seed));
  PERIGEE_CHECK(check_fault_plan_scope());
  // Replicas start identical: rank 0's parameters go to every rank.
  if (world > 1) {
    std::vector<float> host;
    PERIGEE_CHECK(model_.get_parameters(&host));
    PERIGEE_CHECK(comm_->broadcast(host.data(), host.size(), DataType::kFloat32, 0));
    PERIGEE_CHECK(model_.set_parameters(host));
  }
  PERIGEE_CHECK(setup_gradient_buckets());
  const size_t ntok = static_cast<size_t>(train_.local_batch()) * tc.seq_len;
  inputs_.resize(ntok);
  targets_.resize(ntok);
  if (options_.write_run_dir) PERIGEE_CHECK(make_run_dir());
  PERIGEE_CHECK(setup_checkpoints());
  // Without PERIGEE_LAUNCH, a run that starts fresh is launch 1 and one that resumed is of unknown
  // number. Decided here, once: a rollback later resumes from a checkpoint within this same launch.
  death_launch_ = options_.launch > 0 ? options_.launch : (resumed_from_step_ < 0 ? 1 : 0);
  // The run folder's config.json becomes this job's only once every check has passed: a launch refused
  // above (a checkpoint folder it may not use, a resume that fails) leaves the earlier run's record.
  if (options_.write_run_dir) PERIGEE_CHECK(write_run_config());
  return Status::ok();
}

Status Trainer::setup_gradient_buckets() {
  size_t bucket_bytes = static_cast<size_t>(config_.comm.bucket_mb * 1024.0 * 1024.0);
  // Upsets "before the all-reduce" are drawn over the whole gradient buffer once the backward pass
  // is done; buckets would already have sent most of it.
  if (bucket_bytes > 0 && injector_ && injector_->targets(fault::FaultTarget::kGradientPreAllreduce)) {
    log::info(
        "[comm] bucket_mb: the fault plan corrupts gradients before the all-reduce, so they are "
        "averaged after the backward pass (no buckets)");
    bucket_bytes = 0;
  }
  buckets_ = std::make_unique<collectives::GradientBuckets>(grad_comm_, bucket_bytes);
  if (config_.comm.grad_dtype == "bf16" && comm_->size() > 1) {
    void* wire = nullptr;
    const size_t n = model_.num_parameters();
    PERIGEE_CHECK(backend_->allocate(&wire, n * sizeof(uint16_t)));
    kernels::Backend* backend = backend_;
    grad_wire_ = {static_cast<uint16_t*>(wire), [backend](uint16_t* p) { backend->release(p); }};
    collectives::Bf16WireCodec codec;
    codec.wire = grad_wire_.get();
    codec.encode = [backend](uint16_t* dst, const float* src, size_t k) {
      return backend->to_bf16(dst, src, k);
    };
    codec.decode = [backend](float* dst, const uint16_t* src, float s, size_t k) {
      return backend->from_bf16(dst, src, s, k);
    };
    // A communicator that follows the backend's stream reads the wire after encode without a host wait.
    if (grad_comm_->follows_producer_stream()) {
      codec.synchronize = [] { return Status::ok(); };
    } else {
      codec.synchronize = [backend] { return backend->synchronize(); };
    }
    PERIGEE_CHECK(buckets_->set_bf16_wire(std::move(codec)));
    log::info("gradients: all-reduced as bf16 (", fixed(n * 2.0 / (1024.0 * 1024.0), 1),
              " MiB per step instead of ", fixed(n * 4.0 / (1024.0 * 1024.0), 1),
              " MiB), averaged back into fp32");
  }
  if (!buckets_->overlapping()) {
    model_.set_gradient_ready(nullptr);
    if (bucket_bytes > 0 && comm_->size() > 1) {
      log::info("gradients: one all-reduce after the backward pass (", grad_comm_->name(),
                " does not overlap collectives with computation)");
    }
    return Status::ok();
  }
  log::info("gradients: all-reduce overlapped with the backward pass in buckets of ",
            fixed(config_.comm.bucket_mb, 1), " MiB over ", grad_comm_->name());
  const bool ordered = grad_comm_->follows_producer_stream();
  model_.set_gradient_ready([this, ordered](size_t first) {
    // A communicator that does not follow the backend's stream reads the buffer outside its queue
    // (another stream, or the host): the stream must be idle first. A bf16 wire buffer is
    // synchronized by the codec after its to_bf16.
    if (!ordered && buckets_->wire_type() == DataType::kFloat32) PERIGEE_CHECK(backend_->synchronize());
    return buckets_->ready_from(first);
  });
  return Status::ok();
}

Status Trainer::refuse_another_models_run_dir() const {
  const std::string path = run_dir_ + "/config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::ok();
  std::string stored;
  PERIGEE_CHECK(read_small_file(path, "the run folder's config", &stored));
  std::vector<std::string> model_keys;  // every [model] key: the shape the run folder's job trained
  for (const ConfigKeyInfo& info : config_schema())
    if (info.section == "model") model_keys.push_back("model." + info.key);
  bool readable = true;
  const std::vector<std::string> changes = config_changes(stored, config_, model_keys, &readable);
  if (!readable) {
    log::warn("run folder ", run_dir_,
              ": its config.json is no JSON object (damaged?), so which model the "
              "folder ran is unknown; this job's config replaces it (a checkpoint of another model is still "
              "refused by its shape)");
  }
  PERIGEE_REQUIRE(
      changes.empty(), StatusCode::kInvalidArgument, "run folder ", run_dir_,
      " holds a run of another model (", str_join(changes, "; "),
      "): its config.json, metrics and log would be mixed with this job's; pick another [run] name "
      "or move that folder away");
  return Status::ok();
}

Status Trainer::make_run_dir() {
  // Rank 0 picks the name (when unset, a timestamp whose folder it creates: run_name.hpp) and every
  // rank uses the same one, however long.
  std::string name = config_.run.name;
  Status named = Status::ok();
  if (comm_->rank() == 0 && name.empty())
    named = claim_timestamped_run_dir(config_.run.dir, static_cast<long long>(std::time(nullptr)), &name);
  int64_t length = static_cast<int64_t>(name.size());
  PERIGEE_CHECK(comm_->broadcast(&length, 1, DataType::kInt64, 0));
  name.resize(static_cast<size_t>(length));
  PERIGEE_CHECK(comm_->broadcast(name.data(), name.size(), DataType::kUInt8, 0));
  run_dir_ = (std::filesystem::path(config_.run.dir) / name).string();
  // Rank 0 creates it; the others hear at once when that fails, not at the barrier's deadline.
  auto create = [&]() -> Status {
    PERIGEE_CHECK(named);
    std::error_code ec;
    std::filesystem::create_directories(run_dir_, ec);
    PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot create run directory ", run_dir_, ": ", ec.message());
    // One job per run folder.
    PERIGEE_CHECK(FolderLock::acquire(run_dir_, "run folder", &run_dir_lock_, folder_lock_wait_s()));
    PERIGEE_CHECK(refuse_another_models_run_dir());
    PERIGEE_CHECK(metrics_.open(run_dir_ + "/metrics.jsonl"));  // appends: a refused launch loses nothing
    return Status::ok();
  };
  PERIGEE_CHECK(on_rank0_then_agree(create, str_cat("set up the run directory ", run_dir_)));
  PERIGEE_CHECK(log::set_file(run_dir_));
  return Status::ok();
}

Status Trainer::write_run_config() {
  return on_rank0_then_agree(
      [&] { return checkpoint::write_file_atomic(run_dir_, "config.json", config_to_json(config_) + "\n"); },
      str_cat("write ", run_dir_, "/config.json"));
}

Status Trainer::on_rank0_then_agree(const std::function<Status()>& work, const std::string& what) {
  const Status done = comm_->rank() == 0 ? work() : Status::ok();
  int32_t failed = done.is_ok() ? 0 : 1;
  PERIGEE_CHECK(comm_->broadcast(&failed, 1, DataType::kInt32, 0));
  if (comm_->rank() == 0) PERIGEE_CHECK(done);
  PERIGEE_REQUIRE(failed == 0, StatusCode::kIoError, "rank 0 could not ", what, " (its log says why)");
  return Status::ok();
}

Status Trainer::compute_gradients(double* loss, double* grad_norm, double* comm_ms) {
  const int B = train_.local_batch(), T = config_.train.seq_len;
  PERIGEE_CHECK(model_.zero_grad());
  const size_t n = model_.num_parameters();
  const double modelled0 = grad_comm_->modelled_seconds();
  // With buckets, the (last) backward pass starts the all-reduces of the upper blocks as it goes.
  PERIGEE_CHECK(buckets_->begin(model_.grads(), n));
  PERIGEE_CHECK(model_.forward_backward(inputs_.data(), targets_.data(), B, T, micro_batch_, loss));
  PERIGEE_CHECK(backend_->synchronize());
  inject(fault::FaultTarget::kGradientPreAllreduce, model_.grads(), n);  // never with buckets (setup)
  const auto tc0 = Clock::now();
  PERIGEE_CHECK(buckets_->finish());
  if (comm_->size() > 1) PERIGEE_CHECK(comm_->all_reduce(loss, loss, 1, DataType::kFloat64, ReduceOp::kAvg));
  *comm_ms = ms_since(tc0);
  link_ms_ += (grad_comm_->modelled_seconds() - modelled0) * 1e3;
  inject(fault::FaultTarget::kGradientPostAllreduce, model_.grads(), n);
  PERIGEE_CHECK(gradient_norm(model_, grad_norm));
  if (comm_->size() > 1) {
    // After the all-reduce every replica holds the same gradients, so the same norm, unless an upset hit
    // one replica's copy since. The ladder's decisions and the clip scale follow the norm: every rank
    // takes the largest (a NaN as +inf; MAX is exact, so a clean step keeps its bits), so all take the
    // same branch instead of one re-running or skipping alone (its collectives then pair with the
    // others' next ones). The averaged loss joins it: MPI does not promise every rank the same bits of
    // an average (the summation order may differ by rank), and the ladder compares the loss too.
    double both[2] = {std::isnan(*grad_norm) ? INFINITY : *grad_norm, *loss};
    PERIGEE_CHECK(comm_->all_reduce(both, both, 2, DataType::kFloat64, ReduceOp::kMax));
    *grad_norm = both[0];
    *loss = both[1];
  }
  return Status::ok();
}

Status Trainer::step(StepResult* result) {
  const auto t0 = Clock::now();
  const int T = config_.train.seq_len;
  train_.next_batch(inputs_.data(), targets_.data());
  double loss = 0.0, norm = 0.0, comm_ms = 0.0;
  link_ms_ = 0.0;
  PERIGEE_CHECK(compute_gradients(&loss, &norm, &comm_ms));

  // Rungs 2 and 3: invariants, then a re-run from the unchanged state (parameters and moments are
  // only written by the update below). loss (averaged) and norm (the largest) are global, so every rank
  // decides alike.
  bool apply = true;
  bool repaired = false;         // rung 4 mended a replica: the batch is skipped, the count starts anew
  std::string rollback_why;      // rung 5 follows
  const char* action = nullptr;  // the metrics line's, when not rerun_kept or skipped
  const FaultConfig& fc = config_.fault;
  InvariantVerdict verdict = invariants_.check(loss, norm);
  if (verdict.triggered) {
    ++counters_.triggers;
    log::warn("step ", next_step_ + 1, ": invariant fired: ", verdict.reason);
    apply = false;
    if (fc.rerun) {
      double loss2 = 0.0, norm2 = 0.0, comm2 = 0.0;
      PERIGEE_CHECK(compute_gradients(&loss2, &norm2, &comm2));
      comm_ms += comm2;
      // The gradients are the re-run's now: its loss, norm and verdict decide from here on (the clip
      // scale, the escalation's finiteness test and the window all follow them).
      const InvariantVerdict verdict2 = invariants_.check(loss2, norm2);
      if (loss2 == loss && norm2 == norm) {
        ++counters_.reproducible;
        log::warn("step ", next_step_ + 1, ": the re-run reproduces it (loss ", loss2,
                  "): numerical or data anomaly, this batch is skipped");
      } else if (verdict2.triggered) {
        ++counters_.reproducible;
        log::warn("step ", next_step_ + 1, ": the re-run differs but still fires (loss ", loss2, ", norm ",
                  norm2, "; was ", loss, ", ", norm, "): ", verdict2.reason, "; batch skipped");
        verdict = verdict2;
      } else {
        ++counters_.transient;
        log::warn("step ", next_step_ + 1, ": transient fault: the re-run gives loss ", loss2, ", norm ",
                  norm2, " (was ", loss, ", ", norm, "); the re-run is kept");
        apply = true;
      }
      loss = loss2, norm = norm2;
    }
    // One bad batch is data; several in a row mean a corrupt state (e.g. a flipped moment) or a
    // training whose own level moved (an instability, or thresholds below the run's level).
    constexpr int kSkipsBeforeEscalation = 3;
    if (!apply && consecutive_skips_ + 1 >= kSkipsBeforeEscalation) {
      const std::string why =
          str_cat(kSkipsBeforeEscalation,
                  " steps in a row failed their invariants reproducibly (last: ", verdict.reason, ")");
      // A NaN or Inf does not come from a sound state: rung 5. A finite level is first checked
      // against the other replicas (rung 4): an upset hits one replica, while a level that the data
      // or the optimizer moved is the same on all (and one replica has nothing to compare with).
      bool consistent = true;
      if (!std::isfinite(loss) || !std::isfinite(norm)) {
        rollback_why = why;
      } else if (comm_->size() > 1) {
        ReplicaCheck rc;
        std::string no_majority;
        PERIGEE_CHECK(check_replicas(next_step_, &rc, &no_majority));
        consistent = rc.consistent;
        if (rc.needs_rollback) rollback_why = str_cat(why, "; ", no_majority);
      }
      if (rollback_why.empty() && consistent) {
        ++counters_.instabilities;
        log::warn("step ", next_step_ + 1, ": ", why, ", but the state is sound (",
                  comm_->size() > 1 ? "every replica agrees" : "one replica, nothing to compare with",
                  "): the training's own level moved, so this update is applied",
                  config_.train.grad_clip > 0 ? " (clipped)" : "", " and enters the window");
        apply = true;
        action = "applied";
      }
      repaired = rollback_why.empty() && !consistent;
      if (!rollback_why.empty()) action = "rollback";
    }
    PERIGEE_CHECK(
        metrics_.write({metric_text("type", "fault"), metric("step", static_cast<double>(next_step_ + 1)),
                        metric_text("rung", "invariants"), metric_text("reason", verdict.reason),
                        metric_text("action", action != nullptr ? action
                                              : apply           ? "rerun_kept"
                                                                : "skipped")}));
  }
  UpdateStats us;
  us.lr = learning_rate(config_.train, next_step_);
  us.grad_norm = norm;
  if (!rollback_why.empty()) {
    ++counters_.skipped;
    const int64_t ran = next_step_;
    ++next_step_;  // as after an update: the rollback replays through this step
    PERIGEE_CHECK(rollback(rollback_why, /*after_update_ran=*/false));
    if (result != nullptr) {
      *result = StepResult{.step = ran,
                           .loss = loss,
                           .lr = us.lr,
                           .grad_norm = norm,
                           .ms = ms_since(t0),
                           .comm_ms = comm_ms,
                           .applied = false};
    }
    return Status::ok();
  }
  if (apply) {
    PERIGEE_CHECK(optimizer_step(model_, config_.train, next_step_, &us, &norm, adam_updates_));
    ++adam_updates_;
    invariants_.accept(loss, norm);
    consecutive_skips_ = 0;
  } else {
    ++counters_.skipped;
    consecutive_skips_ = repaired ? 0 : consecutive_skips_ + 1;  // a repaired state starts a new count
  }
  PERIGEE_CHECK(backend_->synchronize());

  StepResult r;
  r.step = next_step_;
  r.loss = loss;
  r.lr = us.lr;
  last_lr_ = us.lr;
  r.grad_norm = us.grad_norm;
  r.comm_ms = comm_ms;
  r.link_ms = link_ms_;
  r.buckets = buckets_->buckets();
  r.buckets_overlapped = buckets_->overlapped();
  r.applied = apply;
  ++next_step_;
  PERIGEE_CHECK(after_update());
  r.ms = ms_since(t0);
  r.tokens_per_s = static_cast<double>(config_.train.batch_size) * T / (r.ms / 1000.0);
  if (result != nullptr) *result = r;
  return Status::ok();
}

Status Trainer::evaluate(double* val_loss) {
  PERIGEE_REQUIRE(has_val_, StatusCode::kInvalidArgument,
                  "no validation data ([data] val_file is read only when [train] val_every > 0)");
  val_.reset();
  validating_ = true;
  struct Done {
    bool* flag;
    ~Done() { *flag = false; }
  } done{&validating_};
  const int B = val_.local_batch(), T = config_.train.seq_len;
  // Cap at the batches the split holds, so a small val file is evaluated once, not repeated.
  const uint64_t available = std::max<uint64_t>(1, val_.num_samples() / config_.train.batch_size);
  const int batches = static_cast<int>(std::min<uint64_t>(config_.train.val_batches, available));
  const int passes = B / micro_batch_;
  const size_t stride = static_cast<size_t>(micro_batch_) * T;
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    val_.next_batch(inputs_.data(), targets_.data());
    double batch_sum = 0.0;  // equal passes: the mean of their means is the batch's mean
    for (int p = 0; p < passes; ++p) {
      double loss = 0.0;
      PERIGEE_CHECK(
          model_.evaluate(inputs_.data() + p * stride, targets_.data() + p * stride, micro_batch_, T, &loss));
      batch_sum += loss;
    }
    sum += batch_sum / passes;
  }
  double mean = sum / batches;
  if (comm_->size() > 1)
    PERIGEE_CHECK(comm_->all_reduce(&mean, &mean, 1, DataType::kFloat64, ReduceOp::kAvg));
  *val_loss = mean;
  return Status::ok();
}

Status Trainer::sample(int tokens, std::string* text) {
  const int max_t = config_.train.seq_len;
  std::vector<int32_t> ctx =
      encode_bytes(config_.train.sample_prompt.empty() ? "\n" : config_.train.sample_prompt);
  const size_t prompt_len = ctx.size();
  SplitMix64 rng(config_.train.seed ^ 0x5A4D504C45ull);
  const double temperature = config_.train.sample_temperature;
  std::vector<float> logits;
  std::vector<double> probs;
  for (int i = 0; i < tokens; ++i) {
    const size_t start = ctx.size() > static_cast<size_t>(max_t) ? ctx.size() - max_t : 0;
    const int T = static_cast<int>(ctx.size() - start);
    PERIGEE_CHECK(model_.forward(ctx.data() + start, nullptr, 1, T, nullptr));
    PERIGEE_CHECK(model_.copy_logits(0, T - 1, &logits));
    const float mx = *std::max_element(logits.begin(), logits.end());
    probs.resize(logits.size());
    double z = 0.0;
    for (size_t v = 0; v < logits.size(); ++v) z += probs[v] = std::exp((logits[v] - mx) / temperature);
    double u = rng.uniform() * z;
    size_t pick = probs.size() - 1;
    for (size_t v = 0; v < probs.size(); ++v) {
      if ((u -= probs[v]) <= 0.0) {
        pick = v;
        break;
      }
    }
    ctx.push_back(static_cast<int32_t>(pick));
  }
  *text = decode_bytes(std::vector<int32_t>(ctx.begin() + static_cast<long>(prompt_len), ctx.end()));
  return Status::ok();
}

void Trainer::log_step(const StepResult& r) const {
  const int64_t total = config_.train.steps;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const int64_t done = r.step + 1;
  const double eta = elapsed / static_cast<double>(done - start_step_) * static_cast<double>(total - done);
  std::string bar;
  if (options_.progress_bar) {
    const int width = 20;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    bar.append(1, '[').append(filled, '#').append(width - filled, '.').append("] ");  // no GCC 12 -Wrestrict
  }
  log::info(bar, "step ", done, "/", total, " | loss ", fixed(r.loss, 4), " | lr ", sci(r.lr), " | norm ",
            fixed(r.grad_norm, 3), " | ", fixed(r.ms, 1), " ms (comm ", fixed(r.comm_ms, 1),
            r.link_ms > 0.0 ? str_cat(", links ", fixed(r.link_ms, 2), " ms emulated") : std::string(),
            ") | ", static_cast<long>(r.tokens_per_s), " tok/s | eta ", format_duration(eta));
}

Status Trainer::run() {
  const TrainConfig& tc = config_.train;
  start_ = Clock::now();
  start_step_ = next_step_;
  const int64_t first_step = next_step_;
  double first_loss = 0.0, last_loss = 0.0;
  auto validate = [&](int64_t step) -> Status {
    if (!has_val_) return Status::ok();
    double vl = 0.0;
    PERIGEE_CHECK(evaluate(&vl));
    log::info("validation at step ", step, ": loss ", fixed(vl, 4), " (", fixed(vl / std::log(2.0), 3),
              " bits/byte)");
    return metrics_.write(
        {metric_text("type", "val"), metric("step", static_cast<double>(step)), metric("val_loss", vl)});
  };
  const bool trains = next_step_ < tc.steps;
  if (!trains) {
    // A relaunch of a finished run resumes at its end: nothing to train (the final validation, the
    // summary and the sample still run once).
    if (next_step_ > tc.steps) {
      log::warn("the resumed checkpoint is at step ", next_step_, ", past [train] steps = ", tc.steps,
                ": nothing to train (raise [train] steps to go on)");
    } else {
      log::info("the resumed checkpoint is at the last step, ", next_step_, ": nothing to train");
    }
  }
  if (tc.val_every > 0 && trains) {
    if (validated_at_resume_ && next_step_ == resumed_from_step_) {
      log::info("validation at step ", next_step_, ": recorded by the run that wrote the checkpoint");
    } else {
      PERIGEE_CHECK(validate(next_step_));
    }
  }
  for (;;) {
    while (next_step_ < tc.steps) {
      PERIGEE_CHECK(eclipse_gate());
      StepResult r;
      PERIGEE_CHECK(step(&r));
      if (r.step == first_step) first_loss = r.loss;
      last_loss = r.loss;
      const bool log_this =
          tc.log_every > 0 && (next_step_ == 1 || next_step_ == tc.steps || next_step_ % tc.log_every == 0);
      if (options_.log_steps && log_this) {
        log_step(r);
      }
      PERIGEE_CHECK(metrics_.write(
          {metric_text("type", "train"), metric("step", static_cast<double>(r.step + 1)),
           metric("loss", r.loss), metric("lr", r.lr), metric("grad_norm", r.grad_norm), metric("ms", r.ms),
           metric("comm_ms", r.comm_ms), metric("link_ms", r.link_ms), metric("tokens_per_s", r.tokens_per_s),
           metric("buckets", r.buckets), metric("buckets_overlapped", r.buckets_overlapped)}));
      if (tc.val_every > 0 && next_step_ % tc.val_every == 0 && next_step_ != tc.steps) {
        PERIGEE_CHECK(validate(next_step_));
      }
      bool due = false;
      PERIGEE_CHECK(periodic_checkpoint_due(&due));
      bool rolled_back = false;
      if (due) PERIGEE_CHECK(check_replicas_before_checkpoint(&rolled_back));
      // Rank 0 may block here: a synchronous write, or a wait for the previous background write.
      if (due && !rolled_back) PERIGEE_CHECK(checkpoint_fence("a periodic checkpoint", save_checkpoint()));
    }
    // The final checkpoint's replica check may roll back: the steps since are trained again.
    bool rolled_back = false;
    if (checkpoint_enabled_ && last_checkpoint_step_ != next_step_ && consecutive_skips_ == 0) {
      PERIGEE_CHECK(check_replicas_before_checkpoint(&rolled_back));
    }
    if (!rolled_back) break;
  }
  if (checkpoint_enabled_) {
    Status written;
    if (last_checkpoint_step_ != next_step_ && consecutive_skips_ == 0) {
      written = save_checkpoint();
    } else if (last_checkpoint_step_ != next_step_) {  // as during the run: suspect state is never saved
      log::warn("the run ended after ", consecutive_skips_,
                " skipped step(s) in a row (suspect state): no final checkpoint; ",
                last_checkpoint_step_ >= 0 ? str_cat("the newest is step ", last_checkpoint_step_)
                                           : std::string("none was written"));
    }
    if (written.is_ok()) written = finish_checkpoints();
    PERIGEE_CHECK(checkpoint_fence("the final checkpoint", written));
  }
  if (abft_ || injector_ || counters_.triggers > 0 || counters_.replica_checks > 0) {
    const FaultCounters& c = counters_;
    std::vector<MetricField> fields = {metric_text("type", "fault_summary"),
                                       metric("injected", c.injected),
                                       metric("triggers", c.triggers),
                                       metric("transient", c.transient),
                                       metric("reproducible", c.reproducible),
                                       metric("skipped", c.skipped),
                                       metric("replica_checks", c.replica_checks),
                                       metric("replica_repairs", c.replica_repairs),
                                       metric("rollbacks", c.rollbacks),
                                       metric("instabilities", c.instabilities)};
    std::string abft_line;
    if (abft_) {
      const fault::AbftStats& a = abft_->stats();
      abft_line =
          str_cat("; ABFT: ", a.gemms_checked, " GEMM outputs checked, ", a.faults_detected, " detected, ",
                  a.corrected, " corrected, ", a.recomputed, " recomputed, ", a.escalated, " escalated");
      for (auto [k, v] :
           {std::pair{"abft_checked", a.gemms_checked}, std::pair{"abft_detected", a.faults_detected},
            std::pair{"abft_corrected", a.corrected}, std::pair{"abft_recomputed", a.recomputed},
            std::pair{"abft_escalated", a.escalated}}) {
        fields.push_back(metric(k, static_cast<double>(v)));
      }
    }
    log::info("faults (rank 0): ", c.injected, " injected, ", c.triggers, " invariant triggers (",
              c.transient, " transient, ", c.reproducible, " reproducible, ", c.skipped, " updates skipped, ",
              c.instabilities, " applied as instabilities), ", c.replica_checks, " replica checks, ",
              c.replica_repairs, " repairs, ", c.rollbacks, " rollbacks", abft_line);
    PERIGEE_CHECK(metrics_.write(fields));
  }
  if (tc.val_every > 0) PERIGEE_CHECK(validate(next_step_));
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  if (trains) {
    log::info("trained steps ", first_step + 1, "..", tc.steps, " in ", format_duration(seconds), ": loss ",
              fixed(first_loss, 4), " -> ", fixed(last_loss, 4));
  }
  if (comm_->rank() == 0 && tc.sample_tokens > 0) {
    std::string text;
    PERIGEE_CHECK(sample(tc.sample_tokens, &text));
    log::info("sample (", tc.sample_tokens, " bytes, temperature ", tc.sample_temperature, "):\n", "----\n",
              config_.train.sample_prompt, text, "\n----");
  }
  return Status::ok();
}

}  // namespace perigee::runtime
