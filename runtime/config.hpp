// Config: the resolved settings of one training run. Read from a TOML file, then command-line
// overrides (--section.key=value), then validated; every key is documented in docs/config.md.
// Unknown sections/keys and bad values are errors that name the file, the key and the reason.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::runtime {

struct ModelConfig {
  int n_layer = 4;
  int n_head = 4;
  int n_embd = 128;      // channels C; must be divisible by n_head
  int context = 128;     // maximum sequence length (position embeddings)
  int vocab_size = 256;  // byte-level tokenizer
  int padded_vocab = 0;  // 0 = vocab_size rounded up to a multiple of 128 (derived)

  bool operator==(const ModelConfig&) const = default;
};

struct TrainConfig {
  int batch_size = 16;     // GLOBAL batch (sequences per step over all ranks); divisible by world size
  bool recompute = false;  // the backward re-runs each block's forward instead of keeping its activations
  int micro_batch = 0;     // sequences per rank per forward/backward pass (gradient accumulation); 0 = all
  int seq_len = 128;       // T, <= model.context
  int64_t steps = 300;
  double lr = 1e-3;           // peak learning rate
  double min_lr_ratio = 0.1;  // cosine decays to lr * min_lr_ratio
  int64_t warmup_steps = 30;  // linear warmup from 0
  double weight_decay = 0.1;  // decoupled, applied to 2-D weights only
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;  // global-norm clip; 0 disables
  uint64_t seed = 1337;    // parameter init and data order
  int64_t val_every = 50;  // validation every K steps (and at the end); 0 disables
  int val_batches = 4;     // global batches of validation data per evaluation
  int64_t log_every = 1;
  int sample_tokens = 200;  // text sampled by rank 0 at the end; 0 disables
  double sample_temperature = 0.8;
  std::string sample_prompt = "";

  bool operator==(const TrainConfig&) const = default;
};

struct DataConfig {
  std::string train_file = "data/fortunes_train.bin";
  std::string val_file = "data/fortunes_val.bin";

  bool operator==(const DataConfig&) const = default;
};

struct DeviceConfig {
  std::string device = "auto";     // "cpu" | "cuda" | "auto"
  int threads = 0;                 // CPU threads per rank; 0 = hardware threads / ranks on this host
  std::string precision = "fp32";  // CUDA GEMMs and attention: "fp32" | "tf32" | "bf16" (the CPU is fp32)
  // "auto" below: the fastest choice for the device, precision and [fault] abft (resolve_device_auto in
  // runtime/device.hpp): bf16 storage and GELU epilogues on CUDA with precision bf16 and abft off.
  std::string activations = "auto";  // storage of the GEMM-operand activations: "auto" | "fp32" | "bf16"
  std::string logits = "auto";       // storage of the logits and their gradient: "auto" | "fp32" | "bf16"
  std::string gelu_fusion = "auto";  // GELU in the MLP GEMMs' cuBLASLt epilogues: "auto" | "on" | "off"
  bool weight_cache = true;          // CUDA with precision bf16: GEMMs read a bf16 copy made once per pass
  bool memory_check = true;          // refuse at setup a job that cannot fit in the free memory; false: warn

  bool operator==(const DeviceConfig&) const = default;
};

struct CommConfig {
  std::string backend = "auto";     // "mpi" | "nccl" | "links" | "auto" (see runtime/comm_setup.hpp)
  double timeout_s = 60.0;          // a collective not done after this long fails (dead/stopped peer)
  std::string algorithm = "auto";   // links: ring | rabenseifner | torus2d | hierarchical |
                                    // double_binary_tree | native | auto (cheapest predicted)
  double bucket_mb = 25.0;          // gradient buckets overlapped with the backward pass (MiB); 0 = one
                                    // all-reduce after the backward pass
  std::string grad_dtype = "fp32";  // "fp32" | "bf16": what the gradient all-reduce sends (bf16
                                    // halves the bytes; the sums are rounded to bf16)

  bool operator==(const CommConfig&) const = default;
};

// Emulated laser links ([comm] backend = "links"): the constellation, where the ranks sit, and how
// fast emulated time runs. See docs/topologies.md.
struct LinksConfig {
  std::string topology = "starlink_plane";  // walker_delta | walker_star | starlink_shell1 |
                                            // starlink_plane | grid | cluster | file
  int planes = 1;                           // walker_*, grid
  int sats_per_plane = 22;                  // walker_*, grid
  double inclination_deg = 53.0;            // walker_*
  double altitude_km = 550.0;               // walker_*
  int phasing = 0;                          // Walker F
  double bandwidth_gbps = 100.0;            // per link and direction
  double setup_delay_s = 0.0;               // link (re)acquisition time
  double fixed_latency_ms = 1.0;            // grid: per-hop latency
  double cross_plane_max_lat_deg = 90.0;    // walker_star: cross-plane links off above this latitude
  std::string file = "";                    // file: the graph
  std::string outages = "";                 // "a-b@start:end;..." links down (emulated seconds)
  std::string mapping = "linear";           // linear | spread | grid
  int ranks_per_satellite = 1;
  double time_scale = 1.0;   // wall seconds per emulated second (0.01 = 100x faster)
  double start_s = 0.0;      // emulated time (orbit position) when the run starts
  double overhead_us = 0.0;  // modelled software cost per message

  bool operator==(const LinksConfig&) const = default;
};

