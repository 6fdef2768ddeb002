// bench_overlap: what overlapping the gradient all-reduce with the backward pass buys, on real MPI
// ranks (run it under mpirun; CPU backend, MPI communicator). For each bucket size it times the
// data-parallel part of a step (forward, backward, gradient average over the ranks; no optimizer)
// and reports, nccl-tests style, one row per size:
//   bucket_MiB  buckets  step_ms  exposed_ms  hidden_%  speedup  #wrong
// step_ms: median over the timed steps of the slowest rank; exposed_ms: median time the step spent
// waiting for all-reduces after its backward pass (GradientBuckets::wait_seconds); hidden_%: the
// share of the stand-alone all-reduce time (allreduce_ms: start_all_reduce + wait_all of the whole
// buffer after a barrier, measured in the same run) that did not show as exposed time; speedup: anchor
// step_ms / step_ms, the anchor being bucket 0 (one all-reduce after the backward pass, Perigee's behaviour
// before buckets); #wrong: gradient elements that differ from the anchor's average by more than 1e-6 + 1e-5
// |g| (on 2 ranks they must be identical bit for bit).
// --grad-dtype fp32,bf16 runs the sweep again with bf16 on the wire ([comm] grad_dtype = "bf16":
// each bucket rounded to bf16 by the CPU backend, summed as bf16 by MPI's user-defined op, widened
// back): speedup stays against the fp32 anchor, #wrong is counted against bf16's own bucket-0 row,
// and rel_l2_fp32 is the relative L2 distance of its averaged gradient from fp32's.
//   mpirun -np 2 bench_overlap [--layers 6] [--channels 384] [--heads 6] [--seq 128] [--batch 2]
//          [--vocab 50304] [--buckets 0,1,4,25] [--iters 5] [--warmup 1] [--threads 1]
//          [--timeout 60] [--grad-dtype fp32,bf16] [--json f]
// --timeout is [comm] timeout_s (perigee-train's default 60 s: collectives poll against a deadline).
// --comm links averages the gradients over emulated laser links instead (EmulatedLinkCommunicator:
// every hop --link-latency-ms, --link-gbps per link, --algorithm, wall time = emulated time x
// --time-scale), whose overlapped all-reduces run on the communicator's worker thread; barriers and
// the max over ranks of the timings go over plain MPI, outside the timed region.
//   mpirun -np 4 bench_overlap --comm links [--link-latency-ms 5] [--link-gbps 100] [--algorithm auto]
//          [--time-scale 1]
// Exit codes: 0 ok, 1 a wrong gradient, 2 bad arguments.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/memory_fit.hpp"
#include "collectives/emulated_link_communicator.hpp"
#include "collectives/gradient_buckets.hpp"
#include "collectives/mpi_communicator.hpp"
#include "collectives/mpi_init.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/cli_checks.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/random.hpp"

namespace {

using namespace perigee;
namespace rt = perigee::runtime;
using collectives::DataType;
using collectives::ReduceOp;
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The largest value over the ranks (a data-parallel step lasts as long as its slowest rank).
double max_over_ranks(collectives::Communicator& comm, double v) {
  PERIGEE_CHECK_OR_DIE(comm.all_reduce(&v, &v, 1, DataType::kFloat64, ReduceOp::kMax));
  return v;
}

struct Row {
  std::string dtype = "fp32";
  double bucket_mib = 0.0;
  int buckets = 0;
  double step_ms = 0.0;
  double exposed_ms = 0.0;
  double hidden_pct = 0.0;
  double speedup = 0.0;
  long wrong = 0;
  double rel_l2_vs_fp32 = 0.0;  // bf16 rows: averaged gradient vs fp32's
};

}  // namespace

