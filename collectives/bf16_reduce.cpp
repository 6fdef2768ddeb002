#include "collectives/bf16_reduce.hpp"

#include <algorithm>

#include "collectives/host_reduce.hpp"
#include "core/bf16.hpp"

namespace perigee::collectives {

void bf16_combine(uint16_t* dst, const uint16_t* src, size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      for (size_t i = 0; i < n; ++i) dst[i] = float_to_bf16(bf16_to_float(dst[i]) + bf16_to_float(src[i]));
      break;
    case ReduceOp::kMax:  // host_reduce.hpp's rule; the result is one of the two values (exact)
      for (size_t i = 0; i < n; ++i)
        dst[i] = float_to_bf16(host_max(bf16_to_float(dst[i]), bf16_to_float(src[i])));
      break;
    case ReduceOp::kMin:
      for (size_t i = 0; i < n; ++i)
        dst[i] = float_to_bf16(host_min(bf16_to_float(dst[i]), bf16_to_float(src[i])));
      break;
  }
}

void bf16_scale(uint16_t* p, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) p[i] = float_to_bf16(bf16_to_float(p[i]) * s);
}

}  // namespace perigee::collectives
