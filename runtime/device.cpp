#include "runtime/device.hpp"

#include <algorithm>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"

namespace perigee::runtime {
namespace {

std::string describe(const std::vector<kernels::cuda::DeviceInfo>& devices) {
  std::string out = str_cat(devices.size(), " CUDA device(s):");
  for (const auto& d : devices) {
    out += str_cat(" [", d.index, "] ", d.name, " sm_", d.sm_major, d.sm_minor, " ",
                   d.total_memory / (1024 * 1024 * 1024), " GiB;");
  }
  return out;
}

}  // namespace

DeviceConfig resolve_device_auto(const DeviceConfig& device, bool abft, bool cuda) {
  DeviceConfig r = device;
  const bool fast = cuda && device.precision == "bf16" && !abft;
  if (r.activations == "auto") r.activations = fast || (device.logits == "bf16" && !abft) ? "bf16" : "fp32";
  if (r.logits == "auto") r.logits = r.activations;
  if (r.gelu_fusion == "auto") r.gelu_fusion = fast ? "on" : "off";
  return r;
}

Status select_device(const Config& config, int local_rank, int local_ranks, DeviceSelection* out) {
  const DeviceConfig& device = config.device;
  PERIGEE_REQUIRE(device.device == "cpu" || device.device == "cuda" || device.device == "auto",
                  StatusCode::kInvalidArgument, "[device] device = \"", device.device,
                  "\": expected cpu, cuda or auto");
  std::vector<kernels::cuda::DeviceInfo> gpus;
  const Status probe = kernels::cuda::probe_devices(&gpus);
  out->cuda_probe = probe.is_ok() ? describe(gpus) : probe.message();
  if (device.device == "cuda" || (device.device == "auto" && probe.is_ok())) {
    PERIGEE_REQUIRE(probe.is_ok(), StatusCode::kUnavailable, "[device] device = \"cuda\" but ",
                    probe.message(), "; use device = \"cpu\" or \"auto\"");
    // Ranks on one host take devices round-robin; more ranks than GPUs share them (see docs/collectives.md).
    const int index = local_rank % static_cast<int>(gpus.size());
    kernels::cuda::GpuPrecision precision{};
    PERIGEE_CHECK(kernels::cuda::parse_gpu_precision(device.precision, &precision));
    PERIGEE_CHECK(kernels::cuda::make_cuda_backend(index, &out->backend, precision));
    out->resolved = resolve_device_auto(device, config.fault.abft, /*cuda=*/true);
    PERIGEE_CHECK(kernels::cuda::set_gelu_fusion(*out->backend, out->resolved.gelu_fusion == "on"));
    PERIGEE_CHECK(kernels::cuda::set_weight_cache(*out->backend, device.weight_cache));
    out->cuda_device = index;
    const int gpu_count = static_cast<int>(gpus.size());
    out->memory_ranks =
        std::max(1, (local_ranks - 1 - index) / gpu_count + 1);  // r < local_ranks, r % gpus == index
    out->kind = str_cat("cuda sm_", gpus[index].sm_major, gpus[index].sm_minor);
    out->description = str_cat("cuda:", index, " (", gpus[index].name, ", ",
                               kernels::cuda::gpu_precision_description(precision),
                               out->backend->fuses_gelu() ? ", GELU in cuBLASLt epilogues" : "", ")");
    return Status::ok();
  }
  int threads = device.threads;
  if (threads <= 0) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, hw / std::max(1, local_ranks));
  }
  out->backend = std::make_unique<kernels::cpu::CpuBackend>(threads);
  out->resolved = resolve_device_auto(device, config.fault.abft, /*cuda=*/false);
  out->cuda_device = -1;
  out->memory_ranks = std::max(1, local_ranks);
  out->kind = "cpu";
  out->description = str_cat("cpu (fp32, OpenBLAS + OpenMP, ", threads, " thread(s) per rank)");
  return Status::ok();
}

}  // namespace perigee::runtime
