// The memory probes behind the setup's memory check: /proc/meminfo and cgroup file parsing, the host
// probe on this machine, and each backend's memory_info / model_overhead_bytes (CUDA: skips without a
// device).
#include <gtest/gtest.h>

#include "kernels/cpu/host_memory.hpp"
#include "tests/kernels/cuda_test_util.hpp"

namespace perigee::kernels {
namespace {

TEST(HostMemory, MeminfoLinesAreReadInBytes) {
  const std::string meminfo =
      "MemTotal:       24684092 kB\nMemFree:        20000000 kB\nMemAvailable:   24220644 kB\n"
      "MemAvailableX:  1 kB\n";
  EXPECT_EQ(cpu::meminfo_bytes(meminfo, "MemTotal"), uint64_t{24684092} * 1024);
  EXPECT_EQ(cpu::meminfo_bytes(meminfo, "MemAvailable"), uint64_t{24220644} * 1024);
  EXPECT_EQ(cpu::meminfo_bytes(meminfo, "MemFree"), uint64_t{20000000} * 1024);
  EXPECT_FALSE(cpu::meminfo_bytes(meminfo, "Mem").has_value()) << "a prefix is not a key";
  EXPECT_FALSE(cpu::meminfo_bytes(meminfo, "SwapTotal").has_value());
  EXPECT_FALSE(cpu::meminfo_bytes("MemTotal: lots kB\n", "MemTotal").has_value());
  EXPECT_FALSE(cpu::meminfo_bytes("MemTotal: 99999999999999999999 kB\n", "MemTotal").has_value());
}

TEST(HostMemory, CgroupLimitsAndStats) {
  EXPECT_FALSE(cpu::cgroup_limit("max\n").has_value());
  EXPECT_FALSE(cpu::cgroup_limit("9223372036854771712\n").has_value()) << "cgroup v1's 'no limit'";
  EXPECT_EQ(cpu::cgroup_limit("4294967296\n"), uint64_t{4294967296});
  EXPECT_FALSE(cpu::cgroup_limit("").has_value());
  const std::string stat = "active_file 10\ninactive_file 4096\ntotal_inactive_file 8192\n";
  EXPECT_EQ(cpu::memory_stat_value(stat, "inactive_file"), uint64_t{4096});
  EXPECT_EQ(cpu::memory_stat_value(stat, "total_inactive_file"), uint64_t{8192});
  EXPECT_FALSE(cpu::memory_stat_value(stat, "file").has_value());
}

TEST(HostMemory, ProbeOfThisHost) {
  cpu::HostMemory m;
  const Status s = cpu::probe_host_memory(&m);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_GT(m.available, uint64_t{16} << 20) << m.source;
  EXPECT_LE(m.available, m.total) << m.source;
  EXPECT_FALSE(m.source.empty());

  cpu::CpuBackend backend(1);
  MemoryInfo info;
  ASSERT_TRUE(backend.memory_info(&info).is_ok());
  EXPECT_GT(info.available, 0u);
  EXPECT_EQ(info.total, m.total);
  EXPECT_EQ(info.where.rfind("host RAM (", 0), 0u) << info.where;
  EXPECT_EQ(backend.model_overhead_bytes(1000), 0u) << "the CPU backend keeps no copies";
}

TEST(CudaMemory, DeviceMemoryAndTheWeightCache) {
  auto& b = cuda_testing::backends();
  if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
  ASSERT_TRUE(b.error.is_ok()) << b.error.to_string();
  MemoryInfo info;
  ASSERT_TRUE(b.gpu->memory_info(&info).is_ok());
  EXPECT_GT(info.available, uint64_t{64} << 20);
  EXPECT_LE(info.available, info.total);
  EXPECT_EQ(info.where.rfind("CUDA device 0 (", 0), 0u) << info.where;
  // A 256 MiB allocation shows (the driver may round it).
  void* p = nullptr;
  ASSERT_TRUE(b.gpu->allocate(&p, size_t{256} << 20).is_ok());
  MemoryInfo after;
  ASSERT_TRUE(b.gpu->memory_info(&after).is_ok());
  b.gpu->release(p);
  EXPECT_LE(after.available + (uint64_t{255} << 20), info.available);
  EXPECT_EQ(b.gpu->model_overhead_bytes(1000), 0u) << "fp32 precision reads fp32 weights";
  EXPECT_EQ(b.gpu_bf16->model_overhead_bytes(1000), 2000u) << "bf16: the weight cache's copy";
  ASSERT_TRUE(cuda::set_weight_cache(*b.gpu_bf16, false).is_ok());
  EXPECT_EQ(b.gpu_bf16->model_overhead_bytes(1000), 0u);
  ASSERT_TRUE(cuda::set_weight_cache(*b.gpu_bf16, true).is_ok());
}

}  // namespace
}  // namespace perigee::kernels
