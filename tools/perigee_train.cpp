// perigee-train: the data-parallel training job, one MPI rank per satellite node.
//   mpirun -np 4 perigee-train configs/demo.toml [--train.lr=3e-4 ...]
// Every setup error (config, data, device, world size, ranks that would run different jobs) is reported once
// with its cause and all ranks exit with status 2; an error during training aborts the whole job (no rank is
// left waiting in a collective) with status 3, or 4 when the fault ladder gave up (tools/exit_status.hpp).
#include <mpi.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "collectives/mpi_init.hpp"
#include "core/version.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "runtime/comm_setup.hpp"
#include "runtime/config.hpp"
#include "runtime/device.hpp"
#include "runtime/log.hpp"
#include "runtime/rank_agreement.hpp"
#include "runtime/trainer.hpp"
#include "tools/exit_status.hpp"

namespace {

using namespace perigee;
namespace rt = perigee::runtime;

// This rank's index among the ranks on its host, their number, and whether world rank 0 is one of them.
void local_ranks(int* local_rank, int* local_size, bool* rank0_here) {
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, local_rank);
  MPI_Comm_size(local, local_size);
  int world_rank = 0, lowest = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Allreduce(&world_rank, &lowest, 1, MPI_INT, MPI_MIN, local);
  *rank0_here = lowest == 0;
  MPI_Comm_free(&local);
}

// PERIGEE_LAUNCH, which perigee-run sets to 1, 2, ... for each (re)launch; 0 when unset or malformed.
int launch_index() {
  const char* text = std::getenv("PERIGEE_LAUNCH");
  if (text == nullptr) return 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > 1000000) {
    rt::log::warn("PERIGEE_LAUNCH=\"", text, "\" is not a launch number: ignored");
    return 0;
  }
  return static_cast<int>(v);
}

// All ranks learn whether any rank failed. Returns 0 when none did; otherwise the lowest failing
// rank's number + 1. A rank whose own step failed logs its message (rank 0 also logs a summary).
int agree_on_failure(const Status& local, const char* stage) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int mine = local.is_ok() ? 1 << 30 : rank;
  int first = 0;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == 1 << 30) return 0;
  if (!local.is_ok()) rt::log::error(stage, " failed: ", local.to_string());
  if (rank == 0 && local.is_ok()) rt::log::error(stage, " failed on rank ", first, " (message above)");
  return first + 1;
}

// The job; returns the exit status. Every object is destroyed before MPI_Finalize.
int run_job(int argc, char** argv) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  rt::log::set_rank(rank);

  CLI::App app{
      "perigee-train: data-parallel GPT training (one MPI rank per node).\n"
      "Overrides: --section.key=value, e.g. --train.lr=3e-4 --model.n_layer=6"};
  std::string config_path;
  bool print_only = false;
  app.add_option("config", config_path, "TOML config file (see docs/config.md)")->required();
  app.add_flag(
      "--print-config", print_only,
      "print the config as JSON (after overrides and derived values; [device] \"auto\" keys are resolved "
      "once a device is chosen, as the log's resolved config shows) and exit");
  app.set_version_flag("--version", perigee::version_text("perigee-train"));
  app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = rank == 0 ? app.exit(e) : e.get_exit_code();
    return code == 0 ? 0 : tools::kSetupErrorStatus;
  }
  const std::vector<std::string> overrides = app.remaining();

  rt::Config config;
  Status s = rt::load_config(config_path, overrides, &config);
  if (agree_on_failure(s, "config") != 0) return tools::kSetupErrorStatus;
  if (print_only) {
    if (rank == 0) std::printf("%s\n", rt::config_to_json(config).c_str());
    return 0;
  }

  rt::DeviceSelection device;
  int local_rank = 0, local_size = 1;
  bool rank0_here = true;
  local_ranks(&local_rank, &local_size, &rank0_here);
  s = rt::select_device(config, local_rank, local_size, &device);
  if (agree_on_failure(s, "device setup") != 0) return tools::kSetupErrorStatus;
  config.device = device.resolved;  // "auto" storage and fusion as chosen for this device
  // Every rank must run the same job (its own config file and device may say otherwise).
  s = rt::check_ranks_agree(rt::describe_job(config, device.kind), MPI_COMM_WORLD);
  if (agree_on_failure(s, "rank agreement") != 0) return tools::kSetupErrorStatus;
  rt::CommSetup comm;
  s = rt::setup_communicators(config.comm, config.links, device, MPI_COMM_WORLD, &comm);
  if (agree_on_failure(s, "communicator setup") != 0) return tools::kSetupErrorStatus;

  rt::TrainerOptions options;
  const bool tty = isatty(STDOUT_FILENO) != 0;
  options.progress_bar = rank == 0 && (config.run.progress == "on" || (config.run.progress == "auto" && tty));
  options.host_ranks = local_size;
  options.memory_ranks = device.memory_ranks;
  options.rank0_on_host = rank0_here;
  options.launch = launch_index();
  rt::Trainer trainer(config, comm.host.get(), device.backend.get(), options);
  trainer.set_gradient_communicator(&comm.gradient_comm());
  s = trainer.setup();
  if (agree_on_failure(s, "setup") != 0) return tools::kSetupErrorStatus;

  rt::log::info("perigee-train ", kVersion, ": ", world, " rank(s), device ", device.description,
                ", gradients over ", comm.description);
  rt::log::info("cuda probe (built with CUDA ", kernels::cuda::compiled_runtime_version(),
                "): ", device.cuda_probe);
  const auto& m = trainer.model();
  rt::log::info("model: GPT ", config.model.n_layer, " layers, ", config.model.n_head, " heads, ",
                config.model.n_embd, " channels, context ", config.model.context, ", vocab ",
                config.model.vocab_size, " (padded ", config.model.padded_vocab, "): ", m.num_parameters(),
                " parameters, ", m.activation_bytes() / (1024 * 1024),
                " MiB activations per rank (GEMM operands ", kernels::dtype_name(m.activation_dtype()),
                ", logits ", kernels::dtype_name(m.logits_dtype()), ")");
  rt::log::info("data: ", config.data.train_file, " (", trainer.train_loader().num_tokens(), " tokens, ",
                trainer.train_loader().num_samples(), " samples of ", config.train.seq_len,
                "); global batch ", config.train.batch_size, " = ", world, " x ",
                config.train.batch_size / world,
                trainer.passes_per_step() > 1
                    ? perigee::str_cat(" (", trainer.passes_per_step(), " accumulated passes of ",
                                       trainer.micro_batch(), " per rank)")
                    : std::string());
  rt::log::info("run directory: ", trainer.run_dir(), "\nresolved config:\n", rt::config_to_json(config));
  if (rank == 0)
    for (const std::string& w : rt::config_warnings(config))
      rt::log::warn(config.source.empty() ? "config" : config.source, ": ", w);

  s = trainer.run();
  if (s.is_ok()) s = comm.close();
  if (!s.is_ok()) {
    rt::log::error("training failed: ", s.to_string());
    const int code = tools::training_exit_status(s);
    MPI_Abort(MPI_COMM_WORLD, code);
    return code;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  collectives::init_mpi(&argc, &argv);
  const int rc = run_job(argc, argv);
  perigee::runtime::log::close_file();
  MPI_Finalize();
  return rc;
}
