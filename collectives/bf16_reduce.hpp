// Reductions over bf16 buffers (raw bits, core/bf16.hpp) for the backends that reduce on the host
// (MPI user-defined ops, the emulated links): each element is widened to fp32, combined in fp32 and
// rounded back to bf16, so one pairwise step rounds once (NCCL's rule for bf16).
#pragma once

#include <cstddef>
#include <cstdint>

#include "collectives/communicator.hpp"

namespace perigee::collectives {

// dst[i] = bf16(dst[i] op src[i]); kAvg adds (the division comes once, at the end: bf16_scale).
void bf16_combine(uint16_t* dst, const uint16_t* src, size_t n, ReduceOp op);
// p[i] = bf16(float(p[i]) * s).
void bf16_scale(uint16_t* p, size_t n, float s);

}  // namespace perigee::collectives
