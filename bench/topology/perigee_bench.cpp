// perigee-bench: nccl-tests-style all-reduce benchmark over emulated laser links. For each topology
// of a suite (or one --topology with its spec options) and each algorithm, sweeps message sizes and
// prints time / algbw / busbw / #wrong out-of-place and in-place in emulated microseconds, next to
// the alpha-beta prediction; --json writes every row, --astra-sim the ASTRA-sim inputs.
//   mpirun -np 8 --oversubscribe perigee-bench [--suite issue7] [-b 8 -e 64M -f 2] [-w 1 -n 5]
//   mpirun -np 4 perigee-bench --topology starlink_plane --mapping spread --algorithms ring,rabenseifner
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/topology/bench_json.hpp"
#include "bench/topology/sizes.hpp"
#include "bench/topology/suite.hpp"
#include "bench/topology/table_printer.hpp"
#include "bench/topology/topology_runner.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "collectives/mpi_init.hpp"
#include "core/version.hpp"
#include "kernels/cpu/host_memory.hpp"
#include "runtime/cli_checks.hpp"

#ifndef PERIGEE_BENCH_TOPOLOGY_DIR
#define PERIGEE_BENCH_TOPOLOGY_DIR "bench/topology"
#endif
#ifndef PERIGEE_BENCH_INSTALLED_TOPOLOGY_DIR
#define PERIGEE_BENCH_INSTALLED_TOPOLOGY_DIR "../share/perigee/topology"
#endif

namespace {

using namespace perigee;
using namespace perigee::bench::topology;
namespace alg = perigee::collectives::algorithms;
using perigee::runtime::cli::integer_at_least;
using perigee::runtime::cli::parse_finite;

constexpr const char* kProgram = "perigee-bench";

// The example graph of the "file" topology: installed beside the program
// (PERIGEE_BENCH_INSTALLED_TOPOLOGY_DIR, relative to the binary's folder), else in the source tree the
// build came from.
std::string default_graph_file() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path installed =
        self.parent_path() / PERIGEE_BENCH_INSTALLED_TOPOLOGY_DIR / "example_graph.txt";
    if (std::filesystem::is_regular_file(installed, ec)) return installed.lexically_normal().string();
  }
  return std::string(PERIGEE_BENCH_TOPOLOGY_DIR) + "/example_graph.txt";
}