struct CheckpointConfig {
  std::string dir = "";         // "" = <run dir>/checkpoints
  int64_t every_steps = 0;      // checkpoint every K steps; 0 = off
  double every_seconds = 0.0;   // checkpoint every T seconds of training; 0 = off
  int keep_last = 3;            // retention
  bool async = true;            // background writer thread (training continues during the write)
  double timeout_s = 600.0;     // the other ranks' wait for rank 0's blocking checkpoint work; 0 = none
  std::string resume = "auto";  // "auto": continue from the newest good checkpoint in dir; "never"
  std::string verify =
      "auto";  // read each new file back before publishing it: auto (keep_last 1), always, never

  bool operator==(const CheckpointConfig&) const = default;
};

struct FaultConfig {
  bool abft = false;         // checksum-verify every training GEMM (detect, locate, correct, recompute)
  std::string plan = "";     // fault-injection plan file (docs/faults.md); "" = none
  double loss_spike = 4.0;   // invariant: loss > factor * window mean triggers; 0 = off
  double grad_spike = 20.0;  // invariant: grad norm > factor * window mean triggers; 0 = off
  int window = 20;           // steps in the invariants' moving window
  bool rerun = true;         // on a trigger, re-run the step and compare (transient vs reproducible)
  int64_t digest_every = 0;  // cross-replica parameter/moment digest every K steps; 0 = off

  bool operator==(const FaultConfig&) const = default;
};

struct OrbitConfig {
  std::string eclipse =
      "off";  // "off" | "checkpoint" (right before each shadow) | "pause" (and no compute in shadow)
  double altitude_km = 550.0;  // circular orbit
  double beta_deg = 0.0;       // sun angle to the orbit plane (0 = longest shadow)
  double phase_deg = 0.0;      // angle from orbit noon at epoch_unix (180 = mid-shadow)
  double time_scale = 1.0;     // mission seconds per wall second (60: one orbit in 96 s)
  double margin_s = 60.0;      // mission seconds before shadow entry at which to checkpoint
  double epoch_unix = 0.0;     // Unix time at phase_deg; 0 = the run's first launch (kept in orbit.json)

  bool operator==(const OrbitConfig&) const = default;
};

struct RunConfig {
  std::string dir = "runs";       // run directory root
  std::string name = "";          // run name; "" = "run-<timestamp>"
  std::string progress = "auto";  // "auto" | "on" | "off": progress bar on a terminal

  bool operator==(const RunConfig&) const = default;
};

struct Config {
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  DeviceConfig device;
  CommConfig comm;
  LinksConfig links;
  CheckpointConfig checkpoint;
  FaultConfig fault;
  OrbitConfig orbit;
  RunConfig run;

  std::string source;  // the file it was read from ("" for defaults only)

  bool operator==(const Config&) const = default;
};

// Reads path (TOML), applies overrides ("section.key=value" strings, a leading "--" allowed),
// fills derived values and validates. On error the Status names the file, the key and why.
// An empty path is refused (kInvalidArgument); a missing file is kNotFound. Defaults plus overrides
// alone: parse_config with empty text.
Status load_config(const std::string& path, const std::vector<std::string>& overrides, Config* out);

// Parses TOML text (source_name is used in messages) then the same as load_config.
Status parse_config(const std::string& toml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides, Config* out);

// Applies overrides ("section.key=value", a leading "--" allowed) to config in order; no validation.
// Errors name "command line" and the key (with a did-you-mean suggestion for unknown keys).
Status apply_overrides(const std::vector<std::string>& overrides, Config* config);

// Checks ranges and cross-field rules; fills derived values (model.padded_vocab).
Status validate_config(Config* config);
// The same; an error about a key in `command_line_keys` ("section.key", given as an override) names
// the command line instead of the config file as its source.
Status validate_config(Config* config, const std::set<std::string>& command_line_keys);

// Settings that are valid but most likely not meant (a warmup that outlasts the run, ...), one line
// each, for the log; empty when there is nothing to say. Reads a validated config.
std::vector<std::string> config_warnings(const Config& config);

// The resolved config as pretty JSON text (every key, including defaults and derived values).
std::string config_to_json(const Config& config);

// Whether the run whose config is `stored_json` (a checkpoint's) recorded a validation at `step` before
// writing its checkpoint there: at a multiple of its val_every short of its last step (the loop
// validates, then checkpoints), or at its last step (the final validation follows the final
// checkpoint, so a cut between the two counts as recorded). A resume there does not validate again.
bool validation_recorded_at(const std::string& stored_json, int64_t step);

// The keys ("section.key") whose value in `config` differs from the one in `stored_json` (a
// config_to_json text, e.g. a checkpoint's), one "train.seed: 1 -> 99" line each, in the order given.
// Keys the stored text lacks (an older version's) and a text that does not parse give no line;
// *readable (when given) says whether the text was a JSON object at all.
std::vector<std::string> config_changes(const std::string& stored_json, const Config& config,
                                        const std::vector<std::string>& keys, bool* readable = nullptr);

// One key of the schema, for key listings (--help) and documentation checks.
struct ConfigKeyInfo {
  std::string section;        // "train"
  std::string key;            // "lr"
  std::string type;           // "int" (32-bit), "int64", "uint64", "float", "bool" or "string"
  std::string default_value;  // the default as TOML text: 0.001, "auto"
  std::string allowed;        // the per-key rule: "> 0", "in [0, 1]", "one of cpu, cuda, auto"; "" = any
  std::string doc;            // one line
};

// Every key in schema order (section by section).
std::vector<ConfigKeyInfo> config_schema();

}  // namespace perigee::runtime
