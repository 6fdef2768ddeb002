// Plain C++ entry point to the CUDA ChecksumKernels (no CUDA headers): host code and tests give it to
// an AbftBackend over a CudaBackend, whose device memory the checksum passes then read.
#pragma once

#include <memory>

#include "core/status.hpp"
#include "fault/abft_gemm.hpp"
#include "kernels/backend.hpp"

namespace perigee::fault::cuda {

// *out = ChecksumKernels on the device memory of `cuda_backend` (a CudaBackend, not owned, outlives
// *out), running on its stream. kInvalidArgument when cuda_backend is null or not a CudaBackend.
Status make_cuda_checksum_kernels(kernels::Backend* cuda_backend, std::unique_ptr<ChecksumKernels>* out);

}  // namespace perigee::fault::cuda
