// One topology case of perigee-bench (see topology_runner.hpp).
#include "bench/topology/topology_runner.hpp"

#include <mpi.h>

#include <filesystem>
#include <map>
#include <memory>
#include <tuple>

#include "bench/topology/fill_check.hpp"
#include "collectives/algorithms/cost_model.hpp"
#include "collectives/emulated_link_communicator.hpp"
#include "collectives/links/astra_sim.hpp"
#include "collectives/links/rank_map.hpp"
#include "collectives/links/topology.hpp"

namespace perigee::bench::topology {

namespace {

namespace alg = collectives::algorithms;
namespace lk = collectives::links;
using collectives::DataType;
using collectives::EmulatedLinkCommunicator;
using collectives::EmulationOptions;
using collectives::ReduceOp;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  return p;
}

double max_over_ranks(double v) {
  double m = v;
  MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

long long sum_over_ranks(long long v) {
  long long s = v;
  MPI_Allreduce(&v, &s, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  return s;
}

// Algorithms whose shape the rank map cannot give are skipped with the reason; the others are
// checked by EmulatedLinkCommunicator::create (it builds a schedule for this world size).
bool shape_fits(alg::Algorithm a, const lk::RankMap& map, int p, std::string* why) {
  if (a == alg::Algorithm::kTorus2d && (map.grid_x <= 0 || map.grid_y <= 0 || map.grid_x * map.grid_y != p)) {
    *why = "needs the ranks on a grid block (--mapping grid on a +Grid topology); this rank map has none";
    return false;
  }
  if (a == alg::Algorithm::kHierarchical &&
      (map.ranks_per_satellite <= 1 || p % map.ranks_per_satellite != 0)) {
    *why =
        "needs several ranks per satellite (--ranks-per-satellite > 1 dividing the ranks); with one it is "
        "the ring";
    return false;
  }
  if (a == alg::Algorithm::kAuto) {
    *why = "auto is not benchmarked on its own (it picks one of the others)";
    return false;
  }
  return true;
}

// The algorithm whose prediction stands for `a`: native charges the ring schedule's delay.
alg::Algorithm predicted_as(alg::Algorithm a) {
  return a == alg::Algorithm::kNative ? alg::Algorithm::kRing : a;
}

Status predict(alg::Algorithm a, alg::ScheduleParams shape, size_t count, const alg::RouteFn& routes,
               const RunnerOptions& opt, alg::Prediction* out) {
  shape.count = count;
  return alg::predict_allreduce(predicted_as(a), shape, collectives::data_type_size(opt.type), routes,
                                opt.t0_s, opt.overhead_s, out);
}

struct Buffers {
  std::vector<unsigned char> send, recv;  // elements of RunnerOptions::type
};

// Times `iters` all-reduces after the warm-up and checks the result: out-of-place from send into
// recv; in-place on recv (refilled, validated on its first run, which also warms up).
Status measure(EmulatedLinkCommunicator& comm, alg::Algorithm a, Buffers& buf, size_t count, bool in_place,
               const RunnerOptions& opt, double scale, PlacementResult* out) {
  const int rank = comm.rank();
  const int p = comm.size();
  const DataType type = opt.type;
  void* send = buf.send.data();
  void* recv = buf.recv.data();
  long long wrong = 0;
  int warm = opt.warmup;
  if (in_place) {
    fill_rank_data(recv, count, rank, type);
    PERIGEE_CHECK(comm.all_reduce_with(a, recv, recv, count, type, ReduceOp::kSum));
    wrong = count_wrong(recv, count, p, type);
    --warm;
    send = recv;
  } else {
    fill_rank_data(send, count, rank, type);
    poison(recv, count, type);
  }
  for (int i = 0; i < warm; ++i) {
    PERIGEE_CHECK(comm.all_reduce_with(a, send, recv, count, type, ReduceOp::kSum));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  double model_s = 0.0;
  const double t0 = MPI_Wtime();
  for (int i = 0; i < opt.iters; ++i) {
    PERIGEE_CHECK(comm.all_reduce_with(a, send, recv, count, type, ReduceOp::kSum));
    model_s += comm.last().model_s;
  }
  const double wall = max_over_ranks(MPI_Wtime() - t0) / opt.iters;
  if (!in_place) wrong = count_wrong(recv, count, p, type);
  out->wall_us = wall * 1e6;
  out->time_us = wall / scale * 1e6;
  out->model_us = model_s / opt.iters * 1e6;
  const double bytes = static_cast<double>(count * collectives::data_type_size(type));
  out->alg_bw = out->time_us > 0 ? bytes / (out->time_us * 1e-6) / 1e9 : 0.0;
  out->bus_bw = out->alg_bw * 2.0 * (p - 1) / p;
  out->wrong = sum_over_ranks(wrong);
  return Status::ok();
}

// Real wall time of the algorithm's largest all-reduce with every link delay at zero (uniform
// routes, no latency, unbounded bandwidth, scale 1): the floor under which the emulation would
// show this machine instead of the links. Cached per (algorithm, shape, count).
Status calibrate(alg::Algorithm a, const alg::ScheduleParams& shape, size_t count, const RunnerOptions& opt,
                 Buffers& buf, double* real_s) {
  using Key = std::tuple<int, int, int, int, size_t, int>;
  static std::map<Key, double> cache;
  const Key key{static_cast<int>(a),  shape.grid_x, shape.grid_y,
                shape.ranks_per_node, count,        static_cast<int>(opt.type)};
  if (auto it = cache.find(key); it != cache.end()) {
    *real_s = it->second;
    return Status::ok();
  }
  EmulationOptions eo;
  eo.algorithm = a;
  eo.shape = shape;
  eo.time_scale = 1.0;
  eo.timeout_s = opt.timeout_s;
  std::unique_ptr<EmulatedLinkCommunicator> comm;
  PERIGEE_CHECK(EmulatedLinkCommunicator::create(MPI_COMM_WORLD,
                                                 alg::uniform_route_fn(world_size(), 0.0, 1e18), eo, &comm));
  RunnerOptions quick = opt;
  quick.warmup = 1;
  quick.iters = 2;
  PlacementResult r;
  PERIGEE_CHECK(measure(*comm, a, buf, count, false, quick, 1.0, &r));
  *real_s = r.wall_us * 1e-6;
  cache.emplace(key, *real_s);
  return Status::ok();
}

Status run_algorithm(alg::Algorithm a, const alg::ScheduleParams& shape, const alg::RouteFn& routes,
                     const RunnerOptions& opt, Buffers& buf, TablePrinter* printer, AlgorithmResult* ar) {
  const size_t elem = collectives::data_type_size(opt.type);
  const size_t largest = opt.sizes.back() / elem;
  alg::Prediction top;
  Status ps = predict(a, shape, largest, routes, opt, &top);
  if (!ps.is_ok()) {  // deterministic: every rank skips alike
    ar->skipped = true;
    ar->reason = "no prediction: " + ps.message();
    if (printer) printer->skipped(*ar);
    return Status::ok();
  }
  ar->formula = top.formula;
  if (a == alg::Algorithm::kNative) {
    ar->predicted_note = "(native: MPI_Allreduce moves the data; the links charge the ring schedule's delay)";
  }
  EmulationOptions eo;
  eo.algorithm = a;
  eo.shape = shape;
  eo.t0_s = opt.t0_s;
  eo.timeout_s = opt.timeout_s;
  eo.timing.overhead_s = opt.overhead_s;
  std::unique_ptr<EmulatedLinkCommunicator> comm;
  if (opt.fixed_time_scale > 0.0) {
    ar->time_scale = opt.fixed_time_scale;
    ar->time_scale_reason = "fixed (--time-scale)";
  } else {
    // The probe communicator of create() also tells whether the algorithm fits this world size.
    Status fit = EmulatedLinkCommunicator::create(MPI_COMM_WORLD,
                                                  alg::uniform_route_fn(world_size(), 0.0, 1e18), eo, &comm);
    if (!fit.is_ok()) {
      ar->skipped = true;
      ar->reason = fit.message();
      if (printer) printer->skipped(*ar);
      return Status::ok();
    }
    comm.reset();
    PERIGEE_CHECK(calibrate(a, shape, largest, opt, buf, &ar->calibration_wall_s));
    const TimeScaleChoice choice = choose_time_scale(top.seconds, ar->calibration_wall_s, opt.policy);
    ar->time_scale = choice.scale;
    ar->time_scale_reason = choice.reason;
  }
  eo.time_scale = ar->time_scale;
  Status made = EmulatedLinkCommunicator::create(MPI_COMM_WORLD, routes, eo, &comm);
  if (!made.is_ok()) {
    ar->skipped = true;
    ar->reason = made.message();
    if (printer) printer->skipped(*ar);
    return Status::ok();
  }
  if (printer) printer->algorithm_header(*ar);
  for (size_t bytes : opt.sizes) {
    RowResult row;
    row.bytes = bytes;
    row.count = bytes / elem;
    row.type = collectives::data_type_name(opt.type);
    alg::Prediction pr;
    PERIGEE_CHECK(predict(a, shape, row.count, routes, opt, &pr));
    row.predicted_us = pr.seconds * 1e6;
    row.formula = pr.formula;
    PERIGEE_CHECK(measure(*comm, a, buf, row.count, false, opt, ar->time_scale, &row.out_of_place));
    PERIGEE_CHECK(measure(*comm, a, buf, row.count, true, opt, ar->time_scale, &row.in_place));
    if (printer) printer->row(row);
    ar->rows.push_back(std::move(row));
  }
  if (printer) printer->algorithm_footer(*ar);
  return Status::ok();
}

}  // namespace

Status check_case(const TopologyCase& c, int ranks) {
  std::unique_ptr<lk::Topology> topo;
  PERIGEE_CHECK(lk::make_topology(c.spec, &topo));
  lk::RankMap map;
  PERIGEE_CHECK(lk::make_rank_map(*topo, ranks, c.map, &map));
  return Status::ok();
}

Status run_topology(const TopologyCase& c, const RunnerOptions& opt, TablePrinter* printer,
                    TopologyResult* out) {
  PERIGEE_REQUIRE(!opt.sizes.empty(), StatusCode::kInvalidArgument, "no sizes to run");
  PERIGEE_REQUIRE(opt.iters >= 1, StatusCode::kInvalidArgument, "iters must be >= 1");
  const int p = world_size();
  std::unique_ptr<lk::Topology> made;
  PERIGEE_CHECK(lk::make_topology(c.spec, &made));
  std::shared_ptr<const lk::Topology> topo(std::move(made));
  lk::RankMap map;
  PERIGEE_CHECK(lk::make_rank_map(*topo, p, c.map, &map));
  const alg::RouteFn routes = lk::make_route_fn(topo, map);

  out->label = c.label;
  out->name = topo->name();
  out->spec = c.spec;
  out->nodes = topo->num_nodes();
  out->links = topo->num_links();
  out->rank_map.mapping = c.map.mapping;
  out->rank_map.ranks_per_satellite = map.ranks_per_satellite;
  out->rank_map.satellite_of_rank = map.satellite_of_rank;
  out->rank_map.grid_x = map.grid_x;
  out->rank_map.grid_y = map.grid_y;
  out->rank_map.intra_bandwidth_gbps = map.intra_bandwidth_Bps * 8.0 / 1e9;
  out->rank_map.intra_latency_s = map.intra_latency_s;
  if (printer) printer->topology_header(*out);

  alg::ScheduleParams shape;
  shape.ranks = p;
  shape.grid_x = map.grid_x;
  shape.grid_y = map.grid_y;
  shape.ranks_per_node = map.ranks_per_satellite;

  Buffers buf;
  PERIGEE_REQUIRE(opt.type == DataType::kFloat32 || opt.type == DataType::kBFloat16,
                  StatusCode::kInvalidArgument, "perigee-bench runs float or bfloat16, not ",
                  collectives::data_type_name(opt.type));
  const size_t elem = collectives::data_type_size(opt.type);
  buf.send.resize(opt.sizes.back() / elem * elem);
  buf.recv.resize(opt.sizes.back() / elem * elem);
  for (alg::Algorithm a : opt.algorithms) {
    AlgorithmResult ar;
    ar.algorithm = alg::algorithm_name(a);
    if (!shape_fits(a, map, p, &ar.reason)) {
      ar.skipped = true;
      if (printer) printer->skipped(ar);
    } else {
      PERIGEE_CHECK(run_algorithm(a, shape, routes, opt, buf, printer, &ar));
    }
    if (!ar.skipped && !opt.astra_sim_dir.empty() && world_rank() == 0) {
      std::error_code ec;
      std::filesystem::create_directories(opt.astra_sim_dir, ec);
      PERIGEE_REQUIRE(!ec, StatusCode::kIoError, "cannot create ", opt.astra_sim_dir, ": ", ec.message());
      const std::string prefix = opt.astra_sim_dir + "/" + c.label + "." + ar.algorithm;
      PERIGEE_CHECK(lk::write_astra_sim(*topo, map, predicted_as(a), opt.t0_s, prefix));
      out->astra_sim_files.push_back(prefix + ".network.yml");
      out->astra_sim_files.push_back(prefix + ".system.json");
    }
    out->algorithms.push_back(std::move(ar));
  }
  return Status::ok();
}

}  // namespace perigee::bench::topology
