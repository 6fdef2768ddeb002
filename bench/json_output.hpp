// The benchmarks' --json output: the path is checked before the run (a long sweep must not be lost
// at the end for a typo in a folder name) and the write itself is checked after it.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace perigee::bench {

// "" when `path` can be written (an existing writable file, or a new name in a writable folder),
// else why not.
inline std::string json_path_problem(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (path.empty()) return "the path is empty";
  if (fs::is_directory(p, ec)) return path + " is a folder";
  if (fs::exists(p, ec)) return ::access(path.c_str(), W_OK) == 0 ? "" : path + " is not writable";
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) return "folder " + dir.string() + " does not exist (for " + path + ")";
  if (::access(dir.c_str(), W_OK) != 0)
    return "folder " + dir.string() + " is not writable (for " + path + ")";
  return "";
}

// Prints "<program>: --json: <why>" to stderr and returns false when `path` cannot be written.
inline bool check_json_path(const char* program, const std::string& path) {
  const std::string why = json_path_problem(path);
  if (why.empty()) return true;
  std::fprintf(stderr, "%s: --json: %s\n", program, why.c_str());
  return false;
}

// Writes `text` and a newline to `path`. False, with "<program>: cannot write <path>" on stderr,
// when opening, writing or closing failed (a full disk shows at the close).
inline bool write_json_text(const char* program, const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text << "\n";
  f.close();
  if (!f.fail()) return true;
  std::fprintf(stderr, "%s: cannot write %s\n", program, path.c_str());
  return false;
}

}  // namespace perigee::bench
