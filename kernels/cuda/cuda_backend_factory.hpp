// Plain C++ entry point to the CUDA backend (no CUDA headers): host code and tests compiled by the C++
// compiler create a CudaBackend through it and use it as a kernels::Backend.
#pragma once

#include <memory>

#include "core/status.hpp"
#include "kernels/backend.hpp"

namespace perigee::kernels::cuda {

// A CudaBackend on CUDA device `device`. kUnavailable when there is no usable CUDA driver or device,
// kInvalidArgument when `device` is out of range; other failures (stream, cuBLAS) as their own codes.
Status make_cuda_backend(int device, std::unique_ptr<Backend>* out);

}  // namespace perigee::kernels::cuda
