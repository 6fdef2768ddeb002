// Shared helpers of the CUDA backend tests (tests/kernels/test_cuda_*.cpp): one CPU backend and CUDA
// backends in fp32 and bf16 for the whole binary (or the reason to skip), backend-owned device buffers
// filled and read through the backend's copies, seeded random fills, the tolerance check
// |got - ref| <= atol + rtol * |ref| (first failures and the worst element reported), bit identity.
// Compiled by the C++ compiler: only the Backend interface, the factory and the device probe.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cuda/cuda_backend_factory.hpp"
#include "kernels/cuda/device_probe.cuh"

namespace perigee::kernels::cuda_testing {

// ---- backends: one CPU and two CUDA backends (fp32, bf16) for the whole binary

struct Backends {
  std::unique_ptr<cpu::CpuBackend> cpu;
  std::unique_ptr<Backend> gpu;
  std::unique_ptr<Backend> gpu_bf16;  // precision kBf16
  std::string skip_reason;            // non-empty: no usable device, skip
  Status error;                       // a device was found but the backend could not be made: fail
};

inline Backends& backends() {
  static Backends b = [] {
    Backends r;
    std::vector<kernels::cuda::DeviceInfo> devices;
    Status probe = kernels::cuda::probe_devices(&devices);
    if (!probe.is_ok()) {
      r.skip_reason = probe.message();
      return r;
    }
    r.error = kernels::cuda::make_cuda_backend(0, &r.gpu);
    if (r.error.is_ok())
      r.error = kernels::cuda::make_cuda_backend(0, &r.gpu_bf16, kernels::cuda::GpuPrecision::kBf16);
    r.cpu = std::make_unique<cpu::CpuBackend>(2);
    return r;
  }();
  return b;
}

// The fixture of the op tests: skips without a device, fails when one was found but the backends
// could not be made; cpu_, gpu_ (fp32) and gpu_bf16_ (bf16 precision) for the test.
class OpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Backends& b = backends();
    if (!b.skip_reason.empty()) GTEST_SKIP() << b.skip_reason;
    ASSERT_TRUE(b.error.is_ok()) << b.error.to_string();
    ASSERT_NE(b.gpu, nullptr);
    cpu_ = b.cpu.get();
    gpu_ = b.gpu.get();
    gpu_bf16_ = b.gpu_bf16.get();
  }

  Backend* cpu_ = nullptr;
  Backend* gpu_ = nullptr;
  Backend* gpu_bf16_ = nullptr;
};

// ---- helpers

// A buffer allocated by (and released to) a backend; filled and read through the backend's copies.
template <typename T>
class Array {
 public:
  Array(Backend& backend, size_t n) : backend_(&backend), n_(n) {
    void* p = nullptr;
    PERIGEE_CHECK_OR_DIE(backend.allocate(&p, n * sizeof(T)));
    data_ = static_cast<T*>(p);
  }
  Array(Backend& backend, const std::vector<T>& values) : Array(backend, values.size()) { upload(values); }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  ~Array() { backend_->release(data_); }

  T* data() { return data_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& values) {
    ASSERT_EQ(values.size(), n_);
    PERIGEE_CHECK_OR_DIE(backend_->copy_to_device(data_, values.data(), n_ * sizeof(T)));
  }
  std::vector<T> download() const {
    std::vector<T> out(n_);
    PERIGEE_CHECK_OR_DIE(backend_->copy_to_host(out.data(), data_, n_ * sizeof(T)));
    return out;
  }

 private:
  Backend* backend_;
  size_t n_;
  T* data_ = nullptr;
};

inline std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline std::vector<int32_t> random_tokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(gen);
  return v;
}

// Expects |got[i] - ref[i]| <= atol + rtol * |ref[i]| for every i; reports the first few failures and the
// largest error.
inline void expect_close(const std::string& what, const std::vector<float>& got,
                         const std::vector<float>& ref, double atol, double rtol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int failures = 0;
  size_t worst = 0;
  double worst_ratio = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double tol = atol + rtol * std::fabs(static_cast<double>(ref[i]));
    const double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? INFINITY : 0.0);
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
    if (!(err <= tol) && failures < 5) {
      ADD_FAILURE() << what << "[" << i << "]: gpu " << got[i] << ", cpu " << ref[i] << " (error " << err
                    << " > tolerance " << tol << ")";
      ++failures;
    }
  }
  if (failures > 0 && !ref.empty()) {
    ADD_FAILURE() << what << ": worst element " << worst << " at " << worst_ratio << " x tolerance";
  }
}

template <typename T>
bool bit_identical(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

inline std::vector<float> twice(const std::vector<float>& v) {
  std::vector<float> r(v);
  for (float& x : r) x *= 2.0f;
  return r;
}

// Lowers the shared memory per block that a CudaBackend's attention kernels choose by, for the guard's
// lifetime (a failing ASSERT cannot leave it lowered): an H100 then takes the paths of smaller devices.
class ScopedSharedMemoryLimit {
 public:
  ScopedSharedMemoryLimit(Backend& backend, size_t bytes) : backend_(backend) {
    PERIGEE_CHECK_OR_DIE(cuda::set_shared_memory_limit(backend_, bytes));
  }
  ~ScopedSharedMemoryLimit() { PERIGEE_CHECK_OR_DIE(cuda::set_shared_memory_limit(backend_, 0)); }
  ScopedSharedMemoryLimit(const ScopedSharedMemoryLimit&) = delete;
  ScopedSharedMemoryLimit& operator=(const ScopedSharedMemoryLimit&) = delete;

 private:
  Backend& backend_;
};

// Runs the bf16 attention variants `variant` on `backend` (a CudaBackend) while in scope, then none.
class ScopedKernelVariants {
 public:
  ScopedKernelVariants(Backend& backend, const cuda::KernelVariants& variant) : backend_(backend) {
    PERIGEE_CHECK_OR_DIE(cuda::set_kernel_variants(backend_, variant));
  }
  ~ScopedKernelVariants() { PERIGEE_CHECK_OR_DIE(cuda::set_kernel_variants(backend_, {})); }
  ScopedKernelVariants(const ScopedKernelVariants&) = delete;
  ScopedKernelVariants& operator=(const ScopedKernelVariants&) = delete;

 private:
  Backend& backend_;
};

}  // namespace perigee::kernels::cuda_testing