[[noreturn]] void fail(const Status& s) {
  std::fprintf(stderr, "perigee-bench: %s\n", s.to_string().c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::abort();
}

// The runner holds two buffers of the largest size per rank (topology_runner.cpp). A sweep whose
// buffers, over the ranks that share a machine, exceed its physical memory is refused up front
// instead of being killed by the OOM killer partway through. Collective over MPI_COMM_WORLD.
Status check_buffer_memory(size_t largest) {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local_ranks = 1;
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  // The machine's memory, or the tightest cgroup limit when lower (0 when it cannot be read).
  kernels::cpu::HostMemory host;
  const double memory =
      kernels::cpu::probe_host_memory(&host).is_ok() ? static_cast<double>(host.total) : 0.0;
  const double need = 2.0 * static_cast<double>(largest) * local_ranks;
  int short_here = memory > 0.0 && need > memory ? 1 : 0;
  int short_any = 0;
  MPI_Allreduce(&short_here, &short_any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (short_any == 0) return Status::ok();
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  if (short_here == 0) {
    return make_error(StatusCode::kInvalidArgument, "--maxbytes: 2 buffers of ", largest,
                      " bytes per rank do not fit in the memory of another machine of this run");
  }
  return make_error(StatusCode::kInvalidArgument, "--maxbytes: the largest size needs 2 buffers of ",
                    fixed(static_cast<double>(largest) / kGiB, 1), " GiB per rank, ", fixed(need / kGiB, 1),
                    " GiB for the ", local_ranks, " rank(s) on this machine, more than its ",
                    fixed(memory / kGiB, 1), " GiB of memory");
}

Status parse_algorithms(const std::vector<std::string>& names, std::vector<alg::Algorithm>* out) {
  out->clear();
  for (const auto& n : names) {
    if (n == "all") {
      *out = {alg::Algorithm::kRing,         alg::Algorithm::kRabenseifner,     alg::Algorithm::kTorus2d,
              alg::Algorithm::kHierarchical, alg::Algorithm::kDoubleBinaryTree, alg::Algorithm::kNative};
      return Status::ok();
    }
    alg::Algorithm a;
    PERIGEE_CHECK(alg::parse_algorithm(n, &a));
    out->push_back(a);
  }
  PERIGEE_REQUIRE(!out->empty(), StatusCode::kInvalidArgument, "no algorithm given");
  return Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  collectives::init_mpi(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);

  CLI::App app{"perigee-bench: all-reduce over emulated laser-link topologies (nccl-tests layout)"};
  std::string suite = "issue7", topology_kind, time_scale_text = "auto", json_path, astra_dir;
  std::string min_text = "8", max_text = "64M", step_text = "0", datatype = "float";
  std::string graph_file = default_graph_file();
  std::vector<std::string> algorithm_names = {"all"};
  double factor = 2.0, overhead_us = 0.0;
  RunnerOptions ro;
  TopologyCase single;
  single.map.mapping = "linear";
  double latency_ms = single.spec.fixed_latency_s * 1e3;
  const CLI::Validator finite = runtime::cli::any_finite();
  const CLI::Validator non_negative = runtime::cli::finite_at_least_zero();
  const CLI::Validator positive = runtime::cli::finite_above_zero();
  const CLI::Validator auto_or_positive(
      [](std::string& text) -> std::string {
        double v = 0.0;
        if (text == "auto" || (parse_finite(text, &v) && v > 0.0)) return std::string();
        return "expected auto or a finite number > 0, got '" + text + "'";
      },
      "auto or a finite number > 0");

  app.add_option("--suite", suite, "topology preset list (" + suite_names() + "); ignored with --topology");
  app.add_option(
      "--topology", topology_kind,
      "one topology kind instead of a suite: walker_delta, walker_star, starlink_shell1, starlink_plane, "
      "grid, cluster, file");
  // The shape options and the topologies that take them (the presets fix their own); an option given
  // where it would be ignored is refused.
  const std::vector<std::pair<CLI::Option*, std::vector<std::string>>> shape = {
      {app.add_option("--planes", single.spec.planes, "planes (walker_*, grid)"),
       {"walker_delta", "walker_star", "grid"}},
      {app.add_option("--sats-per-plane", single.spec.sats_per_plane,
                      "satellites per plane (walker_*, grid)"),
       {"walker_delta", "walker_star", "grid"}},
      {app.add_option("--inclination-deg", single.spec.inclination_deg, "orbit inclination (walker_*)"),
       {"walker_delta", "walker_star"}},
      {app.add_option("--altitude-km", single.spec.altitude_km, "orbit altitude (walker_*)"),
       {"walker_delta", "walker_star"}},
      {app.add_option("--phasing", single.spec.phasing, "Walker phasing F (walker_*)"),
       {"walker_delta", "walker_star"}},
      {app.add_option("--bandwidth-gbps", single.spec.bandwidth_gbps,
                      "per link and direction (Gb/s; all but cluster, 1.6 Tb/s)")
           ->check(positive),
       {"walker_delta", "walker_star", "starlink_shell1", "starlink_plane", "grid", "file"}}};
  app.add_option("--latency-ms", latency_ms, "grid: per-hop latency (ms)")->check(non_negative);
  app.add_option("--setup-delay-s", single.spec.setup_delay_s, "link (re)acquisition time")
      ->check(non_negative);
  app.add_option("--graph-file", graph_file, "file topology: the graph (suite and --topology file)");
  app.add_option("--mapping", single.map.mapping, "rank map: linear, spread, grid, list");
  app.add_option("--ranks-per-satellite", single.map.ranks_per_satellite, "ranks (GPUs) per satellite");
  app.add_option("--grid-x", single.map.grid_x,
                 "mapping grid: satellites along a plane (0 = most square block)");
  app.add_option("--grid-y", single.map.grid_y, "mapping grid: planes");
  app.add_option("--satellites", single.map.satellites, "mapping list: satellite of each rank")
      ->delimiter(',');
  app.add_option("--algorithms", algorithm_names,
                 "ring, rabenseifner, torus2d, hierarchical, double_binary_tree, native, or all")
      ->delimiter(',');
  app.add_option("-b,--minbytes", min_text, "smallest size (K/M/G suffixes)");
  app.add_option("-e,--maxbytes", max_text, "largest size");
  app.add_option("-f,--stepfactor", factor, "multiplicative step")->check(finite);
  app.add_option("-i,--stepbytes", step_text, "additive step (bytes; overrides -f when > 0)");
  app.add_option("-w,--warmup_iters", ro.warmup, "warm-up iterations per size")->check(integer_at_least(0));
  app.add_option("-n,--iters", ro.iters, "timed iterations per size")->check(integer_at_least(1));
  app.add_option("--time-scale", time_scale_text,
                 "wall seconds per emulated second, or auto (per topology and algorithm; see time_scale.hpp)")
      ->check(auto_or_positive);
  app.add_option("--target-wall-s", ro.policy.target_wall_s,
                 "auto: wall time of the largest size's predicted time")
      ->check(positive);
  app.add_option("--real-margin", ro.policy.real_margin,
                 "auto: emulated wall >= this x the real zero-delay wall of the largest size (0: no floor)")
      ->check(non_negative);
  app.add_option("--t0-s", ro.t0_s, "emulated start time (seconds since the constellation epoch)")
      ->check(finite);
  app.add_option("--overhead-us", overhead_us, "software overhead per message in the model (us)")
      ->check(non_negative);
  app.add_option("--timeout-s", ro.timeout_s, "wall deadline of each MPI wait (0: none)")
      ->check(non_negative);
  app.add_option("--json", json_path, "write every row to this JSON file");
  app.add_option("-d,--datatype", datatype,
                 "element type: float, or bfloat16 (what [comm] grad_dtype = \"bf16\" sends)")
      ->check(CLI::IsMember({"float", "bfloat16"}));
  app.add_option("--astra-sim", astra_dir, "write ASTRA-sim network/system files per topology here");
  app.set_version_flag("--version", perigee::version_text(kProgram));
  // One line per error, as the other errors below: "perigee-bench: --opt: what is wrong".
  app.failure_message(
      [](const CLI::App*, const CLI::Error& e) { return std::string(kProgram) + ": " + e.what() + "\n"; });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (rank == 0) app.exit(e);  // prints the help, or the error
    MPI_Finalize();
    return e.get_exit_code() == 0 ? 0 : 2;
  }

  // A sweep must not be lost at its end for a typo in the JSON path: rank 0 checks it now and
  // every rank learns the verdict.
  if (!json_path.empty()) {
    int json_ok = rank == 0 ? (bench::check_json_path(kProgram, json_path) ? 1 : 0) : 0;
    MPI_Bcast(&json_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (json_ok == 0) {
      MPI_Finalize();
      return 2;
    }
  }

  single.spec.fixed_latency_s = latency_ms * 1e-3;
  ro.overhead_s = overhead_us * 1e-6;
  ro.astra_sim_dir = astra_dir;
  size_t min_bytes = 0, max_bytes = 0, step_bytes = 0;
  Status st = parse_bytes(min_text, &min_bytes);
  if (!st.is_ok()) st = make_error(st.code(), "--minbytes: ", st.message());
  if (st.is_ok()) {
    st = parse_bytes(max_text, &max_bytes);
    if (!st.is_ok()) st = make_error(st.code(), "--maxbytes: ", st.message());
  }
  if (st.is_ok()) {
    st = parse_bytes(step_text, &step_bytes);
    if (!st.is_ok()) st = make_error(st.code(), "--stepbytes: ", st.message());
  }
  ro.type = datatype == "bfloat16" ? collectives::DataType::kBFloat16 : collectives::DataType::kFloat32;
  if (st.is_ok()) {
    st =
        make_sizes(min_bytes, max_bytes, factor, step_bytes, collectives::data_type_size(ro.type), &ro.sizes);
  }
  if (st.is_ok()) st = check_buffer_memory(ro.sizes.back());  // collective; st is alike on every rank
  if (st.is_ok()) st = parse_algorithms(algorithm_names, &ro.algorithms);
  if (st.is_ok() && time_scale_text != "auto") {
    // auto_or_positive has checked the text; this converts it (and would still catch a bad one).
    if (!parse_finite(time_scale_text, &ro.fixed_time_scale) || !(ro.fixed_time_scale > 0.0)) {
      st = make_error(StatusCode::kInvalidArgument,
                      "--time-scale: expected auto or a finite number > 0, got '", time_scale_text, "'");
    }
  }
  for (const auto& [option, kinds] : shape) {
    if (!st.is_ok() || option->count() == 0) continue;
    if (topology_kind.empty()) {
      st = make_error(StatusCode::kInvalidArgument, option->get_name(),
                      ": applies to --topology only (the suite's topologies are fixed)");
    } else if (std::find(kinds.begin(), kinds.end(), topology_kind) == kinds.end()) {
      st = make_error(StatusCode::kInvalidArgument, option->get_name(), ": --topology ", topology_kind,
                      " fixes it (it applies to ", str_join(kinds, ", "), ")");
    }
  }
  std::vector<TopologyCase> cases;
  if (st.is_ok()) {
    if (!topology_kind.empty()) {
      single.label = topology_kind;
      single.spec.kind = topology_kind;
      if (topology_kind == "file") single.spec.file = graph_file;
      cases.push_back(single);
      suite.clear();
    } else {
      st = suite_cases(suite, ranks, graph_file, &cases);
    }
  }
  for (const auto& c : cases) {
    if (!st.is_ok()) break;
    st = check_case(c, ranks);
    if (!st.is_ok()) st = make_error(st.code(), "topology ", c.label, ": ", st.message());
  }
  if (!st.is_ok()) {
    if (rank == 0) std::fprintf(stderr, "%s: %s\n", kProgram, first_line(st.message()).c_str());
    MPI_Finalize();
    return 2;
  }

  RunInfo info;
  info.ranks = ranks;
  info.min_bytes = ro.sizes.front();
  info.max_bytes = ro.sizes.back();
  info.factor = factor;
  info.step_bytes = step_bytes;
  info.warmup = ro.warmup;
  info.iters = ro.iters;
  info.suite = suite;
  info.time_scale = time_scale_text;
  TablePrinter table(stdout);
  TablePrinter* printer = rank == 0 ? &table : nullptr;
  if (printer) printer->run_header(info);

  std::vector<TopologyResult> results;
  for (const auto& c : cases) {
    TopologyResult r;
    st = run_topology(c, ro, printer, &r);
    if (!st.is_ok()) fail(st.add_trace(__FILE__, __LINE__));
    results.push_back(std::move(r));
  }
  long long wrong = 0;
  int ran_here = 0;
  for (const auto& t : results) {
    for (const auto& a : t.algorithms) {
      wrong += a.wrong_total();
      if (!a.skipped) ++ran_here;
    }
  }
  int ran = 0;  // the runner skips alike on every rank; the reduction makes the exit code agree anyway
  MPI_Allreduce(&ran_here, &ran, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  int json_written = 1;
  if (printer) {
    printer->summary(results);
    if (!json_path.empty()) {
      json_written = bench::write_json_text(kProgram, json_path, run_to_json(info, results).dump(2)) ? 1 : 0;
      if (json_written != 0) printer->note("wrote " + json_path);
    }
  }
  if (!json_path.empty()) MPI_Bcast(&json_written, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (ran == 0 && rank == 0) {
    std::fprintf(stderr, "%s: no algorithm ran: every one was skipped on every topology (reasons above)\n",
                 kProgram);
  }
  MPI_Finalize();
  if (json_written == 0) return 2;
  return wrong == 0 && ran > 0 ? 0 : 1;
}
