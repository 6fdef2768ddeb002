// The CUDA device probe: on a machine without a driver or GPU it must report "no usable CUDA
// device" with the runtime's reason (never abort); with a GPU every device must run a kernel.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/device_probe.cuh"

namespace perigee::kernels::cuda {
namespace {

TEST(DeviceProbe, ReportsDevicesOrAClearReason) {
  std::vector<DeviceInfo> devices;
  Status s = probe_devices(&devices);
  if (s.is_ok()) {
    ASSERT_FALSE(devices.empty());
    for (const auto& d : devices) {
      EXPECT_FALSE(d.name.empty());
      EXPECT_GE(d.sm_major, 5);
      EXPECT_GT(d.total_memory, 0u);
    }
  } else {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_NE(s.message().find("no usable CUDA device"), std::string::npos) << s.message();
    EXPECT_TRUE(devices.empty());
  }
  // A second probe gives the same answer (the sticky error was cleared).
  std::vector<DeviceInfo> again;
  EXPECT_EQ(probe_devices(&again).code(), s.code());
  EXPECT_EQ(again.size(), devices.size());
}

TEST(DeviceProbe, EveryDeviceRunsAKernel) {
  std::vector<DeviceInfo> devices;
  Status s = probe_devices(&devices);
  if (!s.is_ok()) GTEST_SKIP() << s.message();
  for (const auto& d : devices) EXPECT_TRUE(smoke_test_device(d.index).is_ok()) << d.name;
}

TEST(DeviceProbe, CompiledRuntimeVersionIsKnown) {
  EXPECT_EQ(compiled_runtime_version().find('.') != std::string::npos, true);
}

}  // namespace
}  // namespace perigee::kernels::cuda
