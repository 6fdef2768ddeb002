// Helpers shared by the config tests (test_config_parse.cpp, test_config_validate.cpp,
// test_config_schema.cpp): parse TOML text expecting success or failure, the validated defaults,
// a file's text and EXPECT_CONTAINS.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/config.hpp"

namespace perigee::runtime {

// The source tree: the one the tests were built from, or PERIGEE_SOURCE_DIR when set (a build carried
// to another machine, scripts/device/run_on_device.sh).
inline const std::string kSourceDir =
    std::getenv("PERIGEE_SOURCE_DIR") != nullptr ? std::getenv("PERIGEE_SOURCE_DIR") : PERIGEE_SOURCE_DIR;

// Parses text as "configs/x.toml"; expects failure and returns the message.
inline std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {},
                               StatusCode code = StatusCode::kInvalidArgument) {
  Config config;
  Status s = parse_config(text, "configs/x.toml", overrides, &config);
  EXPECT_FALSE(s.is_ok()) << "expected an error for:\n" << text;
  EXPECT_EQ(s.code(), code) << s.to_string();
  return s.message();
}

inline Config parse_ok(const std::string& text, const std::vector<std::string>& overrides = {}) {
  Config config;
  Status s = parse_config(text, "configs/x.toml", overrides, &config);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return config;
}

inline Config validated_defaults() {
  Config config;
  Status s = validate_config(&config);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return config;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.is_open()) << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "missing: " << (needle) << "\nin: " << (haystack)

}  // namespace perigee::runtime
