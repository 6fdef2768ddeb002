// Command-line option checks for CLI11, shared by the tools and the benches. CLI::PositiveNumber and
// CLI::NonNegativeNumber let "nan" through and accept "1abc"-style text for some types; these check
// the whole text. CLI11 prefixes the option's name to the message.
#pragma once

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/cpu/cpu_backend.hpp"

namespace perigee::runtime::cli {

// True when the whole of `text` is a finite number ("1abc", "nan", "inf", "1e999" are not).
inline bool parse_finite(const std::string& text, double* out) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// A floating-point option: the whole text is a finite number for which `ok` holds; `expected` says
// which ("a finite number > 0").
inline CLI::Validator finite_number(const std::string& expected, std::function<bool(double)> ok) {
  return CLI::Validator(
      [expected, ok](std::string& text) -> std::string {
        double v = 0.0;
        if (parse_finite(text, &v) && ok(v)) return std::string();
        return "expected " + expected + ", got '" + text + "'";
      },
      expected);
}
inline CLI::Validator any_finite() {
  return finite_number("a finite number", [](double) { return true; });
}
inline CLI::Validator finite_at_least_zero() {
  return finite_number("a finite number >= 0", [](double v) { return v >= 0.0; });
}
inline CLI::Validator finite_above_zero() {
  return finite_number("a finite number > 0", [](double v) { return v > 0.0; });
}

// An int option: the whole text is an integer in [lowest, highest].
inline CLI::Validator integer_in(int lowest, int highest) {
  const std::string expected =
      highest == INT_MAX ? "an integer >= " + std::to_string(lowest)
                         : "an integer in [" + std::to_string(lowest) + ", " + std::to_string(highest) + "]";
  return CLI::Validator(
      [expected, lowest, highest](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long v = text.empty() ? 0 : std::strtoll(text.c_str(), &end, 10);
        const bool whole = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0])) &&
                           end == text.c_str() + text.size() && errno == 0;
        if (whole && v >= lowest && v <= highest) return std::string();
        return "expected " + expected + ", got '" + text + "'";
      },
      expected);
}
inline CLI::Validator integer_at_least(int lowest) {
  return integer_in(lowest, INT_MAX);
}

// --threads of the CPU benches: 0 (all cores) up to the limit [device] threads has too.
inline CLI::Validator thread_count() {
  return integer_in(0, kernels::cpu::CpuBackend::kMaxThreads);
}

// CLI11's messages start "<program>: ", as the tools' errors do.
inline void name_program_in_errors(CLI::App& app, const std::string& program) {
  app.failure_message(
      [program](const CLI::App*, const CLI::Error& e) { return program + ": " + e.what() + "\n"; });
}

// Parses the command line of a one-process program. Returns -1 to go on, else the exit status: 0 after
// --help, 2 after a bad command line ("<program>: <what>" on stderr), as the tools do.
inline int parse_command_line(CLI::App& app, int argc, char** argv, const std::string& program) {
  name_program_in_errors(app, program);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return -1;
}

}  // namespace perigee::runtime::cli
