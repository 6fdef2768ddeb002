// bench_train_step: time one training step (forward + backward + global-norm clip + AdamW) of a GPT
// on one process, CPU or CUDA backend, for a small model and the GPT-2 124M shape (12 layers, 12
// heads, 768 channels, context 1024, vocab 50257 padded to 50304). Prints a table and writes JSON:
// ms/step (median of the timed steps), tokens/s, achieved TFLOP/s, MFU against a stated peak, peak
// memory (CPU: VmHWM, reset between cases; CUDA: device memory in use, cudaMemGetInfo, sampled after
// init and after every step), and with --profile the per-op time breakdown of extra profiled steps
// (kernels/profiling_backend.hpp; cudaEvent pairs on CUDA, sync + steady_clock on the CPU).
// --micro-batches m1,m2,... runs each batch also as passes of m sequences with accumulated gradients
// (GptModel::forward_backward, [train] micro_batch; 0 = one pass), activations allocated for m only:
// what gradient accumulation costs in time and saves in memory, against the one-pass case.
//   bench_train_step [--device cpu|cuda|auto] [--preset gpt2-124m] [--models small,gpt2]
//                    [--batches 1,2,4] [--micro-batches 0,1] [--recompute] [--seq T] [--iters 3] [--warmup 1]
//                    [--precision fp32|tf32|bf16] [--tf32 (= --precision tf32)]
//                    [--activations fp32|bf16] [--logits fp32|bf16] [--gelu-fusion] [--profile]
//                    [--peak-tflops P] [--profile-by-shape] [--timer auto|events|sync]
//                    [--cuda-profiler-range] [--json f]
// Exit codes: 0 ok, 2 bad arguments or no CUDA device for --device cuda.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/json_output.hpp"
#include "bench/memory_fit.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "kernels/cuda/event_timer.cuh"
#include "kernels/profiling_backend.hpp"
#include "runtime/cli_checks.hpp"
#include "runtime/gpt_model.hpp"
#include "runtime/optimizer.hpp"
#include "runtime/random.hpp"

