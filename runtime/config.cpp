// Config: one schema table (section, key, member, allowed range or values, doc) drives TOML
// parsing, command-line overrides, per-key validation, JSON output and the key listing.
// toml++ and nlohmann-json stay in this file (neither compiles under nvcc).
#include "runtime/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

namespace perigee::runtime {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------------
// Schema

// Where one key lives inside a Config; the alternative also gives the key's type.
using FieldRef = std::variant<int*, int64_t*, uint64_t*, double*, bool*, std::string*>;

// Numeric bounds of one key (inclusive or exclusive); NaN satisfies none.
struct Range {
  double lo = -kInf;
  bool lo_open = false;
  double hi = kInf;
  bool hi_open = false;

  bool bounded() const { return std::isfinite(lo) || std::isfinite(hi); }
  bool contains(double v) const {
    const bool above_lo = lo_open ? v > lo : v >= lo;
    const bool below_hi = hi_open ? v < hi : v <= hi;
    return above_lo && below_hi;
  }
};

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

struct Field {
  std::string_view section;
  std::string_view key;
  FieldRef (*ref)(Config&);
  std::string_view doc;
  Range range{};                            // numeric keys
  std::vector<std::string_view> choices{};  // string keys: the allowed values (empty = any)
  bool non_empty = false;                   // string keys: "" is not allowed

