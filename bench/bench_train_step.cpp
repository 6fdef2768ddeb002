// bench_train_step: time one training step (forward + backward + AdamW) of a GPT on one process
// of the CPU backend, for a small model and the GPT-2 124M shape (12 layers, 12 heads, 768
// channels, context 1024, vocab 50257 padded to 50304), batch 1..4. Prints a table and writes
// JSON (ms/step, tokens/s, achieved GFLOP/s, peak RSS). Peak RSS is reset between cases
// (/proc/self/clear_refs), so each row is that case's own peak.
//   bench_train_step [--models small,gpt2] [--batches 1,2,4] [--iters 3] [--warmup 1] [--json f]
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"

namespace {

using namespace perigee;
namespace rt = perigee::runtime;

struct ModelCase {
  std::string name;
  rt::GptShape shape;
  int seq;
};

long peak_rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// Training FLOPs per step: 6 * params per token for the weight GEMMs (forward 2, backward 4), plus
// attention scores and values: 4 * T * C per token and layer forward, 3x that with the backward.
double step_flops(const rt::GptShape& s, size_t params, int B, int T) {
  const double tokens = static_cast<double>(B) * T;
  const double attention = 6.0 * 2.0 * s.n_layer * static_cast<double>(T) * s.n_embd;  // per token
  return 6.0 * static_cast<double>(params) * tokens + attention * tokens;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_train_step: GPT training step time on the CPU backend"};
  std::vector<std::string> models = {"small", "gpt2"};
  std::vector<int> batches = {1, 2, 4};
  int iters = 3, warmup = 1, threads = 0;
  std::string json_path = "bench_train_step.json";
  app.add_option("--models", models, "small, gpt2")->delimiter(',');
  app.add_option("--batches", batches, "batch sizes")->delimiter(',');
  app.add_option("--iters", iters, "timed steps per case");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--threads", threads, "CPU threads (0 = all)");
  app.add_option("--json", json_path, "JSON output file");
  CLI11_PARSE(app, argc, argv);

  std::vector<ModelCase> cases;
  for (const auto& m : models) {
    if (m == "small") cases.push_back({"small (4L 4H 128C)", rt::GptShape{4, 4, 128, 256, 256, 256}, 256});
    else if (m == "gpt2") cases.push_back({"gpt2-124M (12L 12H 768C)", rt::GptShape{12, 12, 768, 1024, 50257, 50304}, 1024});
    else {
      std::fprintf(stderr, "unknown model '%s' (small, gpt2)\n", m.c_str());
      return 2;
    }
  }
  kernels::cpu::CpuBackend cpu(threads);
  std::printf("# bench_train_step: CPU backend, %d thread(s), fp32, %d warm-up + %d timed steps\n", cpu.threads(),
              warmup, iters);
  std::printf("# %-26s %6s %6s %12s %12s %12s %10s %10s\n", "model", "batch", "seq", "params", "ms/step",
              "tokens/s", "GFLOP/s", "peakRSS MiB");
  nlohmann::ordered_json results = nlohmann::json::array();
  for (const auto& mc : cases) {
    for (int B : batches) {
      reset_peak_rss();
      std::vector<double> times;
      size_t params = 0;
      {
        rt::GptModel model;
        PERIGEE_CHECK_OR_DIE(model.init(mc.shape, &cpu, B, mc.seq));
        PERIGEE_CHECK_OR_DIE(model.init_parameters(1));
        params = model.num_parameters();
        rt::SplitMix64 rng(2);
        std::vector<int32_t> x(static_cast<size_t>(B) * mc.seq), y(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          x[i] = static_cast<int32_t>(rng.next() % mc.shape.vocab);
          y[i] = static_cast<int32_t>(rng.next() % mc.shape.vocab);
        }
        rt::TrainConfig tc;
        tc.steps = warmup + iters;
        for (int i = 0; i < warmup + iters; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          double loss = 0.0;
          PERIGEE_CHECK_OR_DIE(model.forward(x.data(), y.data(), B, mc.seq, &loss));
          PERIGEE_CHECK_OR_DIE(model.zero_grad());
          PERIGEE_CHECK_OR_DIE(model.backward());
          PERIGEE_CHECK_OR_DIE(rt::optimizer_step(model, tc, i, nullptr));
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          if (i >= warmup) times.push_back(ms);
        }
      }
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      const double tokens = static_cast<double>(B) * mc.seq;
      const double gflops = step_flops(mc.shape, params, B, mc.seq) / (median * 1e-3) / 1e9;
      const double rss_mib = peak_rss_kib() / 1024.0;
      std::printf("  %-26s %6d %6d %12zu %12.1f %12.0f %10.1f %10.0f\n", mc.name.c_str(), B, mc.seq, params, median,
                  tokens / (median * 1e-3), gflops, rss_mib);
      std::fflush(stdout);
      results.push_back({{"model", mc.name}, {"batch", B}, {"seq", mc.seq}, {"params", params},
                         {"ms_per_step", median}, {"ms_min", times.front()}, {"ms_max", times.back()},
                         {"tokens_per_s", tokens / (median * 1e-3)}, {"gflops", gflops}, {"peak_rss_mib", rss_mib}});
    }
  }
  nlohmann::ordered_json doc = {{"benchmark", "train_step"}, {"backend", "cpu"}, {"threads", cpu.threads()},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"warmup", warmup}, {"iters", iters}, {"results", results}};
  std::ofstream(json_path) << doc.dump(2) << "\n";
  std::printf("# wrote %s (%zu cases)\n", json_path.c_str(), results.size());
  return 0;
}
