// Device probe: which CUDA devices this process can use. Works (and reports cleanly) on machines
// without a driver, where cudaGetDeviceCount returns cudaErrorInsufficientDriver.
#pragma once

#include <string>
#include <vector>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0;
  int sm_minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
};

// Fills devices with every usable device. Returns kUnavailable with the reason (no driver, no
// device, the runtime's error) when there is none; never aborts.
Status probe_devices(std::vector<DeviceInfo>* devices);

// Runs a tiny kernel on device `index` and checks its result: a device that enumerates but cannot
// run code (wrong architecture in this build, broken driver) is reported here.
Status smoke_test_device(int index);

// The current device's opt-in limit of dynamic shared memory per block
// (cudaDevAttrMaxSharedMemoryPerBlockOptin: 227 KiB on sm_90, 163 KiB on sm_80, 99 KiB on sm_86/89), the most
// a kernel may ask for.
Status current_device_shared_memory_optin(size_t* bytes);

// The CUDA runtime version this build was compiled against, e.g. "13.0".
std::string compiled_runtime_version();

}  // namespace perigee::kernels::cuda