  Field in(Range r) const {
    Field f = *this;
    f.range = r;
    return f;
  }
  Field one_of(std::initializer_list<std::string_view> values) const {
    Field f = *this;
    f.choices = values;
    return f;
  }
  Field required() const {
    Field f = *this;
    f.non_empty = true;
    return f;
  }
  FieldRef get(Config& config) const { return ref(config); }
  // Read-only access: the reference is only read through.
  FieldRef get(const Config& config) const { return ref(const_cast<Config&>(config)); }
};

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
      PERIGEE_FIELD(model, n_layer, "transformer blocks").in(above(0)),
      PERIGEE_FIELD(model, n_head, "attention heads per block; must divide n_embd").in(above(0)),
      PERIGEE_FIELD(model, n_embd, "channels C (embedding width); a multiple of n_head").in(above(0)),
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
      PERIGEE_FIELD(train, log_every, "log a training line every K steps (and the last); 0 = none")
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
          .in(at_least(0)),
      PERIGEE_FIELD(device, precision,
                    "CUDA GEMM and attention arithmetic: fp32, tf32 (TF32 GEMMs) or bf16 (bf16 tensor cores, "
                    "fp32 accumulation and memory); the CPU computes in fp32")
          .one_of({"fp32", "tf32", "bf16"}),
      // [comm]
      PERIGEE_FIELD(comm, backend,
                    "gradient all-reduce: mpi, nccl (GPU buffers), links (emulated laser links, [links]) or auto "
                    "(nccl on GPUs when it can run, else mpi)")
          .one_of({"mpi", "nccl", "links", "auto"}),
      PERIGEE_FIELD(comm, timeout_s,
                    "seconds a collective may take before the job is declared hung (dead or stopped rank)")
          .in(above(0)),
      PERIGEE_FIELD(comm, algorithm,
                    "all-reduce algorithm over links: ring, rabenseifner, torus2d, hierarchical, "
                    "double_binary_tree, native or auto (cheapest predicted for the topology and size)")
          .one_of({"auto", "ring", "rabenseifner", "torus2d", "hierarchical", "double_binary_tree", "native"}),
      PERIGEE_FIELD(comm, bucket_mb,
                    "MiB of gradients per all-reduce started during the backward pass (overlap with compute, "
                    "mpi and nccl); 0 = one all-reduce after the backward pass")
          .in(at_least(0)),
      PERIGEE_FIELD(comm, grad_dtype,
                    "gradients on the wire: fp32, or bf16 (rounded to bf16 for the all-reduce, half the bytes; "
                    "summed as bf16, averaged back into fp32)")
          .one_of({"fp32", "bf16"}),
      // [links]
      PERIGEE_FIELD(links, topology,
                    "constellation: walker_delta, walker_star, starlink_shell1, starlink_plane, grid, cluster or file")
          .one_of({"walker_delta", "walker_star", "starlink_shell1", "starlink_plane", "grid", "cluster", "file"}),
      PERIGEE_FIELD(links, planes, "orbital planes (walker_*, grid)").in(at_least(1)),
      PERIGEE_FIELD(links, sats_per_plane, "satellites per plane (walker_*, grid)").in(at_least(1)),
      PERIGEE_FIELD(links, inclination_deg, "orbit inclination (walker_*)").in(closed(0, 180)),
      PERIGEE_FIELD(links, altitude_km, "circular orbit altitude (walker_*)").in(above(0)),
      PERIGEE_FIELD(links, phasing, "Walker phasing F, 0 <= F < planes").in(at_least(0)),
      PERIGEE_FIELD(links, bandwidth_gbps, "laser link bandwidth per direction, Gb/s").in(above(0)),
      PERIGEE_FIELD(links, setup_delay_s, "seconds a link needs after (re)gaining line of sight").in(at_least(0)),
      PERIGEE_FIELD(links, fixed_latency_ms, "per-hop latency of the abstract grid topology").in(at_least(0)),
      PERIGEE_FIELD(links, cross_plane_max_lat_deg, "cross-plane links off above this latitude (walker_star)")
          .in(closed(0, 90)),
      PERIGEE_FIELD(links, file, "graph file of topology = file (docs/topologies.md)"),
      PERIGEE_FIELD(links, outages, "links down, \"a-b@start:end;...\" in emulated seconds (\"\" = none)"),
      PERIGEE_FIELD(links, mapping, "ranks onto satellites: linear, spread or grid").one_of({"linear", "spread", "grid"}),
      PERIGEE_FIELD(links, ranks_per_satellite, "GPUs (ranks) per satellite").in(at_least(1)),
      PERIGEE_FIELD(links, time_scale, "wall seconds per emulated second (0.01 = 100x faster)").in(above(0)),
      PERIGEE_FIELD(links, start_s, "emulated time (orbit position, s) when the run starts").in(at_least(0)),
      PERIGEE_FIELD(links, overhead_us, "modelled software cost per message, microseconds").in(at_least(0)),
      // [checkpoint]
      PERIGEE_FIELD(checkpoint, dir, "checkpoint folder (\"\" = <run dir>/checkpoints)"),
      PERIGEE_FIELD(checkpoint, every_steps, "checkpoint every K steps (and at the end); 0 = off").in(at_least(0)),
      PERIGEE_FIELD(checkpoint, every_seconds, "checkpoint every T seconds of training; 0 = off").in(at_least(0)),
      PERIGEE_FIELD(checkpoint, keep_last, "checkpoints kept (retention)").in(at_least(1)),
      PERIGEE_FIELD(checkpoint, async, "write in a background thread while training goes on"),
      PERIGEE_FIELD(checkpoint, resume, "auto: continue from the newest good checkpoint in dir; never: start fresh")
          .one_of({"auto", "never"}),
      // [fault]
      PERIGEE_FIELD(fault, abft, "checksum-verify every training GEMM (ABFT: detect, locate, correct, recompute)"),
      PERIGEE_FIELD(fault, plan, "fault-injection plan file (docs/faults.md); \"\" = none"),
      PERIGEE_FIELD(fault, loss_spike, "loss above factor * window mean triggers the ladder; 0 = off").in(at_least(0)),
      PERIGEE_FIELD(fault, grad_spike, "grad norm above factor * window mean triggers the ladder; 0 = off")
          .in(at_least(0)),
      PERIGEE_FIELD(fault, window, "steps in the invariants' moving window").in(at_least(1)),
      PERIGEE_FIELD(fault, rerun, "on a trigger, re-run the step to tell transient from reproducible"),
      PERIGEE_FIELD(fault, digest_every, "cross-replica digest of parameters and moments every K steps; 0 = off")
          .in(at_least(0)),
      // [orbit]
      PERIGEE_FIELD(orbit, eclipse,
                    "off, checkpoint (right before each shadow entry) or pause (also no compute in shadow)")
          .one_of({"off", "checkpoint", "pause"}),
      PERIGEE_FIELD(orbit, altitude_km, "circular orbit altitude").in(above(0)),
      PERIGEE_FIELD(orbit, beta_deg, "sun angle to the orbit plane (0 = longest shadow)").in(closed(-90, 90)),
      PERIGEE_FIELD(orbit, phase_deg, "angle from orbit noon when the run starts (180 = mid-shadow)")
          .in(half_open(0, 360)),
      PERIGEE_FIELD(orbit, time_scale, "mission seconds per wall second (60: one orbit in about 96 s)").in(above(0)),
      PERIGEE_FIELD(orbit, margin_s, "mission seconds before shadow entry at which to checkpoint").in(at_least(0)),
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

// ---------------------------------------------------------------------------------------------
// Text helpers

template <typename T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, int>) return "int";
  if constexpr (std::is_same_v<T, int64_t>) return "int64";
  if constexpr (std::is_same_v<T, uint64_t>) return "uint64";
  if constexpr (std::is_same_v<T, double>) return "float";
  if constexpr (std::is_same_v<T, bool>) return "bool";
  if constexpr (std::is_same_v<T, std::string>) return "string";
}

