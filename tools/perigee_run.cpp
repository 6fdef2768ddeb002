// perigee-run: the supervisor. Runs `mpirun -np N perigee-train CONFIG overrides...` as a child in
// its own process group and relaunches it from the newest good checkpoint when it fails (a rank
// lost power, died, or stopped responding), with bounded restarts and exponential back-off.
//   perigee-run --np 4 configs/demo.toml --checkpoint.every_steps=50 [--train.lr=3e-4 ...]
// Exit status: 0 when a launch completes; 2 for a setup/config error (never retried: a bad config
// will not heal); 128+signal when stopped by SIGINT/SIGTERM/SIGHUP; otherwise, once the restarts
// are spent, the last launch's status (exit code, or 128+signal). docs/supervisor.md has the design:
// the restart policy, the stall watchdog and what it catches that the MPI timeouts cannot.
// This file is the command line; the supervisor is perigee_run_supervisor.cpp (the restart loop) and
// perigee_run_launch.cpp (one launch), sharing tools/perigee_run_internal.hpp.
#include <CLI/CLI.hpp>

#include "core/version.hpp"
#include "runtime/cli_checks.hpp"
#include "tools/perigee_run_internal.hpp"

using perigee::tools::kSetupErrorStatus;
using perigee::tools::Options;
using perigee::tools::run;

int main(int argc, char** argv) {
  CLI::App app{
      "perigee-run: supervises perigee-train under mpirun and relaunches it from the newest good checkpoint "
      "when "
      "a rank fails or the job stops making progress.\n"
      "  perigee-run [options] CONFIG [--section.key=value ...]   (overrides go to perigee-train)"};
  Options opt;
  // Whole-text checks (runtime/cli_checks.hpp): CLI11's own number checks let "nan" through.
  // At most about three years: the supervisor adds these to clock time points, whose nanosecond count
  // a larger value overflows (a 1e10 s grace or back-off came out as a time in the past).
  constexpr double kMaxSeconds = 1e8;
  const CLI::Validator seconds = perigee::runtime::cli::finite_number(
      "a finite number of seconds in [0, 1e8]", [](double v) { return v >= 0.0 && v <= kMaxSeconds; });
  app.add_option("--np", opt.np, "number of ranks (mpirun -np)")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--max-restarts", opt.max_restarts, "relaunches after failures before giving up")
      ->check(perigee::runtime::cli::integer_in(0, 1000000));
  app.add_option("--backoff", opt.backoff_s,
                 "seconds before the first relaunch; doubles per failure in a row")
      ->check(seconds);
  app.add_option("--backoff-max", opt.backoff_max_s, "largest back-off in seconds")->check(seconds);
  // Under a second no job shows progress (the watchdog reads its files), so such a timeout would kill
  // every launch before its first step.
  app.add_option("--stall-timeout", opt.stall_timeout_s,
                 "kill and relaunch a job that shows no progress for this many seconds (0 = off)")
      ->check(perigee::runtime::cli::finite_number("0 (off) or a finite number in [1, 1e8]", [](double v) {
        return v == 0.0 || (v >= 1.0 && v <= kMaxSeconds);
      }));
  app.add_option("--grace", opt.grace_s, "seconds a forwarded SIGINT/SIGTERM gets before SIGKILL")
      ->check(seconds);
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
  app.set_version_flag("--version", perigee::version_text("perigee-run"));
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
