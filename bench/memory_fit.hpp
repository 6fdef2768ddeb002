// The benchmarks' memory guards: sizes from the command line are checked against the machine's memory
// before the run (exit 2, saying which option asks for how much), and an allocation that fails anyway
// ends the program with a message instead of an uncaught std::bad_alloc (abort, exit 134).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

namespace perigee::bench {

// Physical memory of this machine in bytes (0 when unknown).
inline double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

// "" when `bytes` fit in this machine's memory, else "<what> needs X GB, more than this machine's
// Y GB of memory".
inline std::string memory_problem(const std::string& what, double bytes) {
  const double have = physical_memory_bytes();
  if (have <= 0.0 || bytes <= have) return "";
  char text[160];
  std::snprintf(text, sizeof text, " needs %.3g GB, more than this machine's %.3g GB of memory", bytes / 1e9,
                have / 1e9);
  return what + text;
}

// Prints "<program>: <problem>" and returns false when `bytes` do not fit.
inline bool check_fits_in_memory(const char* program, const std::string& what, double bytes) {
  const std::string why = memory_problem(what, bytes);
  if (why.empty()) return true;
  std::fprintf(stderr, "%s: %s\n", program, why.c_str());
  return false;
}

// From here on a failed allocation prints "<program>: out of memory ..." and exits with status 1.
inline void exit_when_out_of_memory(const char* program) {
  static const char* name = nullptr;
  name = program;
  std::set_new_handler([] {
    std::fprintf(stderr, "%s: out of memory: an allocation failed; ask for smaller sizes\n", name);
    std::_Exit(1);
  });
}

}  // namespace perigee::bench
