// Config reading: a TOML document and command-line overrides (section.key=value), each key set
// through the schema table (config_schema.cpp) with errors that name the file or the command line,
// the line, the key and the reason, and did-you-mean suggestions for unknown keys and sections.
// toml++ stays in this file (it does not compile under nvcc).
#include "runtime/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <toml++/toml.h>

#include "core/read_file.hpp"
#include "runtime/config_internal.hpp"

namespace perigee::runtime {

using namespace detail;

namespace {

// ---------------------------------------------------------------------------------------------
// Text helpers

template <typename T>
constexpr const char* expected_phrase() {
  if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true or false)";
  if constexpr (std::is_same_v<T, std::string>) return "a string";
}

// Offset of the first byte that breaks UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF),
// or npos. TOML files are UTF-8 by definition; command-line values are raw bytes, and the resolved
// config is written as JSON, which must be UTF-8.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      n = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return i;
    }
    i += n + 1;
  }
  return std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
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
  return str_cat(" (keys of [", section, "]: ", str_join(keys_of(section), ", "), ")");
}

std::string sections_list() {
  std::vector<std::string> items;
  for (const std::string& s : section_names()) items.push_back("[" + s + "]");
  return str_join(items, ", ");
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
std::optional<std::string> set_from_toml(const Field& field, FieldRef ref, const toml::node& n) {
  return std::visit(
      [&](auto* dst) -> std::optional<std::string> {
        using T = std::remove_pointer_t<decltype(dst)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (const auto* s = n.as_string()) {
            *dst = s->get();
            return std::nullopt;
          }
          if (const auto* b = n.as_boolean(); b != nullptr && field.reads_bool) {
            *dst = b->get() ? "on" : "off";
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
        const std::string expected = field.reads_bool
                                         ? str_cat(describe_choices(field.choices), " or a boolean")
                                         : expected_phrase<T>();
        return str_cat("expected ", expected, ", got ", describe_node(n));
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
std::optional<std::string> set_from_text(const Field& field, FieldRef ref, std::string_view raw) {
  return std::visit(
      [&](auto* dst) -> std::optional<std::string> {
        using T = std::remove_pointer_t<decltype(dst)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (field.reads_bool && (trim(raw) == "true" || trim(raw) == "false")) {
            *dst = trim(raw) == "true" ? "on" : "off";
            return std::nullopt;
          }
          if (const size_t at = invalid_utf8_at(raw); at != std::string_view::npos) {
            char hex[8];
            std::snprintf(hex, sizeof(hex), "0x%02X",
                          static_cast<unsigned>(static_cast<unsigned char>(raw[at])));
            return str_cat("not valid UTF-8 (byte ", hex, " at offset ", at,
                           "); config strings are UTF-8, as in a TOML file");
          }
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
      if (auto reason = set_from_toml(*field, field->get(*config), value)) {
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
  return make_error(StatusCode::kInvalidArgument, str_join(lines, "\n"));
}

// "--section.key=value" or "section.key=value" -> the trimmed name and the value; nullopt without '='.
std::optional<std::pair<std::string, std::string_view>> split_override(const std::string& raw) {
  std::string_view text = trim(raw);
  if (text.starts_with("--")) text.remove_prefix(2);
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  return std::pair{std::string(trim(text.substr(0, eq))), text.substr(eq + 1)};
}

// The section.key names the overrides set (the unknown ones were refused by apply_overrides).
std::set<std::string> override_keys(const std::vector<std::string>& overrides) {
  std::set<std::string> keys;
  for (const std::string& raw : overrides)
    if (const auto split = split_override(raw)) keys.insert(split->first);
  return keys;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

Status apply_overrides(const std::vector<std::string>& overrides, Config* config) {
  PERIGEE_REQUIRE(config != nullptr, StatusCode::kInvalidArgument, "apply_overrides: config is null");
  std::vector<std::string> errors;
  for (const std::string& raw : overrides) {
    const auto split = split_override(raw);
    if (!split) {
      const std::string_view text = trim(raw);
      if (text.starts_with("-") && text.find('.') == std::string_view::npos) {
        errors.push_back(str_cat("command line: unknown option ", quote(raw),
                                 " (an override is --section.key=value; --help lists the options)"));
      } else {
        errors.push_back(
            str_cat("command line: override ", quote(raw), " has no value; expected section.key=value"));
      }
      continue;
    }
    const auto& [name, value] = *split;
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
        hint = str_cat(" (keys of [", name.substr(0, dot),
                       "]: ", str_join(keys_of(name.substr(0, dot)), ", "), ")");
      } else {
        hint = str_cat(" (sections: ", str_join(section_names(), ", "), ")");
      }
      errors.push_back(str_cat("command line: unknown key ", name.empty() ? "\"\"" : name, hint));
      continue;
    }
    if (auto reason = set_from_text(*field, field->get(*config), value)) {
      errors.push_back(str_cat("command line: ", name, "=", value, ": ", *reason));
    }
  }
  if (!errors.empty()) return make_error(StatusCode::kInvalidArgument, str_join(errors, "\n"));
  return Status::ok();
}

Status parse_config(const std::string& toml_text, const std::string& source_name,
                    const std::vector<std::string>& overrides, Config* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "parse_config: out is null");
  Config config;
  config.source = source_name;
  PERIGEE_CHECK(read_toml(toml_text, source_name.empty() ? std::string("<config>") : source_name, &config));
  PERIGEE_CHECK(apply_overrides(overrides, &config));
  PERIGEE_CHECK(validate_config(&config, override_keys(overrides)));
  *out = std::move(config);
  return Status::ok();
}

Status load_config(const std::string& path, const std::vector<std::string>& overrides, Config* out) {
  PERIGEE_REQUIRE(out != nullptr, StatusCode::kInvalidArgument, "load_config: out is null");
  // `perigee-train "$CFG"` with CFG unset must not start a job on the defaults.
  PERIGEE_REQUIRE(!path.empty(), StatusCode::kInvalidArgument,
                  "the config file path is empty (an unset variable?): give a TOML file, e.g. "
                  "configs/default.toml");
  std::string text;
  PERIGEE_CHECK(read_small_file(path, "config file", &text));
  PERIGEE_CHECK(parse_config(text, path, overrides, out));
  return Status::ok();
}

}  // namespace perigee::runtime