namespace {

using namespace perigee;
namespace rt = perigee::runtime;

// Dense peaks of an H100 SXM5 (NVIDIA datasheet; H200 has the same compute): the defaults of
// --peak-tflops for the CUDA path. Perigee's GEMMs run in fp32 on the CUDA cores, on TF32 tensor
// cores with --precision tf32, on bf16 tensor cores with --precision bf16; its MFU is stated against
// the matching peak, and also against bf16 for comparison with a bf16 PyTorch run.
constexpr double kH100Fp32Tflops = 66.9;
constexpr double kH100Tf32Tflops = 494.7;
constexpr double kH100Bf16Tflops = 989.4;

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

// (batch, sequences per pass) for every batch and every micro-batch that divides it (0: the batch).
std::vector<std::pair<int, int>> batch_cases(const std::vector<int>& batches,
                                             const std::vector<int>& micros) {
  std::vector<std::pair<int, int>> out;
  for (int B : batches) {
    for (int m : micros) {
      const int micro = m == 0 ? B : m;
      if (micro <= B && B % micro == 0 &&
          std::find(out.begin(), out.end(), std::pair{B, micro}) == out.end()) {
        out.emplace_back(B, micro);
      }
    }
  }
  return out;
}

// Training FLOPs per step: 6 * params per token for the weight GEMMs (forward 2, backward 4), plus
// attention scores and values: 4 * T * C per token and layer forward, 3x that with the backward
// (12 * L * T * C per token; the causal mask is not discounted, as in the PaLM MFU formula).
double step_flops(const rt::GptShape& s, size_t params, int B, int T) {
  const double tokens = static_cast<double>(B) * T;
  const double attention = 6.0 * 2.0 * s.n_layer * static_cast<double>(T) * s.n_embd;  // per token
  return 6.0 * static_cast<double>(params) * tokens + attention * tokens;
}

struct DeviceMemory {
  bool cuda = false;
  double baseline_mib = 0.0;  // in use before the case's model was created
  double peak_mib = 0.0;      // largest sample
  void sample() {
    if (!cuda) return;
    size_t used = 0;
    PERIGEE_CHECK_OR_DIE(kernels::cuda::device_memory_used(&used, nullptr));
    peak_mib = std::max(peak_mib, used / (1024.0 * 1024.0));
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_train_step: GPT training step time on the CPU or CUDA backend"};
  std::vector<std::string> models = {"small", "gpt2"};
  std::vector<int> batches = {1, 2, 4};
  std::vector<int> micro_batches = {0};
  int iters = 3, warmup = 1, threads = 0, seq = 0, profile_steps = 3, cuda_device = 0;
  std::string json_path = "bench_train_step.json", device = "cpu", preset, timer = "auto",
              precision_arg = "fp32";
  bool tf32 = false, profile = false, by_shape = false, profiler_range = false, recompute = false;
  double peak_tflops = 0.0;
  app.add_option("--device", device, "cpu, cuda or auto (cuda when a device answers)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("--cuda-device", cuda_device, "CUDA device index");
  app.add_option("--preset", preset,
                 "gpt2-124m: model gpt2, batch 16, seq 1024 (overrides --models/--batches)")
      ->check(CLI::IsMember({"gpt2-124m"}));
  app.add_option("--models", models, "small, gpt2")->delimiter(',');
  app.add_option("--batches", batches, "batch sizes")
      ->delimiter(',')
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_flag("--recompute", recompute,
               "the backward re-runs each block's forward instead of keeping its activations ([train] "
               "recompute)");
  app.add_option("--micro-batches", micro_batches,
                 "sequences per forward/backward pass, gradients accumulated (0 = the whole batch in one "
                 "pass); cases whose value does not divide the batch are skipped")
      ->delimiter(',')
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--seq", seq, "sequence length (0 = the model's default: small 256, gpt2 1024)")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--iters", iters, "timed steps per case")->check(perigee::runtime::cli::integer_at_least(1));
  app.add_option("--warmup", warmup, "untimed steps first")
      ->check(perigee::runtime::cli::integer_at_least(0));
  app.add_option("--threads", threads, "CPU threads (0 = all)")->check(perigee::runtime::cli::thread_count());
  app.add_option("--precision", precision_arg, "CUDA GEMM and attention arithmetic: fp32, tf32 or bf16")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  app.add_flag("--tf32", tf32, "CUDA: --precision tf32 (the fp32 GEMMs on TF32 tensor cores)");
  std::string activations = "fp32";
  app.add_option("--activations", activations, "storage of the GEMM-operand activations: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  std::string logits = "fp32";
  app.add_option("--logits", logits, "storage of the logits: fp32 or bf16 (needs --activations bf16)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  bool gelu_fusion = false;
  app.add_flag("--gelu-fusion", gelu_fusion,
               "CUDA, --precision bf16: GELU in the MLP GEMMs' cuBLASLt epilogues ([device] gelu_fusion)");
  std::vector<std::string> kernel_variants;
  app.add_option("--kernel-variant", kernel_variants,
                 "CUDA: kernel variants awaiting a GPU measurement (kernels/cuda/kernel_variants.hpp): "
                 "attention-in-place, attention-wide, attention-one-pass (with --precision bf16), "
                 "crossentropy-staged")
      ->delimiter(',')
      ->check(CLI::IsMember(
          {"attention-in-place", "attention-wide", "attention-one-pass", "crossentropy-staged"}));
  bool no_weight_cache = false;
  app.add_flag("--no-weight-cache", no_weight_cache,
               "CUDA, --precision bf16: round each GEMM's weight instead of reading a bf16 copy made once "
               "per pass ([device] weight_cache = false)");
  app.add_option("--peak-tflops", peak_tflops,
                 "peak for MFU in TFLOP/s (0 = CUDA: H100 dense fp32 66.9, TF32 494.7 or bf16 989.4 by "
                 "--precision; CPU: none)")
      ->check(perigee::runtime::cli::finite_at_least_zero());
  app.add_flag("--profile", profile, "per-op time breakdown over extra profiled steps");
  app.add_option("--profile-steps", profile_steps, "profiled steps after the timed ones")
      ->check(perigee::runtime::cli::integer_at_least(1));
  app.add_flag("--profile-by-shape", by_shape, "one profile row per op and shape (splits the GEMMs)");
  app.add_option("--timer", timer, "profile timer: auto (cudaEvent on CUDA), events or sync")
      ->check(CLI::IsMember({"auto", "events", "sync"}));
  app.add_flag(
      "--cuda-profiler-range", profiler_range,
      "CUDA: cudaProfilerStart/Stop around the first timed step (ncu/nsys --profile-from-start off)");
  app.add_option("--json", json_path, "JSON output file");
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "bench_train_step"); rc >= 0)
    return rc;
  if (!perigee::bench::check_json_path("bench_train_step", json_path)) return 2;
  perigee::bench::exit_when_out_of_memory("bench_train_step");
  if (logits == "bf16" && activations != "bf16") {
    std::fprintf(stderr, "--logits bf16 needs --activations bf16\n");
    return 2;
  }
  if (tf32) precision_arg = "tf32";
  if (preset == "gpt2-124m") {
    models = {"gpt2"};
    batches = {16};
    seq = 1024;
  }

  // ---- backend
  std::unique_ptr<kernels::Backend> backend;
  std::string device_name = "cpu";
  std::vector<kernels::cuda::DeviceInfo> gpus;
  const Status probe = kernels::cuda::probe_devices(&gpus);
  if (device == "cuda" || (device == "auto" && probe.is_ok())) {
    if (!probe.is_ok()) {
      std::fprintf(stderr, "bench_train_step: --device cuda: %s\n", probe.message().c_str());
      return 2;
    }
    kernels::cuda::GpuPrecision gpu_precision{};
    PERIGEE_CHECK_OR_DIE(kernels::cuda::parse_gpu_precision(precision_arg, &gpu_precision));
    const Status made = kernels::cuda::make_cuda_backend(cuda_device, &backend, gpu_precision);
    if (!made.is_ok()) {
      std::fprintf(stderr, "bench_train_step: cannot create the CUDA backend: %s\n",
                   made.to_string().c_str());
      return 2;
    }
    PERIGEE_CHECK_OR_DIE(kernels::cuda::set_gelu_fusion(*backend, gelu_fusion));
    PERIGEE_CHECK_OR_DIE(kernels::cuda::set_weight_cache(*backend, !no_weight_cache));
    kernels::cuda::KernelVariants variants;
    for (const std::string& v : kernel_variants) {
      variants.attention_in_place_backward =
          variants.attention_in_place_backward || v == "attention-in-place";
      variants.attention_wide_forward = variants.attention_wide_forward || v == "attention-wide";
      variants.attention_one_pass_backward =
          variants.attention_one_pass_backward || v == "attention-one-pass";
      variants.crossentropy_staged = variants.crossentropy_staged || v == "crossentropy-staged";
    }
    PERIGEE_CHECK_OR_DIE(kernels::cuda::set_kernel_variants(*backend, variants));
    device_name = gpus[cuda_device].name;
    device = "cuda";
  } else {
    backend = std::make_unique<kernels::cpu::CpuBackend>(threads);
    device = "cpu";
    precision_arg = "fp32";
  }
  tf32 = precision_arg == "tf32";
  const bool bf16 = precision_arg == "bf16";
  const bool on_cuda = device == "cuda";
  const int cpu_threads = on_cuda ? 0 : static_cast<kernels::cpu::CpuBackend*>(backend.get())->threads();
  kernels::cuda::GpuPrecision mode{};
  PERIGEE_CHECK_OR_DIE(kernels::cuda::parse_gpu_precision(precision_arg, &mode));
  const std::string precision = kernels::cuda::gpu_precision_description(mode);
  if (peak_tflops <= 0.0 && on_cuda)
    peak_tflops = bf16 ? kH100Bf16Tflops : tf32 ? kH100Tf32Tflops : kH100Fp32Tflops;
  const std::string peak_note = peak_tflops <= 0.0 ? "none (CPU: give --peak-tflops)"
                                                   : (on_cuda && !app.count("--peak-tflops")
                                                          ? (bf16   ? "H100 SXM dense bf16 989.4"
                                                             : tf32 ? "H100 SXM dense TF32 494.7"
                                                                    : "H100 SXM fp32 (CUDA cores) 66.9")
                                                          : "--peak-tflops");

  // The profiler wraps the backend for the whole case but only counts the profiled steps.
  std::unique_ptr<kernels::ProfilingBackend> prof;
  if (profile) {
    std::unique_ptr<kernels::OpTimer> op_timer;
    if (on_cuda && timer != "sync") {
      PERIGEE_CHECK_OR_DIE(kernels::cuda::make_cuda_event_timer(backend.get(), &op_timer));
    }
    prof = std::make_unique<kernels::ProfilingBackend>(backend.get(), std::move(op_timer),
                                                       kernels::ProfilingOptions{by_shape});
    prof->set_enabled(false);
  }
  kernels::Backend* be = prof ? static_cast<kernels::Backend*>(prof.get()) : backend.get();

  std::vector<ModelCase> cases;
  for (const auto& m : models) {
    if (m == "small")
      cases.push_back({"small (4L 4H 128C)", rt::GptShape{4, 4, 128, 256, 256, 256}, seq > 0 ? seq : 256});
    else if (m == "gpt2")
      cases.push_back(
          {"gpt2-124M (12L 12H 768C)", rt::GptShape{12, 12, 768, 1024, 50257, 50304}, seq > 0 ? seq : 1024});
    else {
      std::fprintf(stderr, "unknown model '%s' (small, gpt2)\n", m.c_str());
      return 2;
    }
    if (cases.back().seq > cases.back().shape.context) {
      std::fprintf(stderr, "--seq %d exceeds the context %d of %s\n", cases.back().seq,
                   cases.back().shape.context, m.c_str());
      return 2;
    }
  }

  if (on_cuda) {
    std::printf(
        "# bench_train_step: CUDA device %d (%s), %s, %s activations, %s logits%s%s, %d warm-up + %d timed "
        "steps\n",
        cuda_device, device_name.c_str(), precision.c_str(), activations.c_str(), logits.c_str(),
        backend->fuses_gelu() ? ", GELU epilogues" : "", recompute ? ", recompute" : "", warmup, iters);
  } else {
    std::printf(
        "# bench_train_step: CPU backend, %d thread(s), fp32, %s activations, %s logits%s, %d warm-up + %d "
        "timed steps\n",
        cpu_threads, activations.c_str(), logits.c_str(), recompute ? ", recompute" : "", warmup, iters);
  }
  if (peak_tflops > 0.0)
    std::printf("# MFU peak: %s (%.1f TFLOP/s)\n", peak_note.c_str(), peak_tflops);
  else
    std::printf("# MFU peak: %s\n", peak_note.c_str());
  std::printf("# %-26s %6s %6s %6s %12s %10s %12s %9s %7s %10s\n", "model", "batch", "micro", "seq", "params",
              "ms/step", "tokens/s", "TFLOP/s", "MFU", on_cuda ? "peakGPU MiB" : "peakRSS MiB");
  nlohmann::ordered_json results = nlohmann::json::array();
  nlohmann::ordered_json skipped = nlohmann::json::array();
  auto dtype = [](const std::string& s) {
    return s == "bf16" ? kernels::DType::kBF16 : kernels::DType::kF32;
  };
  for (const auto& mc : cases) {
    for (const auto& [B, micro] : batch_cases(batches, micro_batches)) {
      // A case that cannot fit in the free memory is skipped (the host would OOM-kill the sweep).
      rt::MemoryDemand demand;
      demand.per_rank = rt::GptModel::memory_items(mc.shape, *be, micro, mc.seq, dtype(activations),
                                                   dtype(logits), recompute);
      kernels::MemoryInfo free_memory;
      if (be->memory_info(&free_memory).is_ok() && demand.total() > free_memory.available) {
        const std::string need = rt::format_bytes(demand.total()),
                          have = rt::format_bytes(free_memory.available);
        std::printf("  %-26s %6d %6d %6d skipped: needs %s, %s free in %s\n", mc.name.c_str(), B, micro,
                    mc.seq, need.c_str(), have.c_str(), free_memory.where.c_str());
        skipped.push_back({{"model", mc.name},
                           {"batch", B},
                           {"micro_batch", micro},
                           {"seq", mc.seq},
                           {"needs_bytes", demand.total()},
                           {"free_bytes", free_memory.available},
                           {"memory", free_memory.where}});
        continue;
      }
      reset_peak_rss();
      DeviceMemory mem;
      mem.cuda = on_cuda;
      if (on_cuda) {
        PERIGEE_CHECK_OR_DIE(backend->synchronize());
        mem.sample();
        mem.baseline_mib = mem.peak_mib;
      }
      std::vector<double> times;
      size_t params = 0, model_bytes = 0;
      double profiled_ms = 0.0, final_loss = 0.0;
      nlohmann::ordered_json breakdown = nlohmann::json::array();
      std::string profile_table;
      {
        rt::GptModel model;
        PERIGEE_CHECK_OR_DIE(
            model.init(mc.shape, be, micro, mc.seq, dtype(activations), dtype(logits), recompute));
        PERIGEE_CHECK_OR_DIE(model.init_parameters(1));
        params = model.num_parameters();
        model_bytes = 4 * params * sizeof(float) + model.activation_bytes();
        mem.sample();
        rt::SplitMix64 rng(2);
        std::vector<int32_t> x(static_cast<size_t>(B) * mc.seq), y(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          x[i] = static_cast<int32_t>(rng.next() % mc.shape.vocab);
          y[i] = static_cast<int32_t>(rng.next() % mc.shape.vocab);
        }
        rt::TrainConfig tc;
        const int total = warmup + iters + (profile ? profile_steps : 0);
        tc.steps = total;
        auto run_step = [&](int i) {
          double loss = 0.0;
          PERIGEE_CHECK_OR_DIE(model.zero_grad());
          PERIGEE_CHECK_OR_DIE(model.forward_backward(x.data(), y.data(), B, mc.seq, micro, &loss));
          PERIGEE_CHECK_OR_DIE(rt::optimizer_step(model, tc, i, nullptr));
          PERIGEE_CHECK_OR_DIE(be->synchronize());
          final_loss = loss;
        };
        for (int i = 0; i < warmup + iters; ++i) {
          const bool ranged = on_cuda && profiler_range && i == warmup;
          if (ranged) (void)cudaProfilerStart();
          const auto t0 = std::chrono::steady_clock::now();
          run_step(i);
          if (ranged) (void)cudaProfilerStop();
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          if (i >= warmup) times.push_back(ms);
          mem.sample();
        }
        if (profile) {
          prof->reset();
          prof->set_enabled(true);
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = warmup + iters; i < total; ++i) run_step(i);
          PERIGEE_CHECK_OR_DIE(prof->collect());
          profiled_ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          prof->set_enabled(false);
          mem.sample();
          profile_table = prof->report(profiled_ms, profile_steps);
          for (const auto& s : prof->stats()) {
            breakdown.push_back({{"op", s.op},
                                 {"calls_per_step", static_cast<double>(s.calls) / profile_steps},
                                 {"ms_per_step", s.total_ms / profile_steps},
                                 {"pct_of_step", 100.0 * s.total_ms / profiled_ms}});
          }
        }
      }
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      const double tokens = static_cast<double>(B) * mc.seq;
      const double flops = step_flops(mc.shape, params, B, mc.seq);
      const double tflops = flops / (median * 1e-3) / 1e12;
      const double mfu = peak_tflops > 0.0 ? tflops / peak_tflops : 0.0;
      const double rss_mib = peak_rss_kib() / 1024.0;
      const double peak_mem = on_cuda ? mem.peak_mib : rss_mib;
      char mfu_text[16] = "-";
      if (peak_tflops > 0.0) std::snprintf(mfu_text, sizeof mfu_text, "%.1f%%", 100.0 * mfu);
      std::printf("  %-26s %6d %6d %6d %12zu %10.2f %12.0f %9.3f %7s %10.0f\n", mc.name.c_str(), B, micro,
                  mc.seq, params, median, tokens / (median * 1e-3), tflops, mfu_text, peak_mem);
      if (profile) {
        std::printf("# per-op breakdown, %d profiled step(s), %.2f ms/step wall (timer: %s)\n%s",
                    profile_steps, profiled_ms / profile_steps, prof->timer().name(), profile_table.c_str());
      }
      std::fflush(stdout);
      nlohmann::ordered_json r = {{"model", mc.name},
                                  {"batch", B},
                                  {"micro_batch", micro},
                                  {"passes", B / micro},
                                  {"seq", mc.seq},
                                  {"params", params},
                                  {"tokens_per_step", tokens},
                                  {"ms_per_step", median},
                                  {"ms_min", times.front()},
                                  {"ms_max", times.back()},
                                  {"tokens_per_s", tokens / (median * 1e-3)},
                                  {"flops_per_step", flops},
                                  {"tflops", tflops},
                                  {"gflops", tflops * 1e3},
                                  {"loss_last", final_loss},
                                  {"peak_rss_mib", rss_mib},
                                  {"model_buffer_mib", model_bytes / (1024.0 * 1024.0)}};
      if (peak_tflops > 0.0) {
        r["mfu"] = mfu;
        r["mfu_peak_tflops"] = peak_tflops;
      }
      if (on_cuda) {
        r["mfu_vs_bf16_dense"] = tflops / kH100Bf16Tflops;
        r["device_mem_peak_mib"] = mem.peak_mib;  // cudaMemGetInfo: includes the CUDA context
        r["device_mem_case_mib"] = mem.peak_mib - mem.baseline_mib;
      }
      if (profile) {
        r["profile"] = {{"steps", profile_steps},
                        {"timer", prof->timer().name()},
                        {"wall_ms_per_step", profiled_ms / profile_steps},
                        {"ops_ms_per_step", prof->total_ms() / profile_steps},
                        {"ops", breakdown}};
      }
      results.push_back(r);
    }
  }
  nlohmann::ordered_json doc = {{"benchmark", "train_step"},
                                {"backend", device},
                                {"device_name", device_name},
                                {"precision", precision},
                                {"precision_mode", precision_arg},
                                {"tf32", tf32},
                                {"activations", activations},
                                {"logits", logits},
                                {"gelu_fusion", backend->fuses_gelu()},
                                {"weight_cache", on_cuda && bf16 && !no_weight_cache},
                                {"kernel_variants", on_cuda ? kernel_variants : std::vector<std::string>{}},
                                {"recompute", recompute},
                                {"threads", cpu_threads},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"mfu_peak", peak_note},
                                {"warmup", warmup},
                                {"iters", iters},
                                {"results", results},
                                {"skipped", skipped}};
  if (!perigee::bench::write_json_text("bench_train_step", json_path, doc.dump(2))) return 1;
  std::printf("# wrote %s (%zu cases, %zu skipped for memory)\n", json_path.c_str(), results.size(),
              skipped.size());
  return 0;
}
