// bf16 conversion of flat buffers: to_bf16 rounds fp32 to bf16 bits (core/bf16.hpp's rule, the
// same bits as the CUDA kernels), from_bf16 widens bf16 bits to fp32 and scales in fp32.
#include <algorithm>
#include <bit>
#include <cstdint>

#include "core/bf16.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace perigee::kernels::cpu {

PERIGEE_CPU_CLONES
void to_bf16_chunk(uint16_t* out, const float* in, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits_from_f32_bits(std::bit_cast<uint32_t>(in[i]));
}

PERIGEE_CPU_CLONES
void from_bf16_chunk(float* out, const uint16_t* in, float s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = f32_bits_from_bf16_bits(in[i]);
    out[i] = f32_bits_is_nan(u) ? std::bit_cast<float>(quiet_nan_bits(u)) : std::bit_cast<float>(u) * s;
  }
}

namespace {

constexpr int64_t kConvertChunk = int64_t{1} << 16;  // elements per parallel task

// Runs body(begin, count) over [0, n) in chunks, in parallel when there are several.
template <typename Body>
void for_chunks(int64_t n, int threads, Body body) {
  const int64_t chunks = (n + kConvertChunk - 1) / kConvertChunk;
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kConvertChunk;
    body(begin, std::min(kConvertChunk, n - begin));
  }
}

}  // namespace

Status CpuBackend::to_bf16(uint16_t* out, const float* in, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("to_bf16", {out, in}));
  for_chunks(static_cast<int64_t>(n), threads_,
             [&](int64_t begin, int64_t count) { to_bf16_chunk(out + begin, in + begin, count); });
  return Status::ok();
}

Status CpuBackend::from_bf16(float* out, const uint16_t* in, float s, size_t n) {
  if (n == 0) return Status::ok();
  PERIGEE_CHECK(check_pointers("from_bf16", {out, in}));
  for_chunks(static_cast<int64_t>(n), threads_,
             [&](int64_t begin, int64_t count) { from_bf16_chunk(out + begin, in + begin, s, count); });
  return Status::ok();
}

}  // namespace perigee::kernels::cpu
