// perigee-run, the restart loop: checks the config, builds the mpirun command, and launches and
// relaunches the job from the newest checkpoint with exponential back-off (docs/supervisor.md).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/hdf5_io.hpp"
#include "checkpoint/store.hpp"
#include "runtime/config.hpp"
#include "runtime/run_name.hpp"
#include "tools/perigee_run_internal.hpp"

namespace perigee::tools {
namespace {

namespace fs = std::filesystem;
namespace rt = perigee::runtime;

// What a wait status means for the job.
std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return str_cat("mpirun was killed by ", signal_text(WTERMSIG(status)));
  const int code = WEXITSTATUS(status);
  if (code == 0) return "exit status 0";
  if (code == kSetupErrorStatus) return "exit status 2 (setup or config error on every rank)";
  if (code == kTrainingErrorStatus)
    return "exit status 3 (a rank failed during training and aborted the job)";
  if (code == kFaultPersistsStatus)
    return "exit status 4 (the fault ladder gave up: a fault came back through every rollback)";
  if (code > 128 && code < 128 + 65)
    return str_cat("exit status ", code, " (a rank died of ", signal_text(code - 128), ")");
  return str_cat("exit status ", code);
}

int status_code(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
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
  if (header.meta.step != out.step) {
    out.note =
        str_cat("newest checkpoint ", out.path, " holds step ", header.meta.step,
                ", not the step its name says; perigee-train skips it for the newest one that verifies");
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

std::string default_train_binary() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path sibling = self.parent_path() / "perigee-train";
    if (access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  return "perigee-train";
}

// Whether `program` can be run: a path (with a '/') that is an executable regular file, or a name found
// so in PATH. Else an error naming it: a missing binary must not pass for a job that died (relaunched
// with back-off), which is what mpirun's exit status for it looks like.
Status check_executable(const std::string& what, const std::string& program) {
  auto runnable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) {
    PERIGEE_REQUIRE(runnable(program), StatusCode::kNotFound, what, " '", program,
                    "' is not an executable file");
    return Status::ok();
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = dirs.substr(start, end - start);
    if (runnable(fs::path(dir.empty() ? "." : dir) / program)) return Status::ok();
    start = end + 1;
  }
  return make_error(StatusCode::kNotFound, what, " '", program, "' is not in PATH");
}

std::string join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

}  // namespace

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
  if (config.train.micro_batch > 0 && (config.train.batch_size / opt.np) % config.train.micro_batch != 0) {
    std::fprintf(stderr,
                 "perigee-run: [train] micro_batch = %d must divide the per-rank batch %d (batch_size %d / "
                 "--np %d): each rank runs its batch in passes of micro_batch sequences\n",
                 config.train.micro_batch, config.train.batch_size / opt.np, config.train.batch_size, opt.np);
    return kSetupErrorStatus;
  }
  // One run directory for every launch: name the run once (its folder created now, so that no other
  // job started in the same second takes the same name).
  if (config.run.name.empty()) {
    if (cc.dir.empty()) {
      say("warning: [run] name is empty, so this run's folder is named now (run-<time>); after a power cut "
          "of "
          "this node the same command would make a new folder and start at step 0: give --run.name=NAME (or "
          "[checkpoint] dir) to resume across reruns");
    }
    const Status named = rt::claim_timestamped_run_dir(
        config.run.dir, static_cast<long long>(std::time(nullptr)), &config.run.name);
    if (!named.is_ok()) {
      std::fprintf(stderr, "perigee-run: %s\n", named.message().c_str());
      return kSetupErrorStatus;
    }
    overrides.push_back(str_cat("--run.name=", config.run.name));
  }
  // Open MPI gives every rank a terminal for its output, whatever mpirun's own is: "auto" would draw the
  // progress bar into a log file. It follows perigee-run's output instead.
  if (config.run.progress == "auto" && isatty(STDOUT_FILENO) == 0) overrides.push_back("--run.progress=off");
  const std::string train_bin = opt.train.empty() ? default_train_binary() : opt.train;
  for (const auto& [what, program] : {std::pair<const char*, std::string>{"--mpirun", opt.mpirun},
                                      std::pair<const char*, std::string>{"--train-bin", train_bin}}) {
    if (Status found = check_executable(what, program); !found.is_ok()) {
      std::fprintf(stderr, "perigee-run: %s\n", found.message().c_str());
      return kSetupErrorStatus;
    }
  }
  const std::string run_dir = (fs::path(config.run.dir) / config.run.name).string();
  const std::string checkpoint_dir = !cc.dir.empty() ? cc.dir : run_dir + "/checkpoints";

  std::vector<std::string> argv = {opt.mpirun, "-np", std::to_string(opt.np)};
  if (opt.local_flags) {
    for (const char* f : {"--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"})
      argv.push_back(f);
    if (geteuid() == 0) argv.push_back("--allow-run-as-root");
  }
  // Each launch's number reaches every rank (Open MPI forwards only the variables -x names to other
  // hosts): a fault plan's `death ... launch=L` happens in that launch only.
  argv.insert(argv.end(), {"-x", "PERIGEE_LAUNCH"});
  argv.insert(argv.end(), opt.mpirun_args.begin(), opt.mpirun_args.end());
  argv.push_back(train_bin);
  argv.push_back(opt.config);
  argv.insert(argv.end(), overrides.begin(), overrides.end());

