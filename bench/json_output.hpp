// The benchmarks' --json output: the path is checked before the run (a long sweep must not be lost
// at the end for a typo in a folder name or an unwritable place) and the write itself after it.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace perigee::bench {

// True when `path` names something other than a regular file (/dev/null, /dev/stdout, a FIFO): the
// JSON is written to it directly instead of through a temporary file and a rename.
inline bool is_special_file(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  return !ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st) &&
         !std::filesystem::is_directory(st);
}

// The file a write to `path` lands in: a symbolic link's target (the rename replaces that file, not
// the link), else `path` itself.
inline std::string json_write_target(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_symlink(path, ec)) return path;
  const std::filesystem::path target = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : target.string();
}

// "" when `path` can be written (an existing writable file, or a new name in a writable folder),
// else why not. A regular file is written as a temporary file beside it and renamed over it, so the
// folder must take a new file: that is tried (created and removed), since access(2) says yes to root
// for files no one can write (/proc/version) and a read-only mount only shows at the open.
inline std::string json_path_problem(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (path.empty()) return "the path is empty";
  if (fs::is_directory(p, ec)) return path + " is a folder";
  const bool exists = fs::exists(p, ec);
  if (exists) {  // the file's own permissions are kept to, though the rename would not need them
    const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return path + " is not writable (" + std::strerror(errno) + ")";
    ::close(fd);
    if (is_special_file(path)) return "";
  }
  const fs::path real(json_write_target(path));
  const fs::path dir = real.has_parent_path() ? real.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) return "folder " + dir.string() + " does not exist (for " + path + ")";
  const std::string probe =
      (dir / ("." + real.filename().string() + ".probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return "folder " + dir.string() + " is not writable (for " + path + ": " + std::strerror(errno) + ")";
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

// Prints "<program>: --json: <why>" to stderr and returns false when `path` cannot be written.
inline bool check_json_path(const char* program, const std::string& path) {
  const std::string why = json_path_problem(path);
  if (why.empty()) return true;
  std::fprintf(stderr, "%s: --json: %s\n", program, why.c_str());
  return false;
}

// Writes `text` and a newline to `path` (a link: to its target): a regular file through
// "<path>.tmp.<pid>" and a rename, so a reader never sees half a file and a failed write leaves the
// old one; /dev/stdout and the like directly. False, with "<program>: cannot write <path>" on stderr, when
// opening, writing, closing (a full disk shows there) or the rename failed.
inline bool write_json_text(const char* program, const std::string& path, const std::string& text) {
  const bool direct = is_special_file(path);
  const std::string real = json_write_target(path);
  const std::string target = direct ? path : real + ".tmp." + std::to_string(::getpid());
  std::ofstream f(target);
  f << text << "\n";
  f.close();
  bool ok = !f.fail();
  if (!direct) {
    ok = ok && std::rename(target.c_str(), real.c_str()) == 0;
    if (!ok) std::remove(target.c_str());
  }
  if (ok) return true;
  std::fprintf(stderr, "%s: cannot write %s\n", program, path.c_str());
  return false;
}

}  // namespace perigee::bench