template <typename T>
constexpr const char* expected_phrase() {
  if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true or false)";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
}

// Shortest text that reads back as the same double ("0.001", "1e-08", "inf").
std::string format_double(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

// A double as a TOML float literal (always with a '.' or an exponent).
std::string toml_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = format_double(v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// A quoted string with TOML/JSON-style escapes, for messages and TOML output.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string describe_range(const Range& r) {
  const bool lo = std::isfinite(r.lo), hi = std::isfinite(r.hi);
  if (lo && hi) {
    return str_cat("in ", r.lo_open ? "(" : "[", format_double(r.lo), ", ", format_double(r.hi),
                   r.hi_open ? ")" : "]");
  }
  if (lo) return str_cat(r.lo_open ? "> " : ">= ", format_double(r.lo));
  if (hi) return str_cat(r.hi_open ? "< " : "<= ", format_double(r.hi));
  return "";
}

std::string describe_choices(const std::vector<std::string_view>& choices) {
  std::vector<std::string> items(choices.begin(), choices.end());
  return "one of " + join(items, ", ");
}

// ---------------------------------------------------------------------------------------------
// Did-you-mean: optimal-string-alignment distance (adjacent swaps cost 1), case-insensitive.

size_t edit_distance(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// The candidate closest to word, if close enough to be a plausible typo: within a third of the
// length (at least 1), or one a prefix of the other (4+ characters shared).
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& c : candidates) {
    const size_t distance = edit_distance(word, c);
    const size_t limit = std::max<size_t>(1, std::max(word.size(), c.size()) / 3);
    const size_t shared = std::min(word.size(), c.size());
    const bool prefix =
        shared >= 4 && edit_distance(word.substr(0, shared), std::string_view(c).substr(0, shared)) == 0;
    if ((distance <= limit || prefix) && distance < best_distance) {
      best = c;
      best_distance = distance;
    }
  }
  return best;
}

// Suggestion for an unknown key in a file section: a close key of the same section, else the same
// (or a close) key in another section, else the list of the section's keys.
std::string key_hint(std::string_view section, std::string_view key) {
  if (auto same = closest(key, keys_of(section))) return str_cat(" (did you mean ", *same, "?)");
  std::vector<std::string> other_keys;
  for (const Field& f : schema()) {
    if (f.section != section) other_keys.emplace_back(f.key);
  }
  if (auto other = closest(key, other_keys)) {
    for (const Field& f : schema()) {
      if (f.section != section && f.key == *other)
        return str_cat(" (did you mean [", f.section, "] ", f.key, "?)");
    }
  }
  return str_cat(" (keys of [", section, "]: ", join(keys_of(section), ", "), ")");
}

std::string sections_list() {
  std::vector<std::string> items;
  for (const std::string& s : section_names()) items.push_back("[" + s + "]");
  return join(items, ", ");
}

// ---------------------------------------------------------------------------------------------
// Assigning values

