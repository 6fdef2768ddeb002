// bench_kernels: CUDA micro-benchmarks of the CudaBackend's kernel families at the GPT-2 124M
// training shapes (B 16, T 1024, C 768, 12 heads, vocab 50257 padded to 50304): device copy, layernorm
// (alone and with the residual add fused in front), GELU, residual, cross-entropy and AdamW as achieved
// GB/s, attention and the matmul GEMMs (fp32, TF32 and bf16; attention fp32 and bf16) as achieved
// TFLOP/s, each against a stated peak. The bf16 attention also runs with bf16 storage ("bf16 act": qkv,
// out and dqkv bf16, as [device] activations = "bf16" runs it), once per attention variant of
// KernelVariants (kernels/cuda/kernel_variants.hpp) beside the default kernels. Every case is first checked
// against the CPU backend on a small shape (|gpu - cpu| <= atol + rtol * |cpu|), then timed on the backend's
// stream with cudaEvents (warm-up, then the mean of --reps calls). Bytes are the algorithmic minimum
// (each operand read once, each output written once; an accumulated output counts as read + written);
// attention FLOPs are 4 * B * NH * T^2 * hs / 2 forward (causal) and 2.5x that backward. Without a
// CUDA device it prints "no CUDA device: skipped" and exits 0. Exit 1 when a correctness check fails,
// 2 on bad arguments.
//   bench_kernels [--reps 20] [--warmup 3] [--peak-gbps 3000] [--peak-fp32-tflops 66.9]
//                 [--peak-tf32-tflops 494.7] [--peak-bf16-tflops 790] [--only name,...]
//                 [--json bench_kernels.json]
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench/gpu/bench_kernels_cases.hpp"
#include "bench/json_output.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"
#include "runtime/cli_checks.hpp"

namespace {

using namespace perigee;
using bench::Bufs;
using bench::BufSpec;
using bench::Case;
using bench::Dims;
using bench::make_cases;
using kernels::Backend;
using kernels::cuda::GpuPrecision;

void die_cuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "bench_kernels: %s failed: %s (%s)\n", what, cudaGetErrorName(err),
               cudaGetErrorString(err));
  std::exit(3);
}

// Deterministic fill without a slow generator (these buffers reach 3 GB).
void fill_host(std::vector<uint32_t>* host, const BufSpec& s, uint64_t seed) {
  host->resize(s.n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < s.n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (s.vocab > 0) {
      (*host)[i] = static_cast<uint32_t>(x % static_cast<uint64_t>(s.vocab));
    } else {
      const float u = static_cast<float>((x >> 40) * (1.0 / 16777216.0));
      const float f = s.lo + (s.hi - s.lo) * u;
      std::memcpy(&(*host)[i], &f, sizeof f);
    }
  }
}

class Arena {
 public:
  Arena(Backend* be, const std::vector<BufSpec>& specs, uint64_t seed) : be_(be) {
    std::vector<uint32_t> host;
    for (size_t i = 0; i < specs.size(); ++i) {
      void* p = nullptr;
      PERIGEE_CHECK_OR_DIE(be->allocate(&p, std::max<size_t>(specs[i].n, 1) * 4));
      const bool zero = specs[i].vocab == 0 && specs[i].lo == 0.0f && specs[i].hi == 0.0f;
      if (specs[i].n > 0 && !zero) {  // allocate() already zero-fills
        fill_host(&host, specs[i], seed + i);
        PERIGEE_CHECK_OR_DIE(be->copy_to_device(p, host.data(), specs[i].n * 4));
      }
      bufs_.push_back(static_cast<float*>(p));
      sizes_.push_back(specs[i].n);
    }
  }
  ~Arena() {
    for (float* p : bufs_) be_->release(p);
  }
  const Bufs& bufs() const { return bufs_; }
  std::vector<float> read(int i) const {
    std::vector<float> h(sizes_[i]);
    PERIGEE_CHECK_OR_DIE(be_->copy_to_host(h.data(), bufs_[i], sizes_[i] * 4));
    return h;
  }

 private:
  Backend* be_;
  Bufs bufs_;
  std::vector<size_t> sizes_;
};

