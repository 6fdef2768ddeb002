// perigee-run: the supervisor. Runs `mpirun -np N perigee-train CONFIG overrides...` as a child in
// its own process group and relaunches it from the newest good checkpoint when it fails (a rank
// lost power, died, or stopped responding), with bounded restarts and exponential back-off.
//   perigee-run --np 4 configs/demo.toml --checkpoint.every_steps=50 [--train.lr=3e-4 ...]
// Exit status: 0 when a launch completes; 2 for a setup/config error (never retried: a bad config
// will not heal); 128+signal when stopped by SIGINT/SIGTERM/SIGHUP; otherwise, once the restarts
// are spent, the last launch's status (exit code, or 128+signal). docs/supervisor.md has the design:
// the restart policy, the stall watchdog and what it catches that the MPI timeouts cannot.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/store.hpp"
#include "collectives/mpi_communicator.hpp"
#include "runtime/config.hpp"

namespace {

namespace fs = std::filesystem;
namespace rt = perigee::runtime;
using perigee::Status;
using perigee::str_cat;
using Clock = std::chrono::steady_clock;

// Exit status of perigee-train (and so of mpirun) for a setup or config error on every rank.
constexpr int kSetupErrorStatus = 2;

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

// "[perigee-run 12:00:01.234] " + text, one write per line (the child shares the terminal).
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
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string signal_text(int sig) {
  return str_cat("signal ", sig, " (", strsignal(sig), ")");
}

// What a wait status means for the job.
std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return str_cat("mpirun was killed by ", signal_text(WTERMSIG(status)));
  const int code = WEXITSTATUS(status);
  if (code == 0) return "exit status 0";
  if (code == kSetupErrorStatus) return "exit status 2 (setup or config error on every rank)";
  if (code == 3) return "exit status 3 (a rank failed during training and aborted the job)";
  if (code > 128 && code < 128 + 65)
    return str_cat("exit status ", code, " (a rank died of ", signal_text(code - 128), ")");
  return str_cat("exit status ", code);
}

int status_code(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

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

// The pause an eclipse announces: when the newest metrics.jsonl record is {"type":"eclipse", ...,
// "pause_s":P}, the trainer idles P seconds in the shadow (runtime/trainer.cpp, [orbit] eclipse =
// "pause") and writes nothing meanwhile; the stall watchdog allows for it. 0 otherwise.
double announced_pause_s(const std::string& metrics_path) {
  std::ifstream f(metrics_path, std::ios::binary | std::ios::ate);
  if (!f) return 0.0;
  const std::streamoff size = f.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 4096);
  std::string tail(static_cast<size_t>(size - from), '\0');
  f.seekg(from);
  f.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  const std::string last = tail.substr(tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1);
  if (last.find("\"type\":\"eclipse\"") == std::string::npos) return 0.0;
  const size_t at = last.find("\"pause_s\":");
  if (at == std::string::npos) return 0.0;
  const double pause = std::strtod(last.c_str() + at + 10, nullptr);
  return std::isfinite(pause) && pause > 0.0 ? pause : 0.0;
}

// ---- checkpoints ---------------------------------------------------------------------------------

struct NewestCheckpoint {
  int64_t step = -1;  // -1: none
  std::string path;
  std::string note;  // one line for the launch message
};

