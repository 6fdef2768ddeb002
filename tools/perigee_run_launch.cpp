// perigee-run, one launch: the process tree (finding and killing every rank), the progress the
// stall watchdog watches, the relay of the job's output, launch() and interruptible_sleep().
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collectives/mpi_communicator.hpp"
#include "tools/perigee_run_internal.hpp"

namespace perigee::tools {
namespace {

// ---- the process tree -------------------------------------------------------------------------

// Parent of every live process (from /proc/<pid>/stat); zombies are left out.
std::map<pid_t, pid_t> process_parents() {
  std::map<pid_t, pid_t> parents;
  DIR* d = opendir("/proc");
  if (d == nullptr) return parents;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream f(str_cat("/proc/", pid, "/stat"));
    std::string stat;
    if (!std::getline(f, stat)) continue;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 4 >= stat.size()) continue;
    const char state = stat[close + 2];
    if (state == 'Z' || state == 'X') continue;
    parents[static_cast<pid_t>(pid)] = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
  }
  closedir(d);
  return parents;
}

// Every live descendant of this process. perigee-run is a child subreaper, so ranks whose mpirun
// died are reparented to it and still found here.
std::vector<pid_t> descendants() {
  const std::map<pid_t, pid_t> parents = process_parents();
  std::set<pid_t> found{getpid()};
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [pid, ppid] : parents) {
      if (found.count(ppid) != 0 && found.insert(pid).second) grew = true;
    }
  }
  found.erase(getpid());
  return {found.begin(), found.end()};
}

// Reaps every exited child; records mpirun's status when it is among them.
void reap(pid_t child, std::optional<int>* child_status) {
  while (true) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (pid == child) *child_status = status;
  }
}

// SIGKILL to every descendant until none is left (or `limit_s` passed); returns how many were killed.
int kill_all_descendants(pid_t child, std::optional<int>* child_status, double limit_s = 10.0) {
  const auto t0 = Clock::now();
  std::set<pid_t> killed;
  while (true) {
    const std::vector<pid_t> live = descendants();
    if (live.empty()) break;
    for (pid_t pid : live) {
      if (kill(pid, SIGKILL) == 0) killed.insert(pid);
    }
    if (seconds_since(t0) > limit_s) {
      say("warning: ", live.size(), " process(es) survive SIGKILL (uninterruptible I/O?); going on");
      break;
    }
    usleep(20000);
    reap(child, child_status);
  }
  reap(child, child_status);
  return static_cast<int>(killed.size());
}

// ---- progress: what the stall watchdog watches -------------------------------------------------

// What the job has written: a fingerprint of the files a running job keeps changing
// (metrics.jsonl and rank*.log in the run directory, the checkpoint folder's files) and the size of
// metrics.jsonl alone (rank 0 appends one line per training step).
struct Progress {
  std::string fingerprint;
  off_t metrics_bytes = -1;
};

