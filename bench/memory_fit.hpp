// The benchmarks' memory guards: sizes from the command line are checked against the memory this
// process can use before the run (exit 2, saying which option asks for how much), and an allocation that
// fails anyway ends the program with a message instead of an uncaught std::bad_alloc (abort, exit 134).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include "kernels/cpu/host_memory.hpp"

namespace perigee::bench {

// "" when `bytes` fit in the memory this process can still use (kernels/cpu/host_memory.hpp:
// MemAvailable under any cgroup limit), else "<what> needs X GB, more than the Y GB available here
// (<source>)". Unknown memory is no problem.
inline std::string memory_problem(const std::string& what, double bytes) {
  kernels::cpu::HostMemory memory;
  if (!kernels::cpu::probe_host_memory(&memory).is_ok() || memory.available == 0) return "";
  const double have = static_cast<double>(memory.available);
  if (bytes <= have) return "";
  char text[160];
  std::snprintf(text, sizeof text, " needs %.3g GB, more than the %.3g GB available here", bytes / 1e9,
                have / 1e9);
  return what + text + " (" + memory.source + ")";
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
