// perigee-run internals shared by its files: the options, the log line and the two halves of the
// supervisor, one launch (perigee_run_launch.cpp) and the restart loop around it
// (perigee_run_supervisor.cpp). main() and the command line are in perigee_run.cpp.
#pragma once

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "core/status.hpp"
#include "tools/exit_status.hpp"

namespace perigee::tools {

using Clock = std::chrono::steady_clock;

struct Options {
  int np = 1;
  int max_restarts = 10;
  double backoff_s = 1.0;
  double backoff_max_s = 60.0;
  double stall_timeout_s = 300.0;
  double grace_s = 10.0;
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;
  bool local_flags = true;
  std::string train;
  bool allow_no_checkpoint = false;
  std::string config;
  std::vector<std::string> overrides;
};

// Writes to `fd` (our stdout or stderr) without blocking for long: a reader that stops (a paused pager,
// a full pipe) must not freeze the supervisor's signal handling and watchdog. Waits up to wait_ms for
// room for each piece of at most PIPE_BUF bytes (which a pipe with room takes whole), then gives up;
// returns the bytes written.
inline size_t write_bounded(int fd, const char* data, size_t size, int wait_ms) {
  size_t done = 0;
  while (done < size) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || !(p.revents & POLLOUT)) break;
    const ssize_t w = write(fd, data + done, std::min<size_t>(size - done, PIPE_BUF));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  return done;
}

// "[perigee-run 12:00:01.234] " + text, one write per line (the child shares the terminal), dropped
// when stdout takes nothing for 200 ms.
template <typename... Args>
void say(Args&&... args) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
  const std::string line = str_cat("[perigee-run ", stamp, ".", ms / 100, (ms / 10) % 10, ms % 10, "] ",
                                   std::forward<Args>(args)..., "\n");
  std::fflush(stdout);
  write_bounded(STDOUT_FILENO, line.data(), line.size(), 200);
}

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

inline std::string signal_text(int sig) {
  return str_cat("signal ", sig, " (", strsignal(sig), ")");
}

struct LaunchResult {
  int status = 0;               // wait status of mpirun
  bool stalled = false;         // killed by the stall watchdog
  bool peer_timeout = false;    // the output shows a collective that timed out
  int stop_signal = 0;          // SIGINT/SIGTERM/SIGHUP received: do not relaunch
  bool exec_failed = false;     // mpirun could not be started
  double seconds = 0.0;         // launch to exit
  double since_progress = 0.0;  // last change in the watched files to exit
  double since_step = -1.0;     // last metrics.jsonl line of this launch to exit (-1: none)
};

// Runs argv (mpirun ...) once as a child in its own process group, relays its output, forwards
// SIGINT/SIGTERM/SIGHUP (blocked in `handled`; the child gets `original_mask`) and kills the job
// when run_dir and checkpoint_dir show no progress for opt.stall_timeout_s.
LaunchResult launch(const std::vector<std::string>& argv, const Options& opt, const sigset_t& handled,
                    const sigset_t& original_mask, const std::string& run_dir,
                    const std::string& checkpoint_dir);

// Sleeps `seconds`, returning early with the signal when SIGINT/SIGTERM/SIGHUP arrives (0 otherwise).
int interruptible_sleep(double seconds, const sigset_t& handled);

// The supervisor: checks the config, then launches and relaunches until the job completes, the
// restarts are spent or a stop signal arrives; returns perigee-run's exit status.
int run(const Options& opt);

}  // namespace perigee::tools