  // Signals arrive through sigtimedwait only; ranks orphaned by a dead mpirun come to us.
  sigset_t handled, original_mask;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, sig);
  sigprocmask(SIG_BLOCK, &handled, &original_mask);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) say("warning: PR_SET_CHILD_SUBREAPER: ", std::strerror(errno));
  // Whoever reads our output may go away (`| head`, a killed tee): a write then fails with EPIPE
  // instead of killing the supervisor, whose death would end the job (PDEATHSIG). The launched job
  // gets the default disposition back (launch()).
  ::signal(SIGPIPE, SIG_IGN);

  say("run directory ", run_dir, ", checkpoints in ", checkpoint_dir, "; up to ", opt.max_restarts,
      " restart(s), back-off ", fixed(opt.backoff_s, 1), "..", fixed(opt.backoff_max_s, 1),
      " s, stall timeout ",
      opt.stall_timeout_s > 0 ? fixed(opt.stall_timeout_s, 1) + " s" : std::string("off"),
      ", [comm] timeout_s ", fixed(config.comm.timeout_s, 1), " s");
  say("command: ", join(argv));
  const auto start = Clock::now();
  int restarts = 0;
  int failures_in_a_row = 0;
  // The newest checkpoint's step when a launch last ended with the fault ladder's give-up (exit 4);
  // kNoGiveUp before any.
  constexpr int64_t kNoGiveUp = INT64_MIN;
  int64_t gave_up_at = kNoGiveUp;
  // Launches in a row whose setup ended in a timed-out collective: a peer lost during setup heals with
  // a relaunch, a deterministic cause (a data load or device start slower than [comm] timeout_s) does
  // not, so kSetupTimeoutLaunches of them in a row end the job.
  constexpr int kSetupTimeoutLaunches = 3;
  int setup_timeouts_in_a_row = 0;
  while (true) {
    const NewestCheckpoint before = newest_checkpoint(checkpoint_dir, opt.np);
    say("launch ", restarts + 1, " of at most ", opt.max_restarts + 1, ": mpirun -np ", opt.np, "; ",
        before.note);
    setenv("PERIGEE_LAUNCH", std::to_string(restarts + 1).c_str(), 1);  // inherited by mpirun
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
    const bool setup_error = !r.stalled && WIFEXITED(r.status) && WEXITSTATUS(r.status) == kSetupErrorStatus;
    setup_timeouts_in_a_row = setup_error && r.peer_timeout ? setup_timeouts_in_a_row + 1 : 0;
    if (setup_error) {
      if (!r.peer_timeout) {
        say("not relaunching: a setup or config error does not heal (see the message above)");
        return kSetupErrorStatus;
      }
      if (setup_timeouts_in_a_row >= kSetupTimeoutLaunches) {
        say("not relaunching: the setup timed out in ", setup_timeouts_in_a_row,
            " launches in a row; a cause that repeats, such as loading the data or starting a device "
            "slower than [comm] timeout_s (",
            fixed(config.comm.timeout_s, 1),
            " s), or a rank that cannot start, does not heal: raise [comm] "
            "timeout_s or check the nodes (see the messages above)");
        return kSetupErrorStatus;
      }
      say("the setup error is a collective that timed out (a peer rank died or stopped responding during "
          "setup), not a config error: relaunching (",
          kSetupTimeoutLaunches, " such launches in a row end the job)");
    }
    const NewestCheckpoint after = newest_checkpoint(checkpoint_dir, opt.np);
    if (!r.stalled && WIFEXITED(r.status) && WEXITSTATUS(r.status) == kFaultPersistsStatus) {
      // A relaunch is a fresh process (and device context): it may clear what a rollback inside the
      // job cannot. Twice from the same checkpoint, the fault is in the data or the hardware.
      const std::string from =
          after.step >= 0 ? str_cat("checkpoint step ", after.step) : std::string("step 0 (no checkpoint)");
      if (gave_up_at == after.step) {
        say("not relaunching: the fault ladder gave up twice with the newest checkpoint at ", from,
            " (a relaunch did not clear the fault; check the node, or the checkpoints with perigee-ckpt)");
        return kFaultPersistsStatus;
      }
      say("the fault ladder gave up with the newest checkpoint at ", from,
          ": relaunching once from there (a second give-up from it ends the job)");
      gave_up_at = after.step;
    }
    if (restarts >= opt.max_restarts) {
      say("giving up: ", opt.max_restarts, " restart(s) spent");
      return status_code(r.status) != 0 ? status_code(r.status) : 1;
    }
    failures_in_a_row = after.step > before.step ? 1 : failures_in_a_row + 1;
    const double delay = std::min(opt.backoff_max_s, opt.backoff_s * std::pow(2.0, failures_in_a_row - 1));
    ++restarts;
    say("restart ", restarts, " of ", opt.max_restarts, " in ", fixed(delay, 1), " s",
        after.step > before.step
            ? str_cat(" (the launch advanced the newest checkpoint to step ", after.step, ")")
            : std::string(failures_in_a_row > 1 ? " (no new checkpoint in that launch: back-off doubled)"
                                                : " (no new checkpoint in that launch)"));
    if (const int sig = interruptible_sleep(delay, handled); sig != 0) {
      say("received ", signal_text(sig), " during the back-off: not relaunching");
      return 128 + sig;
    }
  }
}

}  // namespace perigee::tools
