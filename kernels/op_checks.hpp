// Argument checks shared by every Backend implementation (host code; also compiles under nvcc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "core/status.hpp"
#include "kernels/act.hpp"

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

// kInvalidArgument naming `op` when an output overlays an input of another storage type (an in-place
// op rewrites each element in the type it read it in).
inline Status check_alias_storage(const char* op, ConstAct out, ConstAct in) {
  PERIGEE_REQUIRE(out.data != in.data || out.dtype == in.dtype, StatusCode::kInvalidArgument, op,
                  ": the output aliases an input of another storage type (", dtype_name(out.dtype), " over ",
                  dtype_name(in.dtype), ")");
  return Status::ok();
}

// True when n elements of `out` and n elements of `in` share bytes and have different storage types:
// an element-wise kernel that reads one type and writes the other in place would race (element i's
// bytes in one type hold parts of other elements in the other).
inline bool overlaps_other_storage(ConstAct out, ConstAct in, size_t n) {
  if (out.dtype == in.dtype || out.data == nullptr || in.data == nullptr || n == 0) return false;
  const auto o = reinterpret_cast<uintptr_t>(out.data);
  const auto i = reinterpret_cast<uintptr_t>(in.data);
  return o < i + n * dtype_size(in.dtype) && i < o + n * dtype_size(out.dtype);
}

}  // namespace perigee::kernels
