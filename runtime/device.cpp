#include "runtime/device.hpp"

#include <algorithm>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/device_probe.cuh"

namespace perigee::runtime {
namespace {

std::string describe_cuda() {
  std::vector<kernels::cuda::DeviceInfo> devices;
  Status s = kernels::cuda::probe_devices(&devices);
  if (!s.is_ok()) return s.message();
  std::string out = str_cat(devices.size(), " CUDA device(s):");
  for (const auto& d : devices) {
    out += str_cat(" [", d.index, "] ", d.name, " sm_", d.sm_major, d.sm_minor, " ",
                   d.total_memory / (1024 * 1024 * 1024), " GiB;");
  }
  return out;
}

}  // namespace

Status select_device(const DeviceConfig& device, int local_ranks, DeviceSelection* out) {
  out->cuda_probe = describe_cuda();
  const bool cuda_present = out->cuda_probe.find("CUDA device(s)") != std::string::npos;
  if (device.device == "cuda") {
    if (!cuda_present) {
      return make_error(StatusCode::kUnavailable, "[device] device = \"cuda\" but ", out->cuda_probe,
                        "; use device = \"cpu\" or \"auto\"");
    }
    return make_error(StatusCode::kUnavailable, "[device] device = \"cuda\": ", out->cuda_probe,
                      " found, but this build's training backends are: cpu. Use device = \"auto\" or \"cpu\"");
  }
  PERIGEE_REQUIRE(device.device == "cpu" || device.device == "auto", StatusCode::kInvalidArgument,
                  "[device] device = \"", device.device, "\": expected cpu, cuda or auto");
  int threads = device.threads;
  if (threads <= 0) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, hw / std::max(1, local_ranks));
  }
  out->backend = std::make_unique<kernels::cpu::CpuBackend>(threads);
  out->description = str_cat("cpu (fp32, OpenBLAS + OpenMP, ", threads, " thread(s) per rank)");
  return Status::ok();
}

}  // namespace perigee::runtime
