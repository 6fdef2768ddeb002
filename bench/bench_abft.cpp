// bench_abft: cost of ABFT on the CPU backend's GEMMs at GPT-2 124M shapes (N = B*T tokens, C = 768;
// c_attn 768->2304, attn c_proj 768->768, mlp c_fc 768->3072, mlp c_proj 3072->768, LM head
// 768->50304). For each shape and GEMM form (forward; backward dinp; backward dweight; the full
// backward call dinp + dweight + dbias as the model makes it, onto zeroed gradients; the same onto
// non-zero gradients, as with gradient accumulation, which adds the snapshot copies) times the plain
// CpuBackend op and the same op through AbftBackend: best of --iters runs after --warmup (the median
// is in the JSON too), by wall clock and by process CPU time (the work done, which other jobs on a
// shared machine disturb less). Prints a table and writes JSON. It runs with OPENBLAS_NUM_THREADS=1
// (re-executing itself when unset) so that idle OpenBLAS workers add no CPU time.
//   bench_abft [--n 1024] [--shapes attn,proj,fc,fcproj,head] [--iters 5] [--warmup 1] [--threads 0]
//              [--json bench_abft.json]
#include <time.h>
#include <unistd.h>

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/memory_fit.hpp"
#include "fault/abft_backend.hpp"
#include "fault/injector.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/cli_checks.hpp"

