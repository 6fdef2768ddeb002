// Config schema: one table (section, key, member, allowed range or values, doc) drives TOML
// parsing, command-line overrides, per-key validation, JSON output and the key listing. The per-key
// and cross-field validation (validate_config) is here too.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/config.hpp"
#include "runtime/config_internal.hpp"
#include "runtime/links_setup.hpp"

namespace perigee::runtime {
namespace detail {
namespace {

Range above(double v) {
  return Range{v, true, kInf, false};
}
Range at_least(double v) {
  return Range{v, false, kInf, false};
}
Range closed(double lo, double hi) {
  return Range{lo, false, hi, false};
}
Range half_open(double lo, double hi) {
  return Range{lo, false, hi, true};
}
Range open_closed(double lo, double hi) {
  return Range{lo, true, hi, false};
}

}  // namespace

// Field{"section", "key", <accessor of config.section.key>, doc}; the member's type is the key's type.
// clang-format off
#define PERIGEE_FIELD(sec, name, doc) \
  Field{#sec, #name, [](Config& c) -> FieldRef { return &c.sec.name; }, doc}
// clang-format on

// The schema: every key of every section, in the order of docs/config.md and the JSON output.
// Cross-field rules (n_embd % n_head, seq_len <= context, ...) are in validate_config.
const std::vector<Field>& schema() {
  static const std::vector<Field> fields = {
      // [model]
      PERIGEE_FIELD(model, n_layer, "transformer blocks").in(closed(1, 4096)),
      PERIGEE_FIELD(model, n_head, "attention heads per block; must divide n_embd").in(above(0)),
      PERIGEE_FIELD(model, n_embd, "channels C (embedding width); a multiple of n_head")
          .in(closed(1, 1 << 20)),  // 4 C and the tensor extents stay far inside 32 bits
      PERIGEE_FIELD(model, context, "maximum sequence length (rows of the position embedding)").in(above(0)),
      PERIGEE_FIELD(model, vocab_size, "tokenizer vocabulary size (256 = bytes)").in(above(0)),
      PERIGEE_FIELD(
          model, padded_vocab,
          "embedding/logit rows: 0 = vocab_size rounded up to a multiple of 128, else >= vocab_size")
          .in(at_least(0)),
      // [train]
      PERIGEE_FIELD(train, batch_size,
                    "global batch: sequences per step over all ranks (divisible by the world size)")
          .in(at_least(1)),
      PERIGEE_FIELD(train, micro_batch,
                    "sequences per rank per forward/backward pass, the gradients accumulated over the "
                    "passes of a step (must divide batch_size / world size); 0 = the whole per-rank batch")
          .in(at_least(0)),
      PERIGEE_FIELD(train, recompute,
                    "the backward re-runs each block's forward from the block's input instead of keeping "
                    "every block's activations (same gradients bit for bit; GPT-2 124M: +12 % step time, "
                    "half the memory)"),
      PERIGEE_FIELD(train, seq_len, "tokens per sequence T; <= model.context").in(at_least(1)),
      PERIGEE_FIELD(train, steps, "optimizer steps").in(at_least(1)),
      PERIGEE_FIELD(train, lr, "peak learning rate").in(above(0)),
      PERIGEE_FIELD(train, min_lr_ratio, "cosine decay ends at lr * min_lr_ratio").in(closed(0, 1)),
      PERIGEE_FIELD(train, warmup_steps, "linear warmup steps from 0 to lr").in(at_least(0)),
      PERIGEE_FIELD(train, weight_decay, "AdamW decoupled weight decay, applied to 2-D weights only")
          .in(at_least(0)),
      PERIGEE_FIELD(train, beta1, "AdamW first-moment decay").in(half_open(0, 1)),
      PERIGEE_FIELD(train, beta2, "AdamW second-moment decay").in(half_open(0, 1)),
      PERIGEE_FIELD(train, eps, "AdamW denominator epsilon").in(above(0)),
      PERIGEE_FIELD(train, grad_clip, "global gradient-norm clip; 0 disables").in(at_least(0)),
      PERIGEE_FIELD(train, seed, "seed of parameter init and data order"),
      PERIGEE_FIELD(train, val_every, "validate at the start, every K steps and at the end; 0 disables")
          .in(at_least(0)),
      PERIGEE_FIELD(train, val_batches,
                    "global batches of validation data per evaluation; >= 1 when val_every > 0")
          .in(at_least(0)),
      PERIGEE_FIELD(train, log_every, "log a training line at step 1, every K steps and the last; 0 = none")
          .in(at_least(0)),
      PERIGEE_FIELD(train, sample_tokens, "tokens rank 0 samples at the end of training; 0 disables")
          .in(at_least(0)),
      PERIGEE_FIELD(train, sample_temperature, "softmax temperature of sampling").in(above(0)),
      PERIGEE_FIELD(train, sample_prompt, "text the final sample continues (\"\" = start from a newline)"),
      // [data]
      PERIGEE_FIELD(data, train_file, "training token file (written by perigee_data)").required(),
      PERIGEE_FIELD(data, val_file, "validation token file; needed when train.val_every > 0"),
      // [device]
      PERIGEE_FIELD(device, device, "where to compute: cpu, cuda, or auto (cuda when a GPU is present)")
          .one_of({"cpu", "cuda", "auto"}),
      PERIGEE_FIELD(device, threads, "CPU threads per rank; 0 = hardware threads / ranks on this host")
          .in(closed(0, kernels::cpu::CpuBackend::kMaxThreads)),
      PERIGEE_FIELD(device, precision,
                    "CUDA GEMM and attention arithmetic: fp32, tf32 (TF32 GEMMs) or bf16 (bf16 tensor cores, "
                    "fp32 accumulation; storage as activations and logits say); the CPU computes in fp32")
          .one_of({"fp32", "tf32", "bf16"}),
      PERIGEE_FIELD(device, activations,
                    "storage of the activations that feed GEMMs (LayerNorm, attention and GELU outputs, the "
                    "attention and GELU input gradients): fp32, bf16 (half the memory and traffic, values "
                    "rounded once), or auto (bf16 on CUDA with precision = bf16 and abft off, else fp32)")
          .one_of({"auto", "fp32", "bf16"}),
      PERIGEE_FIELD(device, logits,
                    "storage of the logits [B*T, padded_vocab] (the LM head GEMM's output): fp32, bf16 "
                    "(needs bf16 activations; the cross-entropy widens them and writes their bf16 gradient "
                    "in place: half the memory and traffic of the largest tensor), or auto (the "
                    "activations' storage)")
          .one_of({"auto", "fp32", "bf16"}),
      PERIGEE_FIELD(
          device, gelu_fusion,
          "CUDA with precision = bf16: the MLP's c_fc GEMM applies GELU in its cuBLASLt epilogue and "
          "the c_proj backward applies GELU's derivative in its dinp GEMM (one GEMM each, no GELU "
          "kernels; unfused where cuBLASLt has no such algorithm); on, off, or auto (on with precision "
          "= bf16 and abft off); ignored on the CPU")
          .switch_of_bool(),
      PERIGEE_FIELD(device, weight_cache,
                    "CUDA with precision = bf16: round the weights into a bf16 copy once per forward pass (2 "
                    "bytes per parameter) that the GEMMs read, instead of rounding each GEMM's weight in the "
                    "forward and again in the backward; the same bits either way; ignored otherwise"),
      PERIGEE_FIELD(
          device, memory_check,
          "before allocating, add up what the ranks on this host will hold in each memory (host RAM, "
          "GPU) and refuse the job when it exceeds what is free there, listing the sizes; false: "
          "a warning, and the job tries anyway"),
      // [comm]
      PERIGEE_FIELD(
          comm, backend,
          "gradient all-reduce: mpi, nccl (GPU buffers), links (emulated laser links, [links]) or auto "
          "(nccl on GPUs when it can run, else mpi)")
          .one_of({"mpi", "nccl", "links", "auto"}),
      PERIGEE_FIELD(comm, timeout_s,
                    "seconds a collective may take before the job is declared hung (dead or stopped rank); "
                    "at least 1, since a shorter deadline fails healthy collectives as dead ranks")
          .in(at_least(1)),
      PERIGEE_FIELD(comm, algorithm,
                    "all-reduce algorithm over links: ring, rabenseifner, torus2d, hierarchical, "
                    "double_binary_tree, native or auto (cheapest predicted for the topology and size)")
          .one_of(
              {"auto", "ring", "rabenseifner", "torus2d", "hierarchical", "double_binary_tree", "native"}),
      PERIGEE_FIELD(comm, bucket_mb,
                    "MiB of gradients per all-reduce started during the backward pass (overlap with compute, "
                    "mpi and nccl); 0 = one all-reduce after the backward pass")
          .in(closed(0, 1 << 20)),  // 1 TiB; above, the byte count overflows its size_t conversion
      PERIGEE_FIELD(
          comm, grad_dtype,
          "gradients on the wire: fp32, or bf16 (rounded to bf16 for the all-reduce, half the bytes; "
          "summed as bf16, averaged back into fp32)")
          .one_of({"fp32", "bf16"}),
      // [links]
      PERIGEE_FIELD(
          links, topology,
          "constellation: walker_delta, walker_star, starlink_shell1, starlink_plane, grid, cluster or file")
          .one_of({"walker_delta", "walker_star", "starlink_shell1", "starlink_plane", "grid", "cluster",
                   "file"}),
      PERIGEE_FIELD(links, planes, "orbital planes (walker_*, grid)").in(at_least(1)),
      PERIGEE_FIELD(links, sats_per_plane, "satellites per plane (walker_*, grid)").in(at_least(1)),
      PERIGEE_FIELD(links, inclination_deg, "orbit inclination (walker_*)").in(closed(0, 180)),
      PERIGEE_FIELD(links, altitude_km, "circular orbit altitude (walker_*)").in(above(0)),
      PERIGEE_FIELD(links, phasing, "Walker phasing F, 0 <= F < planes").in(at_least(0)),
      PERIGEE_FIELD(links, bandwidth_gbps, "laser link bandwidth per direction, Gb/s").in(above(0)),
      PERIGEE_FIELD(links, setup_delay_s, "seconds a link needs after (re)gaining line of sight")
          .in(at_least(0)),
      PERIGEE_FIELD(links, fixed_latency_ms, "per-hop latency of the abstract grid topology").in(at_least(0)),
      PERIGEE_FIELD(links, cross_plane_max_lat_deg, "cross-plane links off above this latitude (walker_star)")
          .in(closed(0, 90)),
      PERIGEE_FIELD(links, file, "graph file of topology = file (docs/topologies.md)"),
      PERIGEE_FIELD(links, outages, "links down, \"a-b@start:end;...\" in emulated seconds (\"\" = none)"),
      PERIGEE_FIELD(links, mapping, "ranks onto satellites: linear, spread or grid")
          .one_of({"linear", "spread", "grid"}),
      PERIGEE_FIELD(links, ranks_per_satellite, "GPUs (ranks) per satellite").in(at_least(1)),
      PERIGEE_FIELD(links, time_scale, "wall seconds per emulated second (0.01 = 100x faster)").in(above(0)),
      PERIGEE_FIELD(links, start_s, "emulated time (orbit position, s) when the run starts").in(at_least(0)),
      PERIGEE_FIELD(links, overhead_us, "modelled software cost per message, microseconds").in(at_least(0)),
      // [checkpoint]
      PERIGEE_FIELD(checkpoint, dir, "checkpoint folder (\"\" = <run dir>/checkpoints)"),
      PERIGEE_FIELD(checkpoint, every_steps, "checkpoint every K steps (and at the end); 0 = off")
          .in(at_least(0)),
      PERIGEE_FIELD(checkpoint, every_seconds, "checkpoint every T seconds of training; 0 = off")
          .in(at_least(0)),
      PERIGEE_FIELD(checkpoint, keep_last, "checkpoints kept (retention)").in(at_least(1)),
      PERIGEE_FIELD(checkpoint, async, "write in a background thread while training goes on"),
      PERIGEE_FIELD(checkpoint, timeout_s,
                    "seconds the other ranks wait for rank 0's blocking checkpoint work (eclipse, final or "
                    "synchronous writes) instead of [comm] timeout_s; 0 = no limit, else at least 1")
          .in(at_least(0)),
      PERIGEE_FIELD(checkpoint, resume,
                    "auto: continue from the newest good checkpoint in dir; never: start fresh")
          .one_of({"auto", "never"}),
      PERIGEE_FIELD(checkpoint, verify,
                    "read each new file back and verify it before it replaces older ones: auto (when "
                    "keep_last = 1, the only copy), always, never")
          .one_of({"auto", "always", "never"}),
      // [fault]
      PERIGEE_FIELD(fault, abft,
                    "checksum-verify every training GEMM (ABFT: detect, locate, correct, recompute)"),
      PERIGEE_FIELD(fault, plan, "fault-injection plan file (docs/faults.md); \"\" = none"),
      PERIGEE_FIELD(fault, loss_spike, "loss above factor * window mean triggers the ladder; 0 = off")
          .in(at_least(0)),
      PERIGEE_FIELD(fault, grad_spike, "grad norm above factor * window mean triggers the ladder; 0 = off")
          .in(at_least(0)),
      PERIGEE_FIELD(fault, window, "steps in the invariants' moving window").in(at_least(1)),
      PERIGEE_FIELD(fault, rerun, "on a trigger, re-run the step to tell transient from reproducible"),
      PERIGEE_FIELD(fault, digest_every,
                    "cross-replica digest of parameters and moments every K steps; 0 = off")
          .in(at_least(0)),
      // [orbit]
      PERIGEE_FIELD(orbit, eclipse,
                    "off, checkpoint (right before each shadow entry) or pause (also no compute in shadow)")
          .one_of({"off", "checkpoint", "pause"}),
      PERIGEE_FIELD(orbit, altitude_km, "circular orbit altitude (100 km, the edge of space, to 100,000 km)")
          .in(closed(100, 100000)),
      PERIGEE_FIELD(orbit, beta_deg, "sun angle to the orbit plane (0 = longest shadow)").in(closed(-90, 90)),
      PERIGEE_FIELD(orbit, phase_deg, "angle from orbit noon at epoch_unix (180 = mid-shadow)")
          .in(half_open(0, 360)),
      PERIGEE_FIELD(orbit, time_scale,
                    "mission seconds per wall second (60: one orbit in about 96 s; at most 10,000)")
          .in(open_closed(0, 10000)),
      PERIGEE_FIELD(orbit, margin_s, "mission seconds before shadow entry at which to checkpoint")
          .in(at_least(0)),
      PERIGEE_FIELD(orbit, epoch_unix,
                    "Unix time (s) at which the satellite is at phase_deg; 0 = the run's first launch, "
                    "kept in <checkpoint dir>/orbit.json so that relaunches continue the orbit")
          .in(at_least(0)),
      // [run]
      PERIGEE_FIELD(run, dir, "root folder of run directories").required(),
      PERIGEE_FIELD(run, name, "run name (\"\" = run-<timestamp>)"),
      PERIGEE_FIELD(run, progress, "progress bar: auto (on a terminal), on or off")
          .one_of({"auto", "on", "off"}),
  };
  return fields;
}

#undef PERIGEE_FIELD

// Section names in schema order.
const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Field& f : schema()) {
      if (std::find(out.begin(), out.end(), f.section) == out.end()) out.emplace_back(f.section);
    }
    return out;
  }();
  return names;
}

