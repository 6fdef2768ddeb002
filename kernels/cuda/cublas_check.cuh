// cuBLAS member of the PERIGEE_CHECK macro family: turns a cublasStatus_t into a traced Status
// (StatusCode::kCublasError, with cublasGetStatusName and cublasGetStatusString).
#pragma once

#include <cublas_v2.h>

#include "core/status.hpp"

namespace perigee::kernels::cuda {

inline Status cublas_status(cublasStatus_t err, const char* what) {
  if (err == CUBLAS_STATUS_SUCCESS) return Status::ok();
  return make_error(StatusCode::kCublasError, what, " failed: ", cublasGetStatusName(err), " (",
                    static_cast<int>(err), "): ", cublasGetStatusString(err));
}

}  // namespace perigee::kernels::cuda

#define PERIGEE_CHECK_CUBLAS(call) PERIGEE_CHECK(::perigee::kernels::cuda::cublas_status((call), #call))
