// CUDA member of the PERIGEE_CHECK macro family: turns a cudaError_t into a traced Status.
#pragma once

#include <cuda_runtime.h>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return make_error(StatusCode::kCudaError, what, " failed: ", cudaGetErrorName(err), " (",
                    static_cast<int>(err), "): ", cudaGetErrorString(err));
}

}  // namespace perigee::kernels::cuda

#define PERIGEE_CHECK_CUDA(call) PERIGEE_CHECK(::perigee::kernels::cuda::cuda_status((call), #call))