int main(int argc, char** argv) {
  collectives::init_mpi(&argc, &argv);
  CLI::App app{"bench_overlap: gradient all-reduce overlapped with the backward pass, by bucket size"};
  double timeout_s = 60.0;
  int layers = 6, channels = 384, heads = 6, seq = 128, batch = 2, vocab = 50304, iters = 5, warmup = 1,
      threads = 1;
  std::vector<double> bucket_mibs = {0, 1, 4, 25};
  std::string json_path = "bench_overlap.json";
  std::vector<std::string> dtypes = {"fp32"};
  std::string backend = "mpi", algorithm = "auto";
  double link_latency_ms = 5.0, link_gbps = 100.0, time_scale = 1.0;
  app.add_option("--layers", layers)->check(perigee::runtime::cli::integer_in(1, 4096));
  app.add_option("--channels", channels, "a multiple of --heads")
      ->check(perigee::runtime::cli::integer_in(1, 1 << 20));
  app.add_option("--heads", heads)->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--seq", seq, "sequence length (also the context)")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--batch", batch, "sequences per rank")->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--vocab", vocab, "vocabulary (padded to a multiple of 128)")
      ->check(perigee::runtime::cli::integer_in(1, INT_MAX / 128 * 128));  // the padded vocab fits in an int
  app.add_option("--buckets", bucket_mibs, "bucket sizes in MiB; 0 (the anchor) is always run first")
      ->delimiter(',')
      ->check(perigee::runtime::cli::finite_at_least_zero());
  app.add_option("--iters", iters, "timed steps per bucket size")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--warmup", warmup, "untimed steps first")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--threads", threads, "CPU threads per rank")->check(perigee::runtime::cli::thread_count());
  app.add_option("--timeout", timeout_s,
                 "collective deadline in seconds, as [comm] timeout_s (0 = blocking MPI)")
      ->check(perigee::runtime::cli::finite_at_least_zero());
  app.add_option("--json", json_path, "JSON output (rank 0)");
  app.add_option("--comm", backend, "gradient communicator: mpi, or links (emulated laser links)")
      ->check(CLI::IsMember({"mpi", "links"}));
  app.add_option("--link-latency-ms", link_latency_ms, "links: propagation delay of every hop")
      ->check(perigee::runtime::cli::finite_at_least_zero());
  app.add_option("--link-gbps", link_gbps, "links: bandwidth of every link, Gb/s")
      ->check(perigee::runtime::cli::finite_above_zero());
  app.add_option("--algorithm", algorithm, "links: all-reduce algorithm (ring, rabenseifner, ..., auto)");
  app.add_option("--time-scale", time_scale, "links: wall seconds per emulated second")
      ->check(perigee::runtime::cli::finite_above_zero());
  app.add_option("--grad-dtype", dtypes, "gradient types on the wire, in order: fp32 (the anchor's), bf16")
      ->delimiter(',')
      ->check(CLI::IsMember({"fp32", "bf16"}));
  perigee::runtime::cli::name_program_in_errors(app, "bench_overlap");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int code = rank == 0 ? app.exit(e) : 0;
    MPI_Finalize();
    return code == 0 ? 0 : 2;
  }
  {  // every rank learns whether the shape is one and rank 0 can write the JSON file; all exit if not
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::string bad;
    collectives::algorithms::Algorithm parsed_algorithm{};
    if (channels % heads != 0) {
      bad =
          "--channels " + std::to_string(channels) + " is not a multiple of --heads " + std::to_string(heads);
    } else if (Status st = collectives::algorithms::parse_algorithm(algorithm, &parsed_algorithm);
               !st.is_ok()) {
      bad = "--algorithm: " + st.message();
    } else if (backend == "mpi" && algorithm != "auto") {
      bad = "--algorithm " + algorithm + " needs --comm links (MPI picks its own all-reduce)";
    }
    if (!bad.empty() && rank == 0) std::fprintf(stderr, "bench_overlap: %s\n", bad.c_str());
    int json_ok =
        bad.empty() && (rank == 0 ? perigee::bench::check_json_path("bench_overlap", json_path) : 1);
    MPI_Bcast(&json_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!json_ok) {
      MPI_Finalize();
      return 2;
    }
  }
  perigee::bench::exit_when_out_of_memory("bench_overlap");
  std::erase_if(bucket_mibs, [](double b) { return !(b > 0.0); });
  bucket_mibs.insert(bucket_mibs.begin(), 0.0);
  std::erase(dtypes, "fp32");
  dtypes.insert(dtypes.begin(), "fp32");  // the anchor's type comes first

  // ctl: barriers and timing maxima (plain MPI); comm: the gradients (MPI, or the emulated links).
  std::unique_ptr<collectives::MpiCommunicator> ctl;
  PERIGEE_CHECK_OR_DIE(collectives::MpiCommunicator::create(MPI_COMM_WORLD, &ctl, timeout_s));
  const int rank = ctl->rank(), ranks = ctl->size();
  std::unique_ptr<collectives::Communicator> comm;
  if (backend == "links") {
    collectives::EmulationOptions opt;
    opt.time_scale = time_scale;
    opt.timeout_s = timeout_s;
    PERIGEE_CHECK_OR_DIE(
        collectives::algorithms::parse_algorithm(algorithm, &opt.algorithm));  // checked above
    std::unique_ptr<collectives::EmulatedLinkCommunicator> links;
    PERIGEE_CHECK_OR_DIE(collectives::EmulatedLinkCommunicator::create(
        MPI_COMM_WORLD,
        collectives::algorithms::uniform_route_fn(ranks, link_latency_ms * 1e-3, link_gbps * 1e9 / 8), opt,
        &links));
    comm = std::move(links);
  } else {
    std::unique_ptr<collectives::MpiCommunicator> mpi;
    PERIGEE_CHECK_OR_DIE(collectives::MpiCommunicator::create(MPI_COMM_WORLD, &mpi, timeout_s));
    comm = std::move(mpi);
  }
  kernels::cpu::CpuBackend cpu(threads);
  rt::GptShape shape{layers, heads, channels, seq, vocab, (vocab + 127) / 128 * 128};
  rt::GptModel model;
  PERIGEE_CHECK_OR_DIE(model.init(shape, &cpu, batch, seq));
  PERIGEE_CHECK_OR_DIE(model.init_parameters(1234));
  const size_t n = model.num_parameters();
  // Each rank its own tokens: the gradients differ between ranks, as in training.
  std::vector<int32_t> inputs(static_cast<size_t>(batch) * seq), targets(inputs.size());
  rt::SplitMix64 rng(77 + static_cast<uint64_t>(rank));
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i] = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab));
    targets[i] = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab));
  }

  // Stand-alone all-reduce of the whole gradient buffer: the time overlap can hide at most.
  std::vector<float> scratch(model.grads(), model.grads() + n);
  std::vector<double> ar;
  for (int i = 0; i < warmup + iters; ++i) {
    PERIGEE_CHECK_OR_DIE(ctl->barrier());
    const auto t0 = Clock::now();
    PERIGEE_CHECK_OR_DIE(
        comm->start_all_reduce(scratch.data(), scratch.data(), n, DataType::kFloat32, ReduceOp::kAvg));
    PERIGEE_CHECK_OR_DIE(comm->wait_all());
    if (i >= warmup) ar.push_back(max_over_ranks(*ctl, ms_since(t0)));
  }
  const double allreduce_ms = median(ar);
  if (rank == 0) {
    std::printf(
        "# bench_overlap: %d ranks, GPT %d layers x %d channels, seq %d, batch %d per rank, vocab %d: "
        "%zu parameters (%.1f MiB of fp32 gradients), %d CPU thread(s) per rank\n",
        ranks, layers, channels, seq, batch, vocab, n, n * 4.0 / (1 << 20), cpu.threads());
    std::printf("# all-reduce of the whole gradient alone: %.2f ms (%.2f GB/s algbw)\n", allreduce_ms,
                n * 4.0 / 1e9 / (allreduce_ms / 1e3));
    std::printf("%6s %12s %8s %10s %11s %9s %8s %7s %12s\n", "dtype", "bucket_MiB", "buckets", "step_ms",
                "exposed_ms", "hidden_%", "speedup", "#wrong", "rel_l2_fp32");
  }

  std::map<std::string, std::vector<float>> anchors;  // each type's bucket-0 averaged gradient
  std::vector<Row> rows;
  long total_wrong = 0;
  std::vector<uint16_t> wire(n);
  for (const std::string& dtype : dtypes) {
    for (double mib : bucket_mibs) {
      collectives::GradientBuckets buckets(comm.get(), static_cast<size_t>(mib * 1024.0 * 1024.0));
      if (dtype == "bf16") {
        collectives::Bf16WireCodec codec;
        codec.wire = wire.data();
        codec.encode = [&cpu](uint16_t* d, const float* src, size_t k) { return cpu.to_bf16(d, src, k); };
        codec.decode = [&cpu](float* d, const uint16_t* src, float sc, size_t k) {
          return cpu.from_bf16(d, src, sc, k);
        };
        codec.synchronize = [] { return Status::ok(); };
        PERIGEE_CHECK_OR_DIE(buckets.set_bf16_wire(std::move(codec)));
      }
      model.set_gradient_ready(buckets.overlapping() ? rt::GptModel::GradientReadyFn([&](size_t first) {
        return buckets.ready_from(first);
      })
                                                     : rt::GptModel::GradientReadyFn());
      std::vector<double> step, exposed;
      for (int i = 0; i < warmup + iters; ++i) {
        PERIGEE_CHECK_OR_DIE(ctl->barrier());
        const auto t0 = Clock::now();
        double loss = 0.0;
        PERIGEE_CHECK_OR_DIE(model.forward(inputs.data(), targets.data(), batch, seq, &loss));
        PERIGEE_CHECK_OR_DIE(model.zero_grad());
        PERIGEE_CHECK_OR_DIE(buckets.begin(model.grads(), n));
        PERIGEE_CHECK_OR_DIE(model.backward());
        PERIGEE_CHECK_OR_DIE(buckets.finish());
        const double ms = ms_since(t0);
        if (i < warmup) continue;
        step.push_back(max_over_ranks(*ctl, ms));
        exposed.push_back(max_over_ranks(*ctl, buckets.wait_seconds() * 1e3));
      }
      Row r;
      r.dtype = dtype;
      r.bucket_mib = mib;
      r.buckets = buckets.buckets();
      r.step_ms = median(step);
      r.exposed_ms = median(exposed);
      r.hidden_pct = allreduce_ms > 0.0 ? 100.0 * std::max(0.0, 1.0 - r.exposed_ms / allreduce_ms) : 0.0;
      const float* g = model.grads();
      std::vector<float>& anchor = anchors[dtype];
      if (dtype != "fp32") {
        const std::vector<float>& f = anchors["fp32"];
        double d2 = 0.0, f2 = 0.0;
        for (size_t i = 0; i < n; ++i) {
          d2 += (static_cast<double>(g[i]) - f[i]) * (static_cast<double>(g[i]) - f[i]);
          f2 += static_cast<double>(f[i]) * f[i];
        }
        r.rel_l2_vs_fp32 = f2 > 0.0 ? std::sqrt(d2 / f2) : 0.0;
      }
      if (anchor.empty()) {
        anchor.assign(g, g + n);
      } else {
        for (size_t i = 0; i < n; ++i) {
          const bool same = ranks <= 2 ? g[i] == anchor[i]
                                       : std::fabs(g[i] - anchor[i]) <= 1e-6f + 1e-5f * std::fabs(anchor[i]);
          r.wrong += !same;
        }
      }
      double wrong = static_cast<double>(r.wrong);
      wrong = max_over_ranks(*ctl, wrong);
      r.wrong = static_cast<long>(wrong);
      total_wrong += r.wrong;
      r.speedup = rows.empty() ? 1.0 : rows.front().step_ms / r.step_ms;
      rows.push_back(r);
      if (rank == 0) {
        std::printf("%6s %12.2f %8d %10.2f %11.2f %9.1f %8.3f %7ld %12.2e\n", r.dtype.c_str(), r.bucket_mib,
                    r.buckets, r.step_ms, r.exposed_ms, r.hidden_pct, r.speedup, r.wrong, r.rel_l2_vs_fp32);
      }
    }
  }
  model.set_gradient_ready(nullptr);

  if (rank == 0) {
    const Row* best = &rows.front();
    for (const Row& r : rows) {
      if (r.step_ms < best->step_ms) best = &r;
    }
    std::printf(
        "# best: %s, bucket %.2f MiB, %.2f ms/step vs %.2f ms with one fp32 all-reduce after the backward "
        "pass "
        "(%.3fx); exposed all-reduce %.2f -> %.2f ms; #wrong total %ld\n",
        best->dtype.c_str(), best->bucket_mib, best->step_ms, rows.front().step_ms, best->speedup,
        rows.front().exposed_ms, best->exposed_ms, total_wrong);
    nlohmann::json j;
    j["bench"] = "overlap";
    j["ranks"] = ranks;
    j["threads_per_rank"] = cpu.threads();
    j["timeout_s"] = timeout_s;
    j["comm"] = backend;
    if (backend == "links") {
      j["links"] = {{"latency_ms", link_latency_ms},
                    {"gbps", link_gbps},
                    {"algorithm", algorithm},
                    {"time_scale", time_scale},
                    {"overlaps", comm->overlaps()}};
    }
    j["model"] = {{"layers", layers},        {"channels", channels}, {"heads", heads}, {"seq", seq},
                  {"batch_per_rank", batch}, {"vocab", vocab},       {"parameters", n}};
    j["allreduce_ms"] = allreduce_ms;
    j["anchor"] = "fp32, bucket 0: one all-reduce after the backward pass";
    for (const Row& r : rows) {
      j["rows"].push_back({{"grad_dtype", r.dtype},
                           {"rel_l2_vs_fp32", r.rel_l2_vs_fp32},
                           {"bucket_mib", r.bucket_mib},
                           {"buckets", r.buckets},
                           {"step_ms", r.step_ms},
                           {"exposed_ms", r.exposed_ms},
                           {"hidden_pct", r.hidden_pct},
                           {"speedup", r.speedup},
                           {"wrong", r.wrong}});
    }
    j["best"] = {{"grad_dtype", best->dtype}, {"bucket_mib", best->bucket_mib}, {"speedup", best->speedup}};
    if (!perigee::bench::write_json_text("bench_overlap", json_path, j.dump(2))) total_wrong = -1;
  }
  MPI_Bcast(&total_wrong, 1, MPI_LONG, 0, MPI_COMM_WORLD);  // a failed write fails every rank
  MPI_Finalize();
  return total_wrong == 0 ? 0 : 1;
}