Progress read_progress(const std::string& run_dir, const std::string& checkpoint_dir) {
  Progress p;
  for (const std::string& dir : {run_dir, checkpoint_dir}) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const bool metrics = dir == run_dir && name == "metrics.jsonl";
      if (dir == run_dir && !metrics && !(name.rfind("rank", 0) == 0 && name.size() > 4)) continue;
      struct stat st {};
      if (stat((dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (metrics) p.metrics_bytes = st.st_size;
      p.fingerprint += str_cat(dir == run_dir ? "r/" : "c/", name, ":", st.st_size, ":", st.st_mtim.tv_sec,
                               ".", st.st_mtim.tv_nsec, ";");
    }
    closedir(d);
  }
  return p;
}

// A quiet phase the job announced in its newest metrics.jsonl record, in seconds (0: none), and what it
// is. Two records announce one: {"type":"eclipse", ..., "pause_s":P}, the trainer idling P seconds in
// the shadow ([orbit] eclipse = "pause"); and any record with "quiet_s":Q, such as rank 0's
// {"type":"checkpoint_load", ..., "quiet_s":Q} before it reads a checkpoint (Q = [checkpoint]
// timeout_s, the other ranks' deadline for it). The job writes nothing meanwhile; the stall watchdog
// allows for it until the next record (after a load, rank 0's {"type":"checkpoint_loaded", ...}).
struct QuietPhase {
  double seconds = 0.0;
  std::string what;
};

QuietPhase announced_quiet_phase(const std::string& metrics_path) {
  std::ifstream f(metrics_path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  const std::streamoff size = f.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 4096);
  std::string tail(static_cast<size_t>(size - from), '\0');
  f.seekg(from);
  f.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  const std::string last = tail.substr(tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1);
  auto number = [&](const char* key) {
    const size_t at = last.find(key);
    if (at == std::string::npos) return 0.0;
    const double v = std::strtod(last.c_str() + at + std::strlen(key), nullptr);
    return std::isfinite(v) && v > 0.0 ? v : 0.0;
  };
  if (last.find("\"type\":\"eclipse\"") != std::string::npos)
    return {number("\"pause_s\":"), "an eclipse pause"};
  if (last.find("\"type\":\"checkpoint_load\"") != std::string::npos)
    return {number("\"quiet_s\":"), "a checkpoint load"};
  return {number("\"quiet_s\":"), "a quiet phase"};
}

// ---- the job's output ------------------------------------------------------------------------------

// Copies mpirun's stdout and stderr to ours as they come and watches them for the message of a
// collective that timed out (collectives/mpi_communicator.hpp). perigee-train exits 2 on every
// setup failure; when the cause is a peer that died or stopped during setup, that is not a config
// error and the job is relaunched.
class OutputRelay {
 public:
  ~OutputRelay() {
    for (int i = 0; i < 2; ++i) {
      for (int fd : pipes_[i]) {
        if (fd >= 0) close(fd);
      }
    }
  }
  bool open() {
    for (auto& p : pipes_) {
      if (pipe2(p, O_CLOEXEC) != 0) return false;
      fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    }
    return true;
  }
  // In the child, before exec: the write ends become stdout and stderr.
  void attach_child() {
    dup2(pipes_[0][1], STDOUT_FILENO);
    dup2(pipes_[1][1], STDERR_FILENO);
  }
  void close_write_ends() {
    for (auto& p : pipes_) {
      close(p[1]);
      p[1] = -1;
    }
  }
  // Waits up to timeout_ms for output and copies what is there.
  void pump(int timeout_ms) {
    pollfd fds[2];
    int n = 0;
    for (int i = 0; i < 2; ++i) {
      if (pipes_[i][0] >= 0) fds[n++] = pollfd{pipes_[i][0], POLLIN, 0};
    }
    if (n == 0) {
      usleep(static_cast<useconds_t>(timeout_ms) * 1000);
      return;
    }
    if (poll(fds, static_cast<nfds_t>(n), timeout_ms) <= 0) return;
    for (int i = 0; i < 2; ++i) copy(i, kReadsPerPump);
  }
  // Copies everything left (the writers are gone).
  void drain() {
    for (int i = 0; i < 2; ++i) copy(i, SIZE_MAX);
  }
  bool saw_peer_timeout() const { return peer_timeout_; }
  // Bytes of the job's output dropped because our own stdout or stderr took none for a while.
  uint64_t dropped_bytes() const { return dropped_; }

 private:
  // A pump copies at most this many reads per stream, so a job that writes faster than we copy cannot
  // keep the supervisor from its signals and its watchdog.
  static constexpr size_t kReadsPerPump = 16;

  void copy(int i, size_t max_reads) {
    const int fd = pipes_[i][0];
    if (fd < 0) return;
    char buf[65536];
    for (size_t reads = 0; reads < max_reads; ++reads) {
      const ssize_t got = read(fd, buf, sizeof(buf));
      if (got > 0) {
        const size_t size = static_cast<size_t>(got);
        dropped_ += size - write_bounded(i == 0 ? STDOUT_FILENO : STDERR_FILENO, buf, size, 50);
        // Keep a tail, so that a message split across reads is still found.
        tail_[i].append(buf, static_cast<size_t>(got));
        if (tail_[i].find(perigee::collectives::kPeerLostMessage) != std::string::npos) peer_timeout_ = true;
        if (tail_[i].size() > 512) tail_[i].erase(0, tail_[i].size() - 512);
        continue;
      }
      if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(fd);
        pipes_[i][0] = -1;
      }
      return;
    }
  }

  int pipes_[2][2] = {{-1, -1}, {-1, -1}};  // [stdout, stderr][read end, write end]
  std::string tail_[2];
  bool peer_timeout_ = false;
  uint64_t dropped_ = 0;
};

}  // namespace

// ---- one launch ------------------------------------------------------------------------------------