bool is_section(std::string_view name) {
  const auto& names = section_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

const Field* find_field(std::string_view section, std::string_view key) {
  for (const Field& f : schema()) {
    if (f.section == section && f.key == key) return &f;
  }
  return nullptr;
}

std::vector<std::string> keys_of(std::string_view section) {
  std::vector<std::string> out;
  for (const Field& f : schema()) {
    if (f.section == section) out.emplace_back(f.key);
  }
  return out;
}

}  // namespace detail

using namespace detail;

namespace {

// Checks one key against its schema rule; returns the reason on failure.
std::optional<std::string> check_field(const Field& f, const Config& config) {
  return std::visit(
      [&](const auto* v) -> std::optional<std::string> {
        using T = std::remove_cv_t<std::remove_pointer_t<decltype(v)>>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), *v) == f.choices.end()) {
            return str_cat("must be ", describe_choices(f.choices), " (got ", quote(*v), ")");
          }
          if (f.non_empty && v->empty()) return std::string("must not be empty");
        } else if constexpr (!std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, double>) {
            if (!std::isfinite(*v)) {
              const std::string rule = describe_range(f.range);
              return str_cat("must be a finite number", rule.empty() ? "" : " " + rule, " (got ",
                             format_double(*v), ")");
            }
          }
          if (f.range.bounded() && !f.range.contains(static_cast<double>(*v))) {
            return str_cat("must be ", describe_range(f.range), " (got ", show_value(*v), ")");
          }
        }
        return std::nullopt;
      },
      f.get(config));
}

}  // namespace