NewestCheckpoint newest_checkpoint(const std::string& dir, int np) {
  NewestCheckpoint out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    out.note = "no checkpoint yet: the job starts at step 0";
    return out;
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    int64_t step = 0;
    if (perigee::checkpoint::CheckpointStore::parse_file_name(e.path().filename().string(), &step) &&
        step > out.step) {
      out.step = step;
      out.path = e.path().string();
    }
  }
  if (out.step < 0) {
    out.note = "no checkpoint yet: the job starts at step 0";
    return out;
  }
  perigee::checkpoint::CheckpointHeader header;
  Status s = perigee::checkpoint::read_header(out.path, &header);
  if (!s.is_ok()) {
    out.note = str_cat("newest checkpoint ", out.path, " is unreadable (", s.message(),
                       "); perigee-train falls back to the newest one that verifies");
    return out;
  }
  out.note =
      str_cat("resuming from ", fs::path(out.path).filename().string(), " (step ", header.meta.step, ")");
  if (header.meta.world_size != np) {
    out.note += str_cat("; it was written by ", header.meta.world_size, " rank(s), this launch has ", np,
                        ": the data position is global, so perigee-train re-shards it");
  }
  return out;
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
    for (int i = 0; i < 2; ++i) copy(i);
  }
  // Copies everything left (the writers are gone).
  void drain() {
    for (int i = 0; i < 2; ++i) copy(i);
  }
  bool saw_peer_timeout() const { return peer_timeout_; }

 private:
  void copy(int i) {
    const int fd = pipes_[i][0];
    if (fd < 0) return;
    char buf[65536];
    while (true) {
      const ssize_t got = read(fd, buf, sizeof(buf));
      if (got > 0) {
        const int out = i == 0 ? STDOUT_FILENO : STDERR_FILENO;
        for (ssize_t done = 0; done < got;) {
          const ssize_t w = write(out, buf + done, static_cast<size_t>(got - done));
          if (w <= 0) break;
          done += w;
        }
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
};

// ---- one launch ------------------------------------------------------------------------------------

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
  const pid_t child = fork();
  if (child < 0) {
    say("error: fork: ", std::strerror(errno));
    result.exec_failed = true;
    return result;
  }
  if (child == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the supervisor died: mpirun ends the job
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
  double pause_s = 0.0;       // an announced eclipse pause, added to the stall timeout
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
      pause_s = announced_pause_s(run_dir + "/metrics.jsonl");
      if (pause_s > 0)
        say("the job announced an eclipse pause of ", fixed(pause_s, 1), " s: the stall watchdog waits");
    }
    if (now.fingerprint != progress.fingerprint) {
      progress = now;
      last_progress = Clock::now();
    } else if (opt.stall_timeout_s > 0 && !result.stalled && result.stop_signal == 0 &&
               seconds_since(last_progress) >= opt.stall_timeout_s + pause_s) {
      result.stalled = true;
      say("stall watchdog: no progress for ", fixed(seconds_since(last_progress), 1),
          " s (no change in metrics.jsonl, the rank logs or the checkpoints; --stall-timeout ",
          fixed(opt.stall_timeout_s, 1), " s): killing the job (SIGKILL to mpirun and every rank)");
      kill_all_descendants(child, &child_status);
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

std::string default_train_binary() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path sibling = self.parent_path() / "perigee-train";
    if (access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  return "perigee-train";
}

std::string join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

int run(const Options& opt) {
  // The config, as perigee-train will read it (a bad one is an error here, before any launch).
  rt::Config config;
  std::vector<std::string> overrides = opt.overrides;
  Status s = rt::load_config(opt.config, overrides, &config);
  if (!s.is_ok()) {
    std::fprintf(stderr, "perigee-run: %s\n", s.message().c_str());
    return kSetupErrorStatus;
  }
  const rt::CheckpointConfig& cc = config.checkpoint;
  // An eclipse policy checkpoints before every shadow on its own.
  const bool checkpointing = cc.every_steps > 0 || cc.every_seconds > 0.0 || config.orbit.eclipse != "off";
  const bool resumes = cc.resume == "auto";
  if (!checkpointing || !resumes) {
    const std::string why =
        !checkpointing
            ? "the config writes no checkpoints ([checkpoint] every_steps and every_seconds are 0, "
              "[orbit] eclipse is off)"
            : "the config never resumes ([checkpoint] resume = \"never\")";
    if (!opt.allow_no_checkpoint) {
      std::fprintf(stderr,
                   "perigee-run: %s, so a restart would start over and lose every step done. Set "
                   "--checkpoint.every_steps=N (and resume = \"auto\"), or pass --allow-no-checkpoint to "
                   "restart from scratch anyway.\n",
                   why.c_str());
      return kSetupErrorStatus;
    }
    say("warning: ", why, "; every restart starts over from step 0 (--allow-no-checkpoint)");
  }
  if (config.train.batch_size % opt.np != 0) {
    std::fprintf(stderr,
                 "perigee-run: [train] batch_size = %d is the global batch and must be divisible by --np %d "
                 "(each rank takes batch_size / ranks sequences)\n",
                 config.train.batch_size, opt.np);
    return kSetupErrorStatus;
  }
  // One run directory for every launch: name the run once.
  if (config.run.name.empty()) {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof(buf), "run-%Y%m%d-%H%M%S", &tm);
    config.run.name = buf;
    overrides.push_back(str_cat("--run.name=", config.run.name));
  }
  const std::string run_dir = (fs::path(config.run.dir) / config.run.name).string();
  const std::string checkpoint_dir = !cc.dir.empty() ? cc.dir : run_dir + "/checkpoints";

  std::vector<std::string> argv = {opt.mpirun, "-np", std::to_string(opt.np)};
  if (opt.local_flags) {
    for (const char* f : {"--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"})
      argv.push_back(f);
    if (geteuid() == 0) argv.push_back("--allow-run-as-root");
  }
  argv.insert(argv.end(), opt.mpirun_args.begin(), opt.mpirun_args.end());
  argv.push_back(opt.train.empty() ? default_train_binary() : opt.train);
  argv.push_back(opt.config);
  argv.insert(argv.end(), overrides.begin(), overrides.end());

  // Signals arrive through sigtimedwait only; ranks orphaned by a dead mpirun come to us.
  sigset_t handled, original_mask;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, sig);
  sigprocmask(SIG_BLOCK, &handled, &original_mask);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) say("warning: PR_SET_CHILD_SUBREAPER: ", std::strerror(errno));

  say("run directory ", run_dir, ", checkpoints in ", checkpoint_dir, "; up to ", opt.max_restarts,
      " restart(s), back-off ", fixed(opt.backoff_s, 1), "..", fixed(opt.backoff_max_s, 1),
      " s, stall timeout ",
      opt.stall_timeout_s > 0 ? fixed(opt.stall_timeout_s, 1) + " s" : std::string("off"),
      ", [comm] timeout_s ", fixed(config.comm.timeout_s, 1), " s");
  say("command: ", join(argv));
  const auto start = Clock::now();
  int restarts = 0;
  int failures_in_a_row = 0;
  while (true) {
    const NewestCheckpoint before = newest_checkpoint(checkpoint_dir, opt.np);
    say("launch ", restarts + 1, " of at most ", opt.max_restarts + 1, ": mpirun -np ", opt.np, "; ",
        before.note);
    const LaunchResult r = launch(argv, opt, handled, original_mask, run_dir, checkpoint_dir);
    if (r.exec_failed) return kSetupErrorStatus;
    if (r.stop_signal != 0) {
      say("launch ", restarts + 1, " ended after ", fixed(r.seconds, 1), " s: ", describe_status(r.status),
          "; stopped by ", signal_text(r.stop_signal), ", not relaunching");
      return 128 + r.stop_signal;
    }
    if (!r.stalled && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) {
      say("job completed: launch ", restarts + 1, " ended with exit status 0 after ", fixed(r.seconds, 1),
          " s (", restarts, " restart(s), ", fixed(seconds_since(start), 1), " s in all)");
      return 0;
    }
    const std::string cause = r.stalled ? str_cat("stalled (no progress for ", fixed(opt.stall_timeout_s, 1),
                                                  " s), killed by the watchdog")
                                        : describe_status(r.status);
    say("launch ", restarts + 1, " failed after ", fixed(r.seconds, 1), " s: ", cause, "; detected ",
        r.since_step >= 0 ? str_cat(fixed(r.since_step, 1), " s after its last training step")
                          : std::string("before its first training step"),
        " (", fixed(r.since_progress, 1), " s after its last output)");
    if (!r.stalled && WIFEXITED(r.status) && WEXITSTATUS(r.status) == kSetupErrorStatus) {
      if (!r.peer_timeout) {
        say("not relaunching: a setup or config error does not heal (see the message above)");
        return kSetupErrorStatus;
      }
      say("the setup error is a collective that timed out (a peer rank died or stopped responding during "
          "setup), not a config error: relaunching");
    }
    if (restarts >= opt.max_restarts) {
      say("giving up: ", opt.max_restarts, " restart(s) spent");
      return status_code(r.status) != 0 ? status_code(r.status) : 1;
    }
    const NewestCheckpoint after = newest_checkpoint(checkpoint_dir, opt.np);
    failures_in_a_row = after.step > before.step ? 1 : failures_in_a_row + 1;
    const double delay = std::min(opt.backoff_max_s, opt.backoff_s * std::pow(2.0, failures_in_a_row - 1));
    ++restarts;
    say("restart ", restarts, " of ", opt.max_restarts, " in ", fixed(delay, 1), " s",
        after.step > before.step
            ? str_cat(" (the launch advanced the newest checkpoint to step ", after.step, ")")
            : std::string(" (no new checkpoint in that launch: back-off doubled)"));
    if (const int sig = interruptible_sleep(delay, handled); sig != 0) {
      say("received ", signal_text(sig), " during the back-off: not relaunching");
      return 128 + sig;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "perigee-run: supervises perigee-train under mpirun and relaunches it from the newest good checkpoint "
      "when "
      "a rank fails or the job stops making progress.\n"
      "  perigee-run [options] CONFIG [--section.key=value ...]   (overrides go to perigee-train)"};
  Options opt;
  app.add_option("--np", opt.np, "number of ranks (mpirun -np)")->check(CLI::PositiveNumber);
  app.add_option("--max-restarts", opt.max_restarts, "relaunches after failures before giving up")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backoff", opt.backoff_s,
                 "seconds before the first relaunch; doubles per failure in a row")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backoff-max", opt.backoff_max_s, "largest back-off in seconds")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stall-timeout", opt.stall_timeout_s,
                 "kill and relaunch a job that shows no progress for this many seconds (0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--grace", opt.grace_s, "seconds a forwarded SIGINT/SIGTERM gets before SIGKILL")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--mpirun", opt.mpirun, "the mpirun to run");
  app.add_option("--mpirun-arg", opt.mpirun_args, "extra mpirun argument (repeatable; --mpirun-arg=--foo)")
      ->allow_extra_args(false);
  bool no_local_flags = false;
  app.add_flag("--no-local-flags", no_local_flags,
               "drop the one-machine mpirun flags (--oversubscribe --bind-to none --mca btl self,vader)");
  app.add_option("--train-bin", opt.train,
                 "the perigee-train binary (default: next to perigee-run, else PATH)");
  app.add_flag("--allow-no-checkpoint", opt.allow_no_checkpoint,
               "supervise a config without checkpoints (every restart starts over)");
  app.add_option("config", opt.config, "TOML config file (see docs/config.md)")->required();
  app.allow_extras();
  // A repeated option takes its last value (scripts append to a base command line).
  for (CLI::Option* o : app.get_options()) {
    if (o->get_expected_max() == 1) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kSetupErrorStatus;
  }
  opt.overrides = app.remaining();
  opt.local_flags = !no_local_flags;
  if (opt.backoff_max_s < opt.backoff_s) opt.backoff_max_s = opt.backoff_s;
  return run(opt);
}
