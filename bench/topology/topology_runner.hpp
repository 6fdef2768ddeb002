// Runs perigee-bench on one topology case: builds the topology, rank map and routes, then for each
// algorithm picks the time scale (time_scale.hpp), creates an EmulatedLinkCommunicator and sweeps
// the sizes (out-of-place and in-place, warm-up then timed iterations, a validation of every
// element), with the alpha-beta prediction next to each row. Collective over MPI_COMM_WORLD: every
// rank calls it; only rank 0 prints (printer != nullptr).
#pragma once

#include <string>
#include <vector>

#include "bench/topology/bench_result.hpp"
#include "bench/topology/suite.hpp"
#include "bench/topology/table_printer.hpp"
#include "bench/topology/time_scale.hpp"
#include "collectives/algorithms/schedule.hpp"
#include "collectives/communicator.hpp"
#include "core/status.hpp"

namespace perigee::bench::topology {

struct RunnerOptions {
  std::vector<size_t> sizes;                                     // bytes, ascending
  collectives::DataType type = collectives::DataType::kFloat32;  // kFloat32 or kBFloat16
  int warmup = 1;
  int iters = 5;
  std::vector<collectives::algorithms::Algorithm> algorithms;
  double fixed_time_scale = 0.0;  // > 0: use it; 0: automatic
  TimeScalePolicy policy;
  double t0_s = 0.0;          // emulated start (orbit phase)
  double overhead_s = 0.0;    // software cost per message (model)
  double timeout_s = 120.0;   // wall deadline of each MPI wait
  std::string astra_sim_dir;  // "" = no ASTRA-sim files
};

// Builds the case's topology and rank map without running anything (no MPI): the same verdict on
// every rank, so a bad spec can end the program before any collective.
Status check_case(const TopologyCase& c, int ranks);

Status run_topology(const TopologyCase& c, const RunnerOptions& opt, TablePrinter* printer,
                    TopologyResult* out);

}  // namespace perigee::bench::topology
