// perigee-bench: nccl-tests-style all-reduce benchmark over emulated laser links. For each topology
// of a suite (or one --topology with its spec options) and each algorithm, sweeps message sizes and
// prints time / algbw / busbw / #wrong out-of-place and in-place in emulated microseconds, next to
// the alpha-beta prediction; --json writes every row, --astra-sim the ASTRA-sim inputs.
//   mpirun -np 8 --oversubscribe perigee-bench [--suite issue7] [-b 8 -e 64M -f 2] [-w 1 -n 5]
//   mpirun -np 4 perigee-bench --topology starlink_plane --mapping spread --algorithms ring,rabenseifner
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/topology/bench_json.hpp"
#include "bench/topology/sizes.hpp"
#include "bench/topology/suite.hpp"
#include "bench/topology/table_printer.hpp"
#include "bench/topology/topology_runner.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "collectives/mpi_init.hpp"

#ifndef PERIGEE_BENCH_TOPOLOGY_DIR
#define PERIGEE_BENCH_TOPOLOGY_DIR "bench/topology"
#endif

namespace {

using namespace perigee;
using namespace perigee::bench::topology;
namespace alg = perigee::collectives::algorithms;

[[noreturn]] void fail(const Status& s) {
  std::fprintf(stderr, "perigee-bench: %s\n", s.to_string().c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::abort();
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
  std::string graph_file = std::string(PERIGEE_BENCH_TOPOLOGY_DIR) + "/example_graph.txt";
  std::vector<std::string> algorithm_names = {"all"};
  double factor = 2.0, overhead_us = 0.0;
  RunnerOptions ro;
  TopologyCase single;
  single.map.mapping = "linear";

  app.add_option("--suite", suite, "topology preset list (" + suite_names() + "); ignored with --topology");
  app.add_option(
      "--topology", topology_kind,
      "one topology kind instead of a suite: walker_delta, walker_star, starlink_shell1, starlink_plane, "
      "grid, cluster, file");
  app.add_option("--planes", single.spec.planes, "planes (walker_*, grid)");
  app.add_option("--sats-per-plane", single.spec.sats_per_plane, "satellites per plane (walker_*, grid)");
  app.add_option("--inclination-deg", single.spec.inclination_deg, "orbit inclination");
  app.add_option("--altitude-km", single.spec.altitude_km, "orbit altitude");
  app.add_option("--phasing", single.spec.phasing, "Walker phasing F");
  app.add_option("--bandwidth-gbps", single.spec.bandwidth_gbps, "per link and direction (Gb/s)");
  app.add_option(
      "--latency-ms",
      [&](const std::vector<std::string>& v) {
        single.spec.fixed_latency_s = std::stod(v.at(0)) * 1e-3;
        return true;
      },
      "grid: per-hop latency (ms)");
  app.add_option("--setup-delay-s", single.spec.setup_delay_s, "link (re)acquisition time");
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
  app.add_option("-f,--stepfactor", factor, "multiplicative step");
  app.add_option("-i,--stepbytes", step_text, "additive step (bytes; overrides -f when > 0)");
  app.add_option("-w,--warmup_iters", ro.warmup, "warm-up iterations per size");
  app.add_option("-n,--iters", ro.iters, "timed iterations per size");
  app.add_option(
      "--time-scale", time_scale_text,
      "wall seconds per emulated second, or auto (per topology and algorithm; see time_scale.hpp)");
  app.add_option("--target-wall-s", ro.policy.target_wall_s,
                 "auto: wall time of the largest size's predicted time");
  app.add_option("--real-margin", ro.policy.real_margin,
                 "auto: emulated wall >= this x the real zero-delay wall of the largest size");
  app.add_option("--t0-s", ro.t0_s, "emulated start time (seconds since the constellation epoch)");
  app.add_option("--overhead-us", overhead_us, "software overhead per message in the model (us)");
  app.add_option("--timeout-s", ro.timeout_s, "wall deadline of each MPI wait");
  app.add_option("--json", json_path, "write every row to this JSON file");
  app.add_option("-d,--datatype", datatype,
                 "element type: float, or bfloat16 (what [comm] grad_dtype = \"bf16\" sends)")
      ->check(CLI::IsMember({"float", "bfloat16"}));
  app.add_option("--astra-sim", astra_dir, "write ASTRA-sim network/system files per topology here");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = rank == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
    MPI_Finalize();
    return code;
  }

  ro.overhead_s = overhead_us * 1e-6;
  ro.astra_sim_dir = astra_dir;
  size_t min_bytes = 0, max_bytes = 0, step_bytes = 0;
  Status st = parse_bytes(min_text, &min_bytes);
  if (st.is_ok()) st = parse_bytes(max_text, &max_bytes);
  if (st.is_ok()) st = parse_bytes(step_text, &step_bytes);
  ro.type = datatype == "bfloat16" ? collectives::DataType::kBFloat16 : collectives::DataType::kFloat32;
  if (st.is_ok()) {
    st =
        make_sizes(min_bytes, max_bytes, factor, step_bytes, collectives::data_type_size(ro.type), &ro.sizes);
  }
  if (st.is_ok()) st = parse_algorithms(algorithm_names, &ro.algorithms);
  if (st.is_ok() && time_scale_text != "auto") {
    try {
      ro.fixed_time_scale = std::stod(time_scale_text);
    } catch (...) {
      ro.fixed_time_scale = -1.0;
    }
    if (!(ro.fixed_time_scale > 0.0)) {
      st = make_error(StatusCode::kInvalidArgument, "--time-scale must be auto or a number > 0, got '",
                      time_scale_text, "'");
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
    if (rank == 0) std::fprintf(stderr, "perigee-bench: %s\n", st.message().c_str());
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
  for (const auto& t : results) {
    for (const auto& a : t.algorithms) wrong += a.wrong_total();
  }
  if (printer) {
    printer->summary(results);
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << run_to_json(info, results).dump(2) << "\n";
      if (!f) {
        std::fprintf(stderr, "perigee-bench: cannot write %s\n", json_path.c_str());
        MPI_Abort(MPI_COMM_WORLD, 2);
      }
      printer->note("wrote " + json_path);
    }
  }
  MPI_Finalize();
  return wrong == 0 ? 0 : 1;
}
