#include "core/status.hpp"

#include <cstdio>
#include <cstdlib>

namespace perigee {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kNotFound:
      return "not found";
    case StatusCode::kIoError:
      return "I/O error";
    case StatusCode::kOutOfMemory:
      return "out of memory";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kInternal:
      return "internal error";
    case StatusCode::kCudaError:
      return "CUDA error";
    case StatusCode::kCublasError:
      return "cuBLAS error";
    case StatusCode::kNcclError:
      return "NCCL error";
    case StatusCode::kMpiError:
      return "MPI error";
    case StatusCode::kBlasError:
      return "BLAS error";
    case StatusCode::kHdf5Error:
      return "HDF5 error";
    case StatusCode::kFaultPersists:
      return "persistent fault";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return str_cat(status_code_name(code_), ": ", message_);
}

Status& Status::add_trace(const char* file, int line) {
  if (!is_ok()) message_ += str_cat("\n    at ", file, ":", line);
  return *this;
}

void die(const Status& status, const char* file, int line) {
  std::fprintf(stderr, "perigee: fatal: %s\n    at %s:%d\n", status.to_string().c_str(), file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace perigee
