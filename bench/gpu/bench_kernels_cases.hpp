// The cases of bench_kernels (bench_kernels.cpp): per kernel family, the buffers it needs, the op timed,
// the bytes or FLOPs of one call, the outputs checked against the CPU backend and their tolerance.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/status.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/cuda_backend.cuh"

namespace perigee::bench {

using kernels::Backend;
using kernels::cuda::GpuPrecision;

// The shapes of one run: the small check shape and the timed (GPT-2) shape use the same struct.
struct Dims {
  int B, T, C, NH, V, Vp;
  size_t params;  // AdamW length
  int N() const { return B * T; }
  size_t nc() const { return static_cast<size_t>(B) * T * C; }
};

// A buffer: its length in 4-byte elements and how to fill it (uniform [lo, hi], or tokens < vocab).
struct BufSpec {
  size_t n = 0;
  float lo = 0.0f, hi = 0.0f;
  int vocab = 0;  // > 0: int32 tokens
};

using Bufs = std::vector<float*>;
using OpFn = std::function<Status(Backend*, const Bufs&, const Dims&)>;

struct Case {
  std::string name;
  std::string unit;  // "GB/s" or "TFLOP/s"
  std::function<std::vector<BufSpec>(Backend*, const Dims&)> buffers;
  OpFn prepare;                               // untimed, once (may be empty)
  OpFn op;                                    // the timed op
  std::function<double(const Dims&)> amount;  // bytes or FLOPs per call
  std::vector<int> outputs;                   // buffers compared with the CPU
  double atol = 0.0, rtol = 0.0;
  GpuPrecision precision = GpuPrecision::kFp32;  // the GPU's arithmetic (peak and tolerance)
  OpFn finish{};  // untimed, after the op and before the check (widens bf16 outputs; may be empty)
};

// Every case, in the order bench_kernels runs them; `gpu` decides which need its capabilities.
std::vector<Case> make_cases(kernels::cuda::CudaBackend* gpu);

}  // namespace perigee::bench