Status validate_config(Config* config) {
  return validate_config(config, {});
}

Status validate_config(Config* config, const std::set<std::string>& command_line_keys) {
  PERIGEE_REQUIRE(config != nullptr, StatusCode::kInvalidArgument, "validate_config: config is null");
  std::vector<std::string> errors;
  for (const Field& f : schema()) {
    if (auto reason = check_field(f, *config))
      errors.push_back(str_cat("[", f.section, "] ", f.key, ": ", *reason));
  }

  // Cross-field rules, each checked only when the keys it reads passed their own rules.
  ModelConfig& m = config->model;
  const TrainConfig& t = config->train;
  if (m.n_head > 0 && m.n_embd > 0 && m.n_embd % m.n_head != 0) {
    errors.push_back(str_cat("[model] n_embd: must be a multiple of [model] n_head = ", m.n_head, " (got ",
                             m.n_embd, ")"));
  }
  if (m.context > 0 && t.seq_len > m.context) {
    errors.push_back(str_cat("[train] seq_len: must be in [1, [model] context] = [1, ", m.context, "] (got ",
                             t.seq_len, ")"));
  }
  // The optimizer runs in fp32: a value the double range check passes may still round to 1 or 0.
  for (auto [key, beta] : {std::pair{"beta1", t.beta1}, std::pair{"beta2", t.beta2}}) {
    if (beta >= 0.0 && beta < 1.0 && static_cast<float>(beta) >= 1.0f) {
      errors.push_back(str_cat("[train] ", key,
                               ": rounds to 1 in fp32, the optimizer's precision; must be < ",
                               "1 - 2^-25 (got ", show_value(beta), ")"));
    }
  }
  if (t.eps > 0.0 && static_cast<float>(t.eps) < std::numeric_limits<float>::min()) {
    errors.push_back(str_cat("[train] eps: below the smallest normal fp32 number (",
                             std::numeric_limits<float>::min(), "), the optimizer's precision (got ",
                             show_value(t.eps), ")"));
  }
  for (auto [key, value] : {std::pair{"lr", t.lr}, std::pair{"weight_decay", t.weight_decay}}) {
    if (std::isfinite(value) && !std::isfinite(static_cast<float>(value))) {
      errors.push_back(str_cat("[train] ", key, ": overflows fp32, the optimizer's precision (got ",
                               show_value(value), ")"));
    }
  }
  if (const double ct = config->checkpoint.timeout_s; ct > 0.0 && ct < 1.0) {
    errors.push_back(
        str_cat("[checkpoint] timeout_s: must be 0 (no limit) or at least 1, since a shorter "
                "deadline fails a healthy rank 0's checkpoint I/O as a dead rank (got ",
                ct, ")"));
  }
  if (t.batch_size > 0 && t.seq_len > 0 &&
      static_cast<int64_t>(t.batch_size) * t.seq_len > std::numeric_limits<int32_t>::max()) {
    errors.push_back(
        str_cat("[train] batch_size: batch_size x seq_len = ", static_cast<int64_t>(t.batch_size) * t.seq_len,
                " tokens per step exceeds 2^31 - 1, the kernels' token index range (got ", t.batch_size,
                " x ", t.seq_len, ")"));
  }
  if (t.batch_size > 0 && t.micro_batch > t.batch_size) {
    errors.push_back(str_cat("[train] micro_batch: must be <= [train] batch_size = ", t.batch_size, " (got ",
                             t.micro_batch, "; it is per rank, and must divide batch_size / world size)"));
  }
  if (config->comm.backend != "links" && config->comm.algorithm != "auto" &&
      config->comm.algorithm != "native") {
    errors.push_back(
        str_cat("[comm] algorithm: \"", config->comm.algorithm,
                "\" needs [comm] backend = \"links\" (the mpi and nccl backends run their own)"));
  }
  if (config->links.topology == "file" && config->links.file.empty()) {
    errors.push_back("[links] file: must name the graph file when [links] topology = \"file\"");
  }
  // Found here, not only when the links communicator is set up (perigee-run checks configs up front).
  std::vector<collectives::links::Outage> outages;
  if (const Status o = parse_outages(config->links.outages, &outages); !o.is_ok())
    errors.push_back(o.message());
  const LinksConfig& lc = config->links;
  if ((lc.topology == "walker_delta" || lc.topology == "walker_star") && lc.planes > 1 &&
      lc.phasing >= lc.planes) {
    errors.push_back(str_cat("[links] phasing: Walker F must be < [links] planes = ", lc.planes, " (got ",
                             lc.phasing, ")"));
  }
  const DeviceConfig& dev = config->device;
  if (dev.activations == "bf16" && config->fault.abft) {
    errors.push_back(
        "[device] activations: \"bf16\" cannot run with [fault] abft = true (the ABFT checksums read fp32 "
        "GEMM operands); use activations = \"fp32\" or \"auto\", or turn abft off");
  }
  // "auto" activations are bf16 wherever bf16 logits are set, unless abft forbids them.
  if (dev.logits == "bf16" &&
      (dev.activations == "fp32" || (dev.activations == "auto" && config->fault.abft))) {
    errors.push_back(
        str_cat("[device] logits: \"bf16\" needs bf16 activations (the logits' gradient, of the "
                "activations' type, overwrites them), and [device] activations = \"",
                dev.activations, "\"", config->fault.abft ? " with [fault] abft = true" : "",
                " gives fp32 ones; set logits = \"fp32\" or \"auto\""));
  }
  if (dev.gelu_fusion == "on" && dev.precision != "bf16") {
    errors.push_back(
        str_cat("[device] gelu_fusion: \"on\" needs [device] precision = \"bf16\" (the GELU epilogues are "
                "bf16 tensor-core GEMMs; got precision = \"",
                dev.precision, "\"); use gelu_fusion = \"auto\" or \"off\""));
  }
  if (dev.gelu_fusion == "on" && config->fault.abft) {
    errors.push_back(
        "[device] gelu_fusion: cannot run with [fault] abft = true (a GELU epilogue hides the GEMM output "
        "the checksums verify); use gelu_fusion = \"auto\" or \"off\", or turn abft off");
  }
  if (t.sample_tokens > 0) {
    // The sample's context starts as the prompt's bytes (a newline when empty), each a token.
    const std::string prompt = t.sample_prompt.empty() ? "\n" : t.sample_prompt;
    for (size_t i = 0; i < prompt.size(); ++i) {
      const int token = static_cast<unsigned char>(prompt[i]);
      if (token >= config->model.vocab_size) {
        errors.push_back(str_cat("[train] sample_prompt: byte ", token, " at position ", i,
                                 " is outside the vocabulary [0, ", config->model.vocab_size,
                                 ") of [model] vocab_size; use a prompt of the training data's bytes, or set "
                                 "sample_tokens = 0"));
        break;
      }
    }
  }
  if (t.val_every > 0 && t.val_batches < 1) {
    errors.push_back(str_cat("[train] val_batches: must be >= 1 when [train] val_every > 0 (got ",
                             t.val_batches, ", val_every = ", t.val_every, ")"));
  }
  if (t.val_every > 0 && config->data.val_file.empty()) {
    errors.push_back(str_cat(
        "[data] val_file: must not be empty when [train] val_every > 0 (val_every = ", t.val_every, ")"));
  }
  if (m.vocab_size > 0) {
    constexpr int64_t kMultiple = 128;
    const int64_t rounded = (static_cast<int64_t>(m.vocab_size) + kMultiple - 1) / kMultiple * kMultiple;
    if (m.padded_vocab == 0) {
      if (rounded > std::numeric_limits<int>::max()) {
        errors.push_back(str_cat(
            "[model] vocab_size: must be <= ", std::numeric_limits<int>::max() / kMultiple * kMultiple,
            " so that the derived padded_vocab fits in 32 bits (got ", m.vocab_size, ")"));
      } else {
        m.padded_vocab = static_cast<int>(rounded);
      }
    } else if (m.padded_vocab > 0 && m.padded_vocab < m.vocab_size) {
      errors.push_back(str_cat("[model] padded_vocab: must be 0 (derive) or >= [model] vocab_size = ",
                               m.vocab_size, " (got ", m.padded_vocab, ")"));
    }
  }

  if (errors.empty()) return Status::ok();
  const std::string label = config->source.empty() ? "config" : config->source;
  // Each "[section] key" a message names, in order: the first is the key the rule is about, the others
  // are the keys a cross-field rule compares it with.
  const auto named_keys = [](const std::string& e) {
    std::vector<std::string> keys;
    for (size_t open = e.find('['); open != std::string::npos; open = e.find('[', open + 1)) {
      const size_t close = e.find("] ", open);
      if (close == std::string::npos) break;
      const size_t end = e.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789", close + 2);
      const std::string section = e.substr(open + 1, close - open - 1);
      if (section.find_first_of(" [") != std::string::npos || end == close + 2) continue;
      keys.push_back(
          str_cat(section, ".", e.substr(close + 2, end == std::string::npos ? end : end - close - 2)));
    }
    return keys;
  };
  for (std::string& e : errors) {
    // An override's value is the command line's, not the file's; a cross-field rule broken by an
    // override of the other key is the file's and the command line's together.
    const std::vector<std::string> keys = named_keys(e);
    const bool first_overridden = !keys.empty() && command_line_keys.count(keys.front()) > 0;
    const bool other_overridden =
        std::any_of(keys.begin() + (keys.empty() ? 0 : 1), keys.end(),
                    [&](const std::string& k) { return command_line_keys.count(k) > 0; });
    const std::string where = first_overridden   ? std::string("command line")
                              : other_overridden ? str_cat(label, " with the command line")
                                                 : label;
    e = str_cat(where, ": ", e);
  }
  return make_error(StatusCode::kInvalidArgument, str_join(errors, "\n"));
}

std::vector<std::string> config_warnings(const Config& config) {
  std::vector<std::string> warnings;
  const TrainConfig& t = config.train;
  if (t.warmup_steps > 0 && t.warmup_steps >= t.steps) {
    // learning_rate() peaks at the last step, lr * steps / warmup_steps, and never decays.
    const double peak = t.lr * static_cast<double>(t.steps) / static_cast<double>(t.warmup_steps);
    warnings.push_back(str_cat("[train] warmup_steps = ", t.warmup_steps, " >= [train] steps = ", t.steps,
                               ": the learning rate only ramps up (to ", peak,
                               " at the last step, against lr = ", t.lr,
                               ") and never decays; lower warmup_steps below steps"));
  }
  return warnings;
}

}  // namespace perigee::runtime
