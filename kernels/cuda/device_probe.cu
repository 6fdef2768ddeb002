// Device probe and a smoke-test kernel (fills a buffer with i * 3 + 1 and checks it on the host).
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device_probe.cuh"

#include <vector>

namespace perigee::kernels::cuda {

// ---- CUDA kernels

__global__ void smoke_fill_kernel(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i * 3 + 1;
}

// ---- host functions

Status probe_devices(std::vector<DeviceInfo>* devices) {
  devices->clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error
    return make_error(StatusCode::kUnavailable, "no usable CUDA device: cudaGetDeviceCount returned ",
                      cudaGetErrorName(err), " (", static_cast<int>(err), ": ", cudaGetErrorString(err), ")");
  }
  if (count == 0)
    return make_error(StatusCode::kUnavailable, "no usable CUDA device: the driver reports 0 devices");
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    PERIGEE_CHECK_CUDA(cudaGetDeviceProperties(&prop, i));
    devices->push_back(
        DeviceInfo{i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, prop.multiProcessorCount});
  }
  return Status::ok();
}

Status smoke_test_device(int index) {
  PERIGEE_CHECK_CUDA(cudaSetDevice(index));
  constexpr int n = 1000;
  int* d = nullptr;
  PERIGEE_CHECK_CUDA(cudaMalloc(&d, n * sizeof(int)));
  smoke_fill_kernel<<<(n + 255) / 256, 256>>>(d, n);
  cudaError_t launch = cudaGetLastError();
  std::vector<int> h(n, -1);
  cudaError_t copy = cudaMemcpy(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(d);
  PERIGEE_CHECK_CUDA(launch);
  PERIGEE_CHECK_CUDA(copy);
  for (int i = 0; i < n; ++i) {
    PERIGEE_REQUIRE(h[i] == i * 3 + 1, StatusCode::kCudaError, "smoke kernel on device ", index, " wrote ",
                    h[i], " at ", i, ", expected ", i * 3 + 1);
  }
  return Status::ok();
}

Status current_device_shared_memory_optin(size_t* bytes) {
  int device = 0, optin = 0;
  PERIGEE_CHECK_CUDA(cudaGetDevice(&device));
  PERIGEE_CHECK_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  *bytes = static_cast<size_t>(optin);
  return Status::ok();
}

std::string compiled_runtime_version() {
  return str_cat(CUDART_VERSION / 1000, ".", (CUDART_VERSION % 1000) / 10);
}

}  // namespace perigee::kernels::cuda
