// Device selection: turns [device] settings into a kernels::Backend for this rank.
// "cpu": the CPU backend. "cuda": the CUDA backend on device local_rank % devices, or a clear error
// saying why there is none. "auto": CUDA when a device answers, otherwise the CPU.
// The "auto" storage and fusion keys then take the fastest value for the chosen device
// (resolve_device_auto): with precision = "bf16" on CUDA, bf16 activations and logits and the GELU
// epilogues (the H100 GPT-2 124M step is 25 % faster than with fp32 storage: docs/performance.md).
#pragma once

#include <memory>
#include <string>

#include "core/status.hpp"
#include "kernels/backend.hpp"
#include "runtime/config.hpp"

namespace perigee::runtime {

struct DeviceSelection {
  std::unique_ptr<kernels::Backend> backend;
  std::string description;  // one line for the log: backend, threads or device name
  std::string cuda_probe;   // what the CUDA probe found (device list or why none)
  int cuda_device = -1;     // the CUDA device the backend runs on; -1 = CPU backend
  std::string kind;         // what the ranks must agree on: "cpu", or "cuda sm_XY" (the architecture)
  DeviceConfig resolved;    // the [device] settings with every "auto" replaced by its value here
  int memory_ranks = 1;     // the ranks on this host that allocate from this backend's memory (the
                            // CPU: all of them; CUDA: those on the same GPU) for the memory check
};

// [device] with "auto" resolved for a CUDA (cuda = true) or CPU backend and [fault] abft:
//   activations: bf16 on CUDA with precision "bf16" and abft off, or where logits = "bf16" needs them;
//                fp32 otherwise;
//   logits:      the activations' storage;
//   gelu_fusion: "on" on CUDA with precision "bf16" and abft off, "off" otherwise.
// Explicit values are kept. `device` must have passed validate_config.
DeviceConfig resolve_device_auto(const DeviceConfig& device, bool abft, bool cuda);

// local_rank / local_ranks: this rank's index among the ranks on this host, and their number (GPU
// choice; CPU threads are split between them when device.threads == 0). Reads [device] and
// [fault] abft of `config`.
Status select_device(const Config& config, int local_rank, int local_ranks, DeviceSelection* out);

}  // namespace perigee::runtime
