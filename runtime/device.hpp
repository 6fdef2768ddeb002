// Device selection: turns [device] settings into a kernels::Backend for this rank.
// "cpu": the CPU backend. "cuda": the CUDA backend on device local_rank % devices, or a clear error
// saying why there is none. "auto": CUDA when a device answers, otherwise the CPU.
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
};

// local_rank / local_ranks: this rank's index among the ranks on this host, and their number (GPU
// choice; CPU threads are split between them when device.threads == 0).
Status select_device(const DeviceConfig& device, int local_rank, int local_ranks, DeviceSelection* out);

}  // namespace perigee::runtime
