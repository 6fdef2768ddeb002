// Config internals shared by its files: the schema table (config_schema.cpp), reading TOML and
// overrides (config.cpp) and the text of values, JSON output and the key listing (config_output.cpp).
// Internal to perigee_runtime; toml++ and nlohmann-json are not included here.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "runtime/config.hpp"

namespace perigee::runtime::detail {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

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

struct Field {
  std::string_view section;
  std::string_view key;
  FieldRef (*ref)(Config&);
  std::string_view doc;
  Range range{};                            // numeric keys
  std::vector<std::string_view> choices{};  // string keys: the allowed values (empty = any)
  bool non_empty = false;                   // string keys: "" is not allowed
  bool reads_bool = false;                  // string keys: true/false read as "on"/"off" (a switch)

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
  // A string switch ("auto" | "on" | "off"): TOML booleans and the override texts true/false are
  // read as "on" and "off", so a key that was once a bool keeps reading its old values.
  Field switch_of_bool() const {
    Field f = *this;
    f.choices = {"auto", "on", "off"};
    f.reads_bool = true;
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

// ---------------------------------------------------------------------------------------------
// Schema lookups (config_schema.cpp)

// The schema: every key of every section, in the order of docs/config.md and the JSON output.
const std::vector<Field>& schema();

// Section names in schema order.
const std::vector<std::string>& section_names();

bool is_section(std::string_view name);

const Field* find_field(std::string_view section, std::string_view key);

std::vector<std::string> keys_of(std::string_view section);

// ---------------------------------------------------------------------------------------------
// Text helpers (config_output.cpp)

// Shortest text that reads back as the same double ("0.001", "1e-08", "inf").
std::string format_double(double v);

// A double as a TOML float literal (always with a '.' or an exponent).
std::string toml_float(double v);

// A quoted string with TOML/JSON-style escapes, for messages and TOML output.
std::string quote(std::string_view s);

std::string describe_range(const Range& r);

std::string describe_choices(const std::vector<std::string_view>& choices);

// The per-key rule of one field ("" when none).
std::string allowed_text(const Field& f);

// A key's value as text for messages and the key listing.
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

}  // namespace perigee::runtime::detail
