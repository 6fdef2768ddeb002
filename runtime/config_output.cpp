// Config as text: formatting of values and rules (shared with the parser's messages), the JSON
// output of a resolved config and the key listing. nlohmann-json stays in this file (it does not
// compile under nvcc).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/config.hpp"
#include "runtime/config_internal.hpp"

namespace perigee::runtime {
namespace detail {

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
  return "one of " + str_join(items, ", ");
}

// The per-key rule of one field ("" when none).
std::string allowed_text(const Field& f) {
  if (f.reads_bool) return describe_choices(f.choices) + " (true, false: on, off)";
  if (!f.choices.empty()) return describe_choices(f.choices);
  if (f.non_empty) return "non-empty";
  return describe_range(f.range);
}

}  // namespace detail

using namespace detail;

namespace {

template <typename T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, int>) return "int";
  if constexpr (std::is_same_v<T, int64_t>) return "int64";
  if constexpr (std::is_same_v<T, uint64_t>) return "uint64";
  if constexpr (std::is_same_v<T, double>) return "float";
  if constexpr (std::is_same_v<T, bool>) return "bool";
  if constexpr (std::is_same_v<T, std::string>) return "string";
}

}  // namespace

std::string config_to_json(const Config& config) {
  nlohmann::ordered_json root;
  root["source"] = config.source;
  for (const Field& f : schema()) {
    std::visit([&](const auto* v) { root[std::string(f.section)][std::string(f.key)] = *v; }, f.get(config));
  }
  // The source path comes from the command line and may hold bytes that are not UTF-8 (every value
  // was checked): those become U+FFFD here instead of an exception.
  return root.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool validation_recorded_at(const std::string& stored_json, int64_t step) {
  const nlohmann::json j = nlohmann::json::parse(stored_json, nullptr, /*allow_exceptions=*/false);
  if (step <= 0 || !j.is_object() || !j.contains("train") || !j["train"].is_object()) return false;
  const nlohmann::json& train = j["train"];
  if (!train.contains("val_every") || !train.contains("steps") || !train["val_every"].is_number_integer() ||
      !train["steps"].is_number_integer())
    return false;
  const int64_t val_every = train["val_every"].get<int64_t>(), steps = train["steps"].get<int64_t>();
  return val_every > 0 && (step == steps || (step < steps && step % val_every == 0));
}

std::vector<std::string> config_changes(const std::string& stored_json, const Config& config,
                                        const std::vector<std::string>& keys, bool* readable) {
  const nlohmann::json stored = nlohmann::json::parse(stored_json, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json now = nlohmann::json::parse(config_to_json(config));
  std::vector<std::string> out;
  if (readable != nullptr) *readable = stored.is_object();
  if (!stored.is_object()) return out;
  for (const std::string& key : keys) {
    const size_t dot = key.find('.');
    if (dot == std::string::npos) continue;
    const std::string section = key.substr(0, dot), name = key.substr(dot + 1);
    const auto s = stored.find(section);
    const auto n = now.find(section);
    if (s == stored.end() || !s->is_object() || n == now.end() || !s->contains(name) || !n->contains(name))
      continue;
    const nlohmann::json& before = (*s)[name];
    const nlohmann::json& after = (*n)[name];
    if (before != after) out.push_back(key + ": " + before.dump() + " -> " + after.dump());
  }
  return out;
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