// Stores an integer into an integer key; no silent narrowing.
template <typename T>
std::optional<std::string> store_integer(T* dst, int64_t v, const std::string& shown) {
  if constexpr (std::is_same_v<T, int>) {
    constexpr int64_t lo = std::numeric_limits<int>::min(), hi = std::numeric_limits<int>::max();
    if (v < lo || v > hi) {
      return str_cat(shown, " is out of range for a 32-bit integer [", lo, ", ", hi, "]");
    }
    *dst = static_cast<int>(v);
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    if (v < 0) return str_cat("expected ", expected_phrase<T>(), ", got ", shown);
    *dst = static_cast<uint64_t>(v);
  } else {
    *dst = v;
  }
  return std::nullopt;
}

std::string describe_node(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "string " + quote(n.as_string()->get());
    case toml::node_type::integer:
      return str_cat("integer ", n.as_integer()->get());
    case toml::node_type::floating_point:
      return "float " + toml_float(n.as_floating_point()->get());
    case toml::node_type::boolean:
      return n.as_boolean()->get() ? "boolean true" : "boolean false";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

// Sets the key from a TOML value; returns the reason on a type or range error.
std::optional<std::string> set_from_toml(FieldRef ref, const toml::node& n) {
  return std::visit(
      [&](auto* dst) -> std::optional<std::string> {
        using T = std::remove_pointer_t<decltype(dst)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (const auto* s = n.as_string()) {
            *dst = s->get();
            return std::nullopt;
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          if (const auto* b = n.as_boolean()) {
            *dst = b->get();
            return std::nullopt;
          }
        } else if constexpr (std::is_same_v<T, double>) {
          if (const auto* i = n.as_integer()) {
            *dst = static_cast<double>(i->get());
            return std::nullopt;
          }
          if (const auto* f = n.as_floating_point()) {
            if (!std::isfinite(f->get())) return "expected a finite number, got " + describe_node(n);
            *dst = f->get();
            return std::nullopt;
          }
        } else {
          if (const auto* i = n.as_integer()) return store_integer(dst, i->get(), describe_node(n));
        }
        return str_cat("expected ", expected_phrase<T>(), ", got ", describe_node(n));
      },
      ref);
}

bool parse_double(std::string_view text, double* out) {
  if (text.size() > 1 && text[0] == '+' && text[1] != '-') text.remove_prefix(1);
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Sets the key from override text, parsed by the key's type; returns the reason on error.
std::optional<std::string> set_from_text(FieldRef ref, std::string_view raw) {
  return std::visit(
      [&](auto* dst) -> std::optional<std::string> {
        using T = std::remove_pointer_t<decltype(dst)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *dst = std::string(raw);
          return std::nullopt;
        } else {
          const std::string_view text = trim(raw);
          const std::string shown = quote(text);
          const std::string wrong = str_cat("expected ", expected_phrase<T>(), ", got ", shown);
          if constexpr (std::is_same_v<T, bool>) {
            if (text != "true" && text != "false") return wrong;
            *dst = text == "true";
          } else if constexpr (std::is_same_v<T, double>) {
            double v = 0;
            if (!parse_double(text, &v)) return wrong;
            if (!std::isfinite(v)) return str_cat("expected a finite number, got ", shown);
            *dst = v;
          } else {
            std::string_view digits = text;
            if (digits.size() > 1 && digits[0] == '+' && digits[1] != '-') digits.remove_prefix(1);
            using Parsed = std::conditional_t<std::is_same_v<T, uint64_t>, uint64_t, int64_t>;
            Parsed v = 0;
            auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
            const bool whole = end == digits.data() + digits.size() && !digits.empty();
            if (ec == std::errc::result_out_of_range && whole) {
              return str_cat(shown, " is out of range for ",
                             std::is_same_v<T, uint64_t> ? "an unsigned 64-bit" : "a 64-bit", " integer [",
                             std::numeric_limits<Parsed>::min(), ", ", std::numeric_limits<Parsed>::max(),
                             "]");
            }
            if (ec != std::errc() || !whole) return wrong;
            if constexpr (std::is_same_v<T, uint64_t>) {
              *dst = v;
            } else {
              return store_integer(dst, v, shown);
            }
          }
          return std::nullopt;
        }
      },
      ref);
}

// ---------------------------------------------------------------------------------------------
// Reading a TOML document

struct Issue {
  int64_t line = 0;  // 0 = unknown
  std::string text;
};

int64_t line_of(const toml::key& key, const toml::node& node) {
  if (key.source().begin.line > 0) return key.source().begin.line;
  return node.source().begin.line;
}

Status read_toml(std::string_view text, const std::string& label, Config* config) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(label));
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return make_error(StatusCode::kInvalidArgument, label, ":", at.line, ":", at.column,
                      ": TOML syntax error: ", e.description());
  }

  std::vector<Issue> issues;
  for (auto&& [name, node] : root) {
    const int64_t line = line_of(name, node);
    const std::string section(name.str());
    if (!is_section(section)) {
      if (node.is_table()) {
        auto near = closest(section, section_names());
        issues.push_back({line, str_cat("unknown section [", section, "]",
                                        near ? str_cat(" (did you mean [", *near, "]?)")
                                             : str_cat(" (sections: ", sections_list(), ")"))});
      } else {
        std::vector<std::string> all_keys;
        for (const Field& f : schema()) all_keys.emplace_back(f.key);
        std::string hint = str_cat(" (every key belongs to a section: ", sections_list(), ")");
        if (auto near = closest(section, all_keys)) {
          for (const Field& f : schema()) {
            if (f.key == *near) {
              hint = str_cat(" (did you mean [", f.section, "] ", f.key, "?)");
              break;
            }
          }
        }
        issues.push_back({line, str_cat("key ", section, " is outside any section", hint)});
      }
      continue;
    }
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      issues.push_back(
          {line, str_cat("[", section, "] must be a section (a table), got ", describe_node(node))});
      continue;
    }
    for (auto&& [key_name, value] : *table) {
      const std::string key(key_name.str());
      const int64_t key_line = line_of(key_name, value);
      const Field* field = find_field(section, key);
      if (field == nullptr) {
        issues.push_back({key_line, str_cat("unknown key [", section, "] ", key, key_hint(section, key))});
        continue;
      }
      if (auto reason = set_from_toml(field->get(*config), value)) {
        issues.push_back({key_line, str_cat("[", section, "] ", key, ": ", *reason)});
      }
    }
  }
  if (issues.empty()) return Status::ok();

  std::stable_sort(issues.begin(), issues.end(),
                   [](const Issue& a, const Issue& b) { return a.line < b.line; });
  std::vector<std::string> lines;
  for (const Issue& issue : issues) {
    lines.push_back(issue.line > 0 ? str_cat(label, ":", issue.line, ": ", issue.text)
                                   : str_cat(label, ": ", issue.text));
  }
  return make_error(StatusCode::kInvalidArgument, join(lines, "\n"));
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