struct CheckResult {
  bool ok = true;
  double worst_ratio = 0.0;  // max |gpu - cpu| / (atol + rtol |cpu|)
  std::string detail;
};

CheckResult check_case(const Case& c, Backend* cpu, Backend* gpu, const Dims& small) {
  CheckResult r;
  Arena a(cpu, c.buffers(cpu, small), 11), b(gpu, c.buffers(gpu, small), 11);
  for (auto [be, arena] : {std::pair{cpu, &a}, std::pair{gpu, &b}}) {
    if (c.prepare) PERIGEE_CHECK_OR_DIE(c.prepare(be, arena->bufs(), small));
    PERIGEE_CHECK_OR_DIE(c.op(be, arena->bufs(), small));
    if (c.finish) PERIGEE_CHECK_OR_DIE(c.finish(be, arena->bufs(), small));
    PERIGEE_CHECK_OR_DIE(be->synchronize());
  }
  for (int i : c.outputs) {
    const std::vector<float> ref = a.read(i), got = b.read(i);
    for (size_t k = 0; k < ref.size(); ++k) {
      const double err = std::fabs(static_cast<double>(got[k]) - ref[k]);
      const double tol = c.atol + c.rtol * std::fabs(static_cast<double>(ref[k]));
      const double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? INFINITY : 0.0);
      if (!(ratio <= r.worst_ratio)) r.worst_ratio = ratio;
      if (!(err <= tol) && r.ok) {
        r.ok = false;
        r.detail = "buffer " + std::to_string(i) + " element " + std::to_string(k) + ": gpu " +
                   std::to_string(got[k]) + " cpu " + std::to_string(ref[k]);
      }
    }
  }
  return r;
}

