// Argument checks shared by every Backend implementation (host code; also compiles under nvcc).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/status.hpp"

namespace perigee::kernels {

// kInvalidArgument naming `op` unless every pointer is non-null.
inline Status check_pointers(const char* op, std::initializer_list<const void*> ptrs) {
  int index = 0;
  for (const void* p : ptrs) {
    PERIGEE_REQUIRE(p != nullptr, StatusCode::kInvalidArgument, op, ": pointer argument ", index, " is null");
    ++index;
  }
  return Status::ok();
}

// kInvalidArgument naming `op` unless every dimension is positive.
inline Status check_dims(const char* op, std::initializer_list<int64_t> dims) {
  int index = 0;
  for (int64_t d : dims) {
    PERIGEE_REQUIRE(d > 0, StatusCode::kInvalidArgument, op, ": dimension argument ", index, " is ", d,
                    ", must be positive");
    ++index;
  }
  return Status::ok();
}

}  // namespace perigee::kernels
