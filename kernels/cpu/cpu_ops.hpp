// Private helpers shared by the CPU backend's op files (kernels/cpu/*.cpp): argument checks, the
// cache-line partition of column ranges, a fixed-order double summation and a vectorisable fp32 exp.
// Not part of the public API.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include <cblas.h>

#include "core/status.hpp"
#include "kernels/op_checks.hpp"

// Compiles the marked function for AVX-512, AVX2+FMA and baseline x86-64 and picks one at load time.
// Define PERIGEE_CPU_NO_CLONES to compile only for the target given by the compiler flags.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PERIGEE_CPU_NO_CLONES)
#define PERIGEE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PERIGEE_CPU_CLONES
#endif

namespace perigee::kernels::cpu {

inline constexpr size_t kAlignment = 64;          // bytes, of every allocation
inline constexpr int64_t kLineFloats = 16;        // floats per 64-byte cache line
inline constexpr float kLayerNormEps = 1e-5f;     // fixed by the Backend interface
inline constexpr size_t kSumSquaresBlock = 4096;  // fixed summation blocks of sum_squares
inline constexpr int64_t kParallelMin = 1 << 14;  // elements below which flat ops stay serial

// Keeps OpenBLAS single-threaded: the backend runs GEMMs inside its own OpenMP tasks. Re-checked before
// each use because the OpenBLAS setting is process-wide.
inline void serial_blas() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

// One thread's bf16 conversions (convert.cpp; the backend's to_bf16 / from_bf16 run them in parallel
// chunks): core/bf16.hpp's rounding; widening times s, a NaN quieted with its sign and payload.
void to_bf16_chunk(uint16_t* out, const float* in, int64_t n);
void from_bf16_chunk(float* out, const uint16_t* in, float s, int64_t n);

using kernels::check_dims;  // kernels/op_checks.hpp
using kernels::check_pointers;

// Half-open range of columns [begin, end).
struct ColumnRange {
  int64_t begin;
  int64_t end;
};

// The columns of C that thread `tid` of `nthreads` owns: contiguous, split on cache-line boundaries so
// no two threads write the same line of a row. Together the ranges cover [0, C) exactly once.
inline ColumnRange column_range(int64_t C, int tid, int nthreads) {
  const int64_t lines = (C + kLineFloats - 1) / kLineFloats;
  const int64_t first = lines * tid / nthreads;
  const int64_t last = lines * (tid + 1) / nthreads;
  return {std::min(C, first * kLineFloats), std::min(C, last * kLineFloats)};
}

// sum_{i < n} term(i) in double with 8 interleaved accumulators (lane = i % 8) combined in a fixed tree:
// one summation order on every instruction set and thread count, and the lanes vectorise.
template <typename Term>
inline double lane_sum(int64_t n, Term term) {
  constexpr int64_t kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  }
  for (int64_t l = 0; i + l < n; ++l) acc[l] += term(i + l);
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// exp(x) in fp32, vectorisable (no libm call): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, and a
// degree-7 Taylor polynomial for e^r (truncation error < 1e-8 relative); within a few ulp of exp for
// x in [-87.3, 88]. Returns 0 below -87.3 (where exp is subnormal) and exp(88) above 88; NaN stays NaN.
inline float exp_clamped(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 9 significant bits: k * kLn2Hi is exact for |k| <= 128
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  constexpr float kMin = -87.3f;
  constexpr float kMax = 88.0f;
  // Selects on values (not std::min/max, whose references block if-conversion) so loops vectorise.
  float xc = x < kMin ? kMin : x;
  xc = xc > kMax ? kMax : xc;
  const float k = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - k * kLn2Hi) - k * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float k_int = k == k ? k : 0.0f;  // NaN x: keeps the conversion defined (p is NaN anyway)
  const float two_k = std::bit_cast<float>((static_cast<int32_t>(k_int) + 127) << 23);
  return x < kMin ? 0.0f : p * two_k;
}

}  // namespace perigee::kernels::cpu