namespace {

using namespace perigee;

struct ShapeCase {
  std::string key, name;
  int C, OC;
};

const ShapeCase kShapes[] = {
    {"attn", "attn.c_attn", 768, 2304},  {"proj", "attn.c_proj", 768, 768},     {"fc", "mlp.c_fc", 768, 3072},
    {"fcproj", "mlp.c_proj", 3072, 768}, {"head", "lm_head (wte)", 768, 50304},
};

std::vector<float> random_vector(size_t n, float scale, uint64_t seed) {
  fault::FaultRng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * static_cast<float>(2.0 * rng.uniform() - 1.0);
  return v;
}

struct Timing {
  double best_ms, median_ms;  // wall clock
  double best_cpu_ms;         // process CPU time (all threads) of the fastest run by CPU time
};

// Perigee calls OpenBLAS serially (kernels/cpu/cpu_ops.hpp), but the pthreads build of OpenBLAS
// starts its worker threads when the library loads, before main, and they spin for about 0.1 s
// before they sleep: a bench that reports process CPU time saw its first case at twice its wall
// time. Unless OPENBLAS_NUM_THREADS is set, this re-executes the program with it set to 1 (no
// workers); it returns only when that is not possible.
void reexec_without_blas_workers(char** argv) {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return;
  if (::setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
}

double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

// Best and median of `iters` timed runs. The table uses the best run: on a shared machine other jobs
// only ever add time, so the minimum is the stable estimate of the op's own cost.
Timing time_ms(int warmup, int iters, const std::function<void()>& setup, const std::function<void()>& fn) {
  std::vector<double> t;
  double best_cpu = 1e300;
  for (int i = 0; i < warmup + iters; ++i) {
    setup();
    const double c0 = cpu_now_ms();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_now_ms() - c0;
    if (i >= warmup) {
      t.push_back(ms);
      best_cpu = std::min(best_cpu, cpu);
    }
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2], best_cpu};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_abft: ABFT overhead on the CPU backend's GEMMs (GPT-2 124M shapes)"};
  int N = 1024, iters = 5, warmup = 1, threads = 0;
  std::vector<std::string> shapes = {"attn", "proj", "fc", "fcproj", "head"};
  std::string json_path = "bench_abft.json";
  app.add_option("--n", N, "tokens per GEMM (B*T)")->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--shapes", shapes, "attn, proj, fc, fcproj, head")->delimiter(',');
  app.add_option("--iters", iters, "timed runs per case")->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--warmup", warmup, "untimed runs first")->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--threads", threads, "CPU threads (0 = all)")->check(perigee::runtime::cli::thread_count());
  app.add_option("--json", json_path, "JSON output file");
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "bench_abft"); rc >= 0)
    return rc;
  for (const auto& key : shapes) {  // every shape is known and fits, before any runs
    const auto* sc = std::find_if(std::begin(kShapes), std::end(kShapes),
                                  [&](const ShapeCase& s) { return s.key == key; });
    if (sc == std::end(kShapes)) {
      std::fprintf(stderr, "bench_abft: --shapes: unknown shape '%s' (attn, proj, fc, fcproj, head)\n",
                   key.c_str());
      return 2;
    }
    // inp, dinp, out, dout, weight, dweight and the ABFT backend's checksum rows (under one more inp)
    const double bytes = 4.0 * (3.0 * N * sc->C + 2.0 * N * sc->OC + 2.0 * sc->C * sc->OC);
    if (!perigee::bench::check_fits_in_memory(
            "bench_abft", "--n " + std::to_string(N) + " with shape " + key + " (" + sc->name + ")", bytes))
      return 2;
  }
  perigee::bench::exit_when_out_of_memory("bench_abft");
  reexec_without_blas_workers(argv);  // process CPU time is reported
  if (!perigee::bench::check_json_path("bench_abft", json_path)) return 2;

  kernels::cpu::CpuBackend cpu(threads);
  fault::AbftOptions options;
  options.threads = cpu.threads();
  fault::AbftBackend abft(&cpu, options);
  std::printf("# bench_abft: CPU backend, %d thread(s), fp32, N = %d, %d warm-up + %d timed runs (best)\n",
              cpu.threads(), N, warmup, iters);
  std::printf("# %-14s %6s %6s %-16s %8s %10s %10s %9s %10s %10s %9s %8s\n", "layer", "C", "OC", "form",
              "GFLOP", "plain ms", "abft ms", "overhead", "plain cpu", "abft cpu", "cpu ovh", "GFLOP/s");
  nlohmann::ordered_json results = nlohmann::json::array();
  double sum_plain = 0.0, sum_abft = 0.0, sum_plain_cpu = 0.0, sum_abft_cpu = 0.0;
  for (const auto& key : shapes) {
    const auto* sc = std::find_if(std::begin(kShapes), std::end(kShapes),
                                  [&](const ShapeCase& s) { return s.key == key; });
    const int C = sc->C, OC = sc->OC;
    const size_t nc = static_cast<size_t>(N) * C, noc = static_cast<size_t>(N) * OC,
                 occ = static_cast<size_t>(OC) * C;
    const auto inp = random_vector(nc, 1.0f, 1), weight = random_vector(occ, 0.05f, 2),
               bias = random_vector(OC, 0.02f, 3);
    const auto dout = random_vector(noc, 1e-3f, 4);
    std::vector<float> out(noc), dinp(nc), dweight(occ), dbias(OC);
    struct Form {
      const char* name;
      double flops;
      bool zero_outputs;  // gradients zeroed before the call (the model's backward), else accumulate
      std::function<Status(kernels::Backend&)> run;
    };
    const double gemm = 2.0 * N * static_cast<double>(C) * OC;
    const Form forms[] = {
        {"forward", gemm, false,
         [&](kernels::Backend& b) {
           return b.matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
         }},
        {"backward_input", gemm, true,
         [&](kernels::Backend& b) {
           return b.matmul_backward(dinp.data(), nullptr, nullptr, dout.data(), inp.data(), weight.data(), N,
                                    C, OC);
         }},
        {"backward_weight", gemm, true,
         [&](kernels::Backend& b) {
           return b.matmul_backward(nullptr, dweight.data(), nullptr, dout.data(), inp.data(), weight.data(),
                                    N, C, OC);
         }},
        {"backward (all)", 2.0 * gemm, true,
         [&](kernels::Backend& b) {
           return b.matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                                    weight.data(), N, C, OC);
         }},
        {"backward (accum)", 2.0 * gemm, false,
         [&](kernels::Backend& b) {
           return b.matmul_backward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                                    weight.data(), N, C, OC);
         }},
    };
    for (const auto& form : forms) {
      auto setup = [&] {
        if (!form.zero_outputs) return;
        std::fill(dinp.begin(), dinp.end(), 0.0f);
        std::fill(dweight.begin(), dweight.end(), 0.0f);
        std::fill(dbias.begin(), dbias.end(), 0.0f);
      };
      const Timing tp = time_ms(warmup, iters, setup, [&] { PERIGEE_CHECK_OR_DIE(form.run(cpu)); });
      const Timing ta = time_ms(warmup, iters, setup, [&] { PERIGEE_CHECK_OR_DIE(form.run(abft)); });
      const double plain = tp.best_ms, checked = ta.best_ms;
      const double overhead = 100.0 * (checked - plain) / plain;
      const double cpu_overhead = 100.0 * (ta.best_cpu_ms - tp.best_cpu_ms) / tp.best_cpu_ms;
      std::printf("  %-14s %6d %6d %-16s %8.2f %10.2f %10.2f %8.1f%% %10.2f %10.2f %8.1f%% %8.1f\n",
                  sc->name.c_str(), C, OC, form.name, form.flops * 1e-9, plain, checked, overhead,
                  tp.best_cpu_ms, ta.best_cpu_ms, cpu_overhead, form.flops / (plain * 1e-3) * 1e-9);
      std::fflush(stdout);
      if (std::string(form.name).rfind("backward (", 0) != 0) {
        sum_plain += plain;
        sum_abft += checked;
        sum_plain_cpu += tp.best_cpu_ms;
        sum_abft_cpu += ta.best_cpu_ms;
      }
      results.push_back({{"layer", sc->name},
                         {"N", N},
                         {"C", C},
                         {"OC", OC},
                         {"form", form.name},
                         {"gflop", form.flops * 1e-9},
                         {"plain_ms", plain},
                         {"abft_ms", checked},
                         {"overhead_pct", overhead},
                         {"plain_median_ms", tp.median_ms},
                         {"abft_median_ms", ta.median_ms},
                         {"plain_cpu_ms", tp.best_cpu_ms},
                         {"abft_cpu_ms", ta.best_cpu_ms},
                         {"cpu_overhead_pct", cpu_overhead}});
    }
  }
  const double total = sum_plain > 0.0 ? 100.0 * (sum_abft - sum_plain) / sum_plain : 0.0;
  const double total_cpu = sum_plain_cpu > 0.0 ? 100.0 * (sum_abft_cpu - sum_plain_cpu) / sum_plain_cpu : 0.0;
  std::printf(
      "# total over single-output forms: plain %.1f ms, abft %.1f ms, overhead %.1f%% (CPU time %.1f%%)\n",
      sum_plain, sum_abft, total, total_cpu);
  std::printf("# checks: %llu, faults detected: %llu, largest clean residual/threshold %.4f\n",
              static_cast<unsigned long long>(abft.stats().gemms_checked),
              static_cast<unsigned long long>(abft.stats().faults_detected), abft.stats().max_clean_ratio);
  nlohmann::ordered_json doc = {{"benchmark", "abft"},
                                {"backend", "cpu"},
                                {"threads", cpu.threads()},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"N", N},
                                {"warmup", warmup},
                                {"iters", iters},
                                {"total_overhead_pct", total},
                                {"total_cpu_overhead_pct", total_cpu},
                                {"faults_detected", abft.stats().faults_detected},
                                {"results", results}};
  if (!perigee::bench::write_json_text("bench_abft", json_path, doc.dump(2))) return 1;
  std::printf("# wrote %s (%zu cases)\n", json_path.c_str(), results.size());
  return 0;
}