template <typename T>
std::string show_value(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return quote(v);
  } else if constexpr (std::is_same_v<T, double>) {
    return format_double(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else {
    return std::to_string(v);
  }
}

// The per-key rule of one field ("" when none).
std::string allowed_text(const Field& f) {
  if (!f.choices.empty()) return describe_choices(f.choices);
  if (f.non_empty) return "non-empty";
  return describe_range(f.range);
}

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

// ---------------------------------------------------------------------------------------------
// Public API

Status apply_overrides(const std::vector<std::string>& overrides, Config* config) {
  PERIGEE_REQUIRE(config != nullptr, StatusCode::kInvalidArgument, "apply_overrides: config is null");
  std::vector<std::string> errors;
  for (const std::string& raw : overrides) {
    std::string_view text = trim(raw);
    if (text.starts_with("--")) text.remove_prefix(2);
    const size_t eq = text.find('=');
    if (eq == std::string_view::npos) {
      errors.push_back(
          str_cat("command line: override ", quote(raw), " has no value; expected section.key=value"));
      continue;
    }
    const std::string name(trim(text.substr(0, eq)));
    const std::string_view value = text.substr(eq + 1);
    const size_t dot = name.find('.');
    const Field* field = dot == std::string::npos
                             ? nullptr
                             : find_field(name.substr(0, dot), std::string_view(name).substr(dot + 1));
    if (field == nullptr) {
      std::vector<std::string> dotted, bare;
      for (const Field& f : schema()) {
        dotted.push_back(str_cat(f.section, ".", f.key));
        bare.emplace_back(f.key);
      }
      std::optional<std::string> near = closest(name, dotted);
      if (!near) {
        // Right key, wrong or missing section: compare the part after the last dot with every key.
        const std::string_view tail = std::string_view(name).substr(dot == std::string::npos ? 0 : dot + 1);
        if (auto key = closest(tail, bare)) {
          for (const Field& f : schema()) {
            if (f.key == *key) {
              near = str_cat(f.section, ".", f.key);
              break;
            }
          }
        }
      }
      std::string hint;
      if (near) {
        hint = str_cat(" (did you mean ", *near, "?)");
      } else if (dot != std::string::npos && is_section(name.substr(0, dot))) {
        hint =
            str_cat(" (keys of [", name.substr(0, dot), "]: ", join(keys_of(name.substr(0, dot)), ", "), ")");
      } else {
        hint = str_cat(" (sections: ", join(section_names(), ", "), ")");
      }
      errors.push_back(str_cat("command line: unknown key ", name.empty() ? "\"\"" : name, hint));
      continue;
    }
    if (auto reason = set_from_text(field->get(*config), value)) {
      errors.push_back(str_cat("command line: ", name, "=", value, ": ", *reason));
    }
  }
  if (!errors.empty()) return make_error(StatusCode::kInvalidArgument, join(errors, "\n"));
  return Status::ok();
}

Status validate_config(Config* config) {
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
  if (config->comm.backend != "links" && config->comm.algorithm != "auto" && config->comm.algorithm != "native") {
    errors.push_back(str_cat("[comm] algorithm: \"", config->comm.algorithm,
                             "\" needs [comm] backend = \"links\" (the mpi and nccl backends run their own)"));
  }
  if (config->links.topology == "file" && config->links.file.empty()) {
    errors.push_back("[links] file: must name the graph file when [links] topology = \"file\"");
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
  for (std::string& e : errors) e = str_cat(label, ": ", e);
  return make_error(StatusCode::kInvalidArgument, join(errors, "\n"));
}

Status parse_config(const std::string& toml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides, Config* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "parse_config: out is null");
  Config config;
  config.source = source_name;
  PERIGEE_CHECK(read_toml(toml_text, source_name.empty() ? std::string("<config>") : source_name, &config));
  PERIGEE_CHECK(apply_overrides(overrides, &config));
  PERIGEE_CHECK(validate_config(&config));
  *out = std::move(config);
  return Status::ok();
}

Status load_config(const std::string& path, const std::vector<std::string>& overrides, Config* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "load_config: out is null");
  if (path.empty()) {
    Config config;
    PERIGEE_CHECK(apply_overrides(overrides, &config));
    PERIGEE_CHECK(validate_config(&config));
    *out = std::move(config);
    return Status::ok();
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  PERIGEE_REQUIRE(fs::exists(st), StatusCode::kNotFound, "config file not found: ", path);
  PERIGEE_REQUIRE(!fs::is_directory(st), StatusCode::kInvalidArgument, "config path is a directory: ", path);
  std::ifstream in(path, std::ios::binary);
  PERIGEE_REQUIRE(in.is_open(), StatusCode::kIoError, "cannot open config file ", path, ": ",
                  std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  PERIGEE_REQUIRE(!in.bad(), StatusCode::kIoError, "cannot read config file ", path, ": ",
                  std::strerror(errno));
  PERIGEE_CHECK(parse_config(text.str(), path, overrides, out));
  return Status::ok();
}

std::string config_to_json(const Config& config) {
  nlohmann::ordered_json root;
  root["source"] = config.source;
  for (const Field& f : schema()) {
    std::visit([&](const auto* v) { root[std::string(f.section)][std::string(f.key)] = *v; }, f.get(config));
  }
  return root.dump(2);
}

std::vector<ConfigKeyInfo> config_schema() {
  const Config defaults;
  std::vector<ConfigKeyInfo> out;
  for (const Field& f : schema()) {
    ConfigKeyInfo info;
    info.section = f.section;
    info.key = f.key;
    info.allowed = allowed_text(f);
    info.doc = f.doc;
    std::visit(
        [&](const auto* v) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(v)>>;
          info.type = type_name<T>();
          if constexpr (std::is_same_v<T, double>) {
            info.default_value = toml_float(*v);
          } else {
            info.default_value = show_value(*v);
          }
        },
        f.get(defaults));
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace perigee::runtime