LaunchResult launch(const std::vector<std::string>& argv, const Options& opt, const sigset_t& handled,
                    const sigset_t& original_mask, const std::string& run_dir,
                    const std::string& checkpoint_dir) {
  LaunchResult result;
  const auto t0 = Clock::now();
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    say("error: pipe2: ", std::strerror(errno));
    result.exec_failed = true;
    return result;
  }
  OutputRelay relay;
  if (!relay.open()) {
    say("error: pipe2: ", std::strerror(errno));
    result.exec_failed = true;
    return result;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t supervisor = getpid();
  const pid_t child = fork();
  if (child < 0) {
    say("error: fork: ", std::strerror(errno));
    result.exec_failed = true;
    return result;
  }
  if (child == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);                   // the supervisor died: mpirun ends the job
    if (getppid() != supervisor) _exit(128 + SIGTERM);  // it died before the line above took effect
    ::signal(SIGPIPE, SIG_DFL);                         // an ignored signal would stay ignored across exec
    sigprocmask(SIG_SETMASK, &original_mask, nullptr);
    relay.attach_child();
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    const int err = errno;
    (void)!write(exec_pipe[1], &err, sizeof(err));
    _exit(127);
  }
  setpgid(child, child);
  relay.close_write_ends();
  close(exec_pipe[1]);
  int exec_errno = 0;
  const bool exec_error = read(exec_pipe[0], &exec_errno, sizeof(exec_errno)) == sizeof(exec_errno);
  close(exec_pipe[0]);

  std::optional<int> child_status;
  if (exec_error) {
    say("error: cannot start ", argv[0], ": ", std::strerror(exec_errno));
    result.exec_failed = true;
    while (!child_status) {
      reap(child, &child_status);
      if (!child_status) usleep(1000);
    }
    result.status = *child_status;
    return result;
  }

  Progress progress = read_progress(run_dir, checkpoint_dir);
  auto last_progress = Clock::now();
  std::optional<Clock::time_point> last_step;
  // A quiet phase the job announced (an eclipse pause, a checkpoint load), added to the stall timeout
  // until the next metrics record.
  double quiet_s = 0.0;
  bool kill_pending = false;  // after a stop signal: SIGKILL at kill_at, when the grace ends
  Clock::time_point kill_at = Clock::now();
  const auto handle_signal = [&](int sig) {
    if (sig == SIGCHLD) {
      reap(child, &child_status);
    } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      if (result.stop_signal == 0) {
        result.stop_signal = sig;
        say("received ", signal_text(sig), ": forwarding it to mpirun (SIGKILL in ", fixed(opt.grace_s, 0),
            " s if the job has not ended)");
        kill(-child, sig);
        kill_pending = true;
        kill_at = Clock::now() +
                  std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.grace_s));
      } else {
        say("received ", signal_text(sig), " again: killing the job now");
        kill_all_descendants(child, &child_status);
      }
    }
  };
  while (!child_status) {
    relay.pump(100);
    // Signals stay blocked and are collected here (SIGCHLD is seen within one pump).
    while (true) {
      timespec zero{0, 0};
      siginfo_t info{};
      const int sig = sigtimedwait(&handled, &info, &zero);
      if (sig <= 0) break;
      handle_signal(sig);
    }
    if (child_status) break;
    if (kill_pending && Clock::now() >= kill_at) {
      say("the job did not end within ", fixed(opt.grace_s, 0), " s of the signal: SIGKILL");
      kill_all_descendants(child, &child_status);
      kill_pending = false;
      continue;
    }
    const Progress now = read_progress(run_dir, checkpoint_dir);
    if (now.metrics_bytes != progress.metrics_bytes) {
      last_step = Clock::now();
      const QuietPhase quiet = announced_quiet_phase(run_dir + "/metrics.jsonl");
      quiet_s = quiet.seconds;
      if (quiet_s > 0)
        say("the job announced ", quiet.what, " of up to ", fixed(quiet_s, 1),
            " s: the stall watchdog waits");
    }
    if (now.fingerprint != progress.fingerprint) {
      progress = now;
      last_progress = Clock::now();
    } else if (opt.stall_timeout_s > 0 && !result.stalled && result.stop_signal == 0 &&
               seconds_since(last_progress) >= opt.stall_timeout_s + quiet_s) {
      result.stalled = true;
      say("stall watchdog: no progress for ", fixed(seconds_since(last_progress), 1),
          " s (no change in metrics.jsonl, the rank logs or the checkpoints; --stall-timeout ",
          fixed(opt.stall_timeout_s, 1), " s): killing the job (SIGKILL to mpirun and every rank)");
      kill_all_descendants(child, &child_status);
      // mpirun may have exited on its own just before the kill: a job that ended by itself did not stall.
      if (child_status && WIFEXITED(*child_status)) {
        result.stalled = false;
        say("the job had already ended (exit ", WEXITSTATUS(*child_status), "): not a stall");
      }
    }
  }
  result.since_progress = seconds_since(last_progress);
  if (last_step) result.since_step = seconds_since(*last_step);
  result.seconds = seconds_since(t0);
  result.status = *child_status;
  // Ranks that outlive mpirun (e.g. mpirun itself was killed) must not run next to the next launch.
  const int leftovers = kill_all_descendants(child, &child_status);
  if (leftovers > 0) say("killed ", leftovers, " leftover process(es) of the ended job");
  relay.drain();
  result.peer_timeout = relay.saw_peer_timeout();
  if (relay.dropped_bytes() > 0)
    say("dropped ", relay.dropped_bytes(),
        " bytes of the job's output: perigee-run's own output took none for a while "
        "(a stopped reader); the ranks' logs in the run folder have everything");
  return result;
}

// Sleeps `seconds`, returning early with the signal when SIGINT/SIGTERM/SIGHUP arrives (0 otherwise).
int interruptible_sleep(double seconds, const sigset_t& handled) {
  const auto end =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    const double left = std::chrono::duration<double>(end - Clock::now()).count();
    timespec ts{static_cast<time_t>(left), static_cast<long>((left - std::floor(left)) * 1e9)};
    siginfo_t info{};
    const int sig = sigtimedwait(&handled, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) return sig;
    if (sig == SIGCHLD) {
      std::optional<int> ignored;
      reap(-1, &ignored);
    }
  }
  return 0;
}

}  // namespace perigee::tools
