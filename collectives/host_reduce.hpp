// Element-wise reductions on the host, shared by every backend that combines values itself (the
// emulated links, MPI's user-defined ops): one rule per op, so all backends agree. kMax and kMin are
// NaN if either value is NaN (a non-finite value on any rank must not vanish, whichever rank's chunk
// it is in), and commutative bit for bit (a canonical quiet NaN; max prefers +0, min -0), so every
// rank ends with the same bits whatever order a collective pairs them in.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

template <typename T>
T host_max(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
    if (a == b) return std::signbit(a) ? b : a;
  }
  return a < b ? b : a;
}

template <typename T>
T host_min(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
    if (a == b) return std::signbit(a) ? a : b;
  }
  return b < a ? b : a;
}

// dst[i] = dst[i] op src[i]; kAvg adds (the caller divides once, at the end).
template <typename T>
void host_combine(T* dst, const T* src, size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      for (size_t i = 0; i < n; ++i) dst[i] += src[i];
      break;
    case ReduceOp::kMax:
      for (size_t i = 0; i < n; ++i) dst[i] = host_max(dst[i], src[i]);
      break;
    case ReduceOp::kMin:
      for (size_t i = 0; i < n; ++i) dst[i] = host_min(dst[i], src[i]);
      break;
  }
}

}  // namespace perigee::collectives