// Mean ms per call of c.op on the GPU at the timed shape.
double time_case(const Case& c, kernels::cuda::CudaBackend* gpu, const Dims& d, int warmup, int reps) {
  Arena a(gpu, c.buffers(gpu, d), 7);
  if (c.prepare) PERIGEE_CHECK_OR_DIE(c.prepare(gpu, a.bufs(), d));
  for (int i = 0; i < warmup; ++i) PERIGEE_CHECK_OR_DIE(c.op(gpu, a.bufs(), d));
  cudaEvent_t start, stop;
  die_cuda(cudaEventCreate(&start), "cudaEventCreate");
  die_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  PERIGEE_CHECK_OR_DIE(gpu->synchronize());
  die_cuda(cudaEventRecord(start, gpu->stream()), "cudaEventRecord");
  for (int i = 0; i < reps; ++i) PERIGEE_CHECK_OR_DIE(c.op(gpu, a.bufs(), d));
  die_cuda(cudaEventRecord(stop, gpu->stream()), "cudaEventRecord");
  die_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0.0f;
  die_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  gpu->set_precision(GpuPrecision::kFp32);
  gpu->set_kernel_variants({});
  return ms / reps;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_kernels: CUDA kernel micro-benchmarks at the GPT-2 124M shapes"};
  int reps = 20, warmup = 3;
  double peak_gbps = 3000.0, peak_fp32 = 66.9, peak_tf32 = 494.7, peak_bf16 = 790.0;
  double copy_gib = 1.0;
  Dims d{16, 1024, 768, 12, 50257, 50304, 124475904};
  std::vector<std::string> only;
  std::string json_path = "bench_kernels.json";
  using perigee::runtime::cli::finite_above_zero;
  using perigee::runtime::cli::integer_at_least;
  app.add_option("--reps", reps, "timed calls per case")->check(integer_at_least(1));
  app.add_option("--warmup", warmup, "untimed calls first")->check(integer_at_least(0));
  app.add_option("--peak-gbps", peak_gbps, "memory peak, GB/s (H100 measured D2D copy about 3000)")
      ->check(finite_above_zero());
  app.add_option("--peak-fp32-tflops", peak_fp32, "fp32 CUDA-core peak (H100 SXM 66.9 dense)")
      ->check(finite_above_zero());
  app.add_option("--peak-tf32-tflops", peak_tf32, "TF32 tensor-core peak (H100 SXM 494.7 dense)")
      ->check(finite_above_zero());
  app.add_option("--peak-bf16-tflops", peak_bf16,
                 "bf16 tensor-core peak (H100 measured: an 8192^3 bf16 GEMM at about 790; datasheet 989.4)")
      ->check(finite_above_zero());
  app.add_option("--copy-gib", copy_gib, "size of the device copy, GiB")
      ->check(perigee::runtime::cli::finite_number("a number in (0, 64]",
                                                   [](double v) { return v > 0.0 && v <= 64.0; }));
  app.add_option("--batch", d.B, "B")->check(integer_at_least(1));
  app.add_option("--seq", d.T, "T")->check(integer_at_least(1));
  app.add_option("--channels", d.C, "C")->check(integer_at_least(1));
  app.add_option("--heads", d.NH, "NH")->check(integer_at_least(1));
  app.add_option("--params", d.params, "AdamW length (GPT-2 124M with the padded vocab: 124475904)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 36));
  app.add_option("--only", only, "run only the cases whose names start with one of these")->delimiter(',');
  app.add_option("--json", json_path, "JSON output file");
  if (const int rc = perigee::runtime::cli::parse_command_line(app, argc, argv, "bench_kernels"); rc >= 0)
    return rc;
  if (!perigee::bench::check_json_path("bench_kernels", json_path)) return 2;
  if (d.C % d.NH != 0) {
    std::fprintf(stderr, "bench_kernels: --channels %d not divisible by --heads %d\n", d.C, d.NH);
    return 2;
  }

  std::vector<kernels::cuda::DeviceInfo> devices;
  const Status probe = kernels::cuda::probe_devices(&devices);
  if (!probe.is_ok()) {
    std::printf("no CUDA device: skipped (%s)\n", probe.message().c_str());
    nlohmann::ordered_json doc = {{"benchmark", "kernels"}, {"skipped", probe.message()}};
    return perigee::bench::write_json_text("bench_kernels", json_path, doc.dump(2)) ? 0 : 1;
  }
  std::unique_ptr<Backend> made;
  PERIGEE_CHECK_OR_DIE(kernels::cuda::make_cuda_backend(0, &made));
  auto* gpu = static_cast<kernels::cuda::CudaBackend*>(made.get());
  kernels::cpu::CpuBackend cpu(0);
  const Dims small{2, 64, 64, 4, 100, 128, 10007};
  const auto selected = [&](const std::string& name) {
    if (only.empty()) return true;
    for (const auto& o : only) {
      if (name.rfind(o, 0) == 0) return true;
    }
    return false;
  };

  std::printf(
      "# bench_kernels on %s (sm_%d%d, %d SMs): B %d T %d C %d NH %d Vp %d, AdamW %zu params; "
      "%d warm-up + %d timed calls\n",
      devices[0].name.c_str(), devices[0].sm_major, devices[0].sm_minor, devices[0].multiprocessors, d.B, d.T,
      d.C, d.NH, d.Vp, d.params, warmup, reps);
  std::printf("# peaks: memory %.0f GB/s, fp32 %.1f TFLOP/s, TF32 %.1f TFLOP/s, bf16 %.1f TFLOP/s\n",
              peak_gbps, peak_fp32, peak_tf32, peak_bf16);
  std::printf("%-32s %10s %12s %9s %8s %6s %s\n", "case", "ms", "achieved", "unit", "% peak", "check",
              "worst err/tol");
  nlohmann::ordered_json results = nlohmann::json::array();
  bool all_ok = true;

  // ---- device-to-device copy (bytes moved = read + write)
  if (selected("copy")) {
    const size_t bytes = static_cast<size_t>(copy_gib * (1ull << 30));
    void *src = nullptr, *dst = nullptr;
    PERIGEE_CHECK_OR_DIE(gpu->allocate(&src, bytes));
    PERIGEE_CHECK_OR_DIE(gpu->allocate(&dst, bytes));
    for (int i = 0; i < warmup; ++i)
      die_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, gpu->stream()), "copy");
    cudaEvent_t start, stop;
    die_cuda(cudaEventCreate(&start), "cudaEventCreate");
    die_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    die_cuda(cudaEventRecord(start, gpu->stream()), "cudaEventRecord");
    for (int i = 0; i < reps; ++i)
      die_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, gpu->stream()), "copy");
    die_cuda(cudaEventRecord(stop, gpu->stream()), "cudaEventRecord");
    die_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    die_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    gpu->release(src);
    gpu->release(dst);
    const double per = ms / reps, gbps = 2.0 * bytes / (per * 1e-3) / 1e9;
    std::printf("%-32s %10.4f %12.1f %9s %7.1f%% %6s\n", "copy_d2d", per, gbps, "GB/s",
                100.0 * gbps / peak_gbps, "-");
    results.push_back({{"case", "copy_d2d"},
                       {"bytes", 2.0 * bytes},
                       {"ms", per},
                       {"achieved", gbps},
                       {"unit", "GB/s"},
                       {"peak", peak_gbps},
                       {"pct_of_peak", 100.0 * gbps / peak_gbps},
                       {"check", "-"}});
    std::fflush(stdout);
  }

  for (const Case& c : make_cases(gpu)) {
    if (!selected(c.name)) continue;
    const CheckResult chk = check_case(c, &cpu, gpu, small);
    gpu->set_precision(GpuPrecision::kFp32);
    gpu->set_kernel_variants({});
    all_ok = all_ok && chk.ok;
    const double ms = time_case(c, gpu, d, warmup, reps);
    const double amount = c.amount(d);
    const bool bw = c.unit == "GB/s";
    const double achieved = bw ? amount / (ms * 1e-3) / 1e9 : amount / (ms * 1e-3) / 1e12;
    const double peak = bw                                   ? peak_gbps
                        : c.precision == GpuPrecision::kBf16 ? peak_bf16
                        : c.precision == GpuPrecision::kTf32 ? peak_tf32
                                                             : peak_fp32;
    std::printf("%-32s %10.4f %12.2f %9s %7.1f%% %6s %.3g%s%s\n", c.name.c_str(), ms, achieved,
                c.unit.c_str(), 100.0 * achieved / peak, chk.ok ? "ok" : "FAIL", chk.worst_ratio,
                chk.ok ? "" : "  ", chk.detail.c_str());
    std::fflush(stdout);
    results.push_back({{"case", c.name},
                       {bw ? "bytes" : "flops", amount},
                       {"ms", ms},
                       {"achieved", achieved},
                       {"unit", c.unit},
                       {"peak", peak},
                       {"pct_of_peak", 100.0 * achieved / peak},
                       {"check", chk.ok ? "ok" : "FAIL"},
                       {"worst_err_over_tol", chk.worst_ratio},
                       {"check_detail", chk.detail}});
  }
  nlohmann::ordered_json doc = {{"benchmark", "kernels"},
                                {"device", devices[0].name},
                                {"shape",
                                 {{"B", d.B},
                                  {"T", d.T},
                                  {"C", d.C},
                                  {"NH", d.NH},
                                  {"V", d.V},
                                  {"Vp", d.Vp},
                                  {"adamw_params", d.params}}},
                                {"check_shape",
                                 {{"B", small.B},
                                  {"T", small.T},
                                  {"C", small.C},
                                  {"NH", small.NH},
                                  {"V", small.V},
                                  {"Vp", small.Vp},
                                  {"adamw_params", small.params}}},
                                {"peaks",
                                 {{"gbps", peak_gbps},
                                  {"fp32_tflops", peak_fp32},
                                  {"tf32_tflops", peak_tf32},
                                  {"bf16_tflops", peak_bf16}}},
                                {"warmup", warmup},
                                {"reps", reps},
                                {"all_checks_ok", all_ok},
                                {"results", results}};
  if (!perigee::bench::write_json_text("bench_kernels", json_path, doc.dump(2))) return 1;
  std::printf("# wrote %s; checks %s\n", json_path.c_str(), all_ok ? "all ok" : "FAILED");
  return all_ok ? 0 : 1;
}
